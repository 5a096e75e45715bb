// HTTP helpers: timeouts, cancellation, bounded retries with backoff, error normalisation.
// No VS Code imports: unit-testable in plain Node.

export type FetchLike = (input: string, init?: RequestInit) => Promise<Response>;

export type ErrorKind = 'network' | 'timeout' | 'aborted' | 'http' | 'parse' | 'config';

export class ApiError extends Error {
  constructor(
    message: string,
    readonly kind: ErrorKind,
    readonly status?: number,
    readonly code?: string,
    readonly body?: unknown,
    readonly retryAfterMs?: number,
  ) {
    super(message);
    this.name = 'ApiError';
  }
  /** True when the backend could not be reached or answered as unavailable: the "offline" path. */
  get isUnreachable(): boolean {
    return this.kind === 'network' || this.kind === 'timeout' || (this.kind === 'http' && [502, 503, 504].includes(this.status ?? 0));
  }
  get isRetryable(): boolean {
    return this.isUnreachable || (this.kind === 'http' && this.status === 429);
  }
}

export interface RequestOptions {
  method?: string;
  headers?: Record<string, string>;
  body?: string;
  /** Per-attempt timeout. */
  timeoutMs?: number;
  /** Caller cancellation (e.g. VS Code CancellationToken bridged to an AbortSignal). */
  signal?: AbortSignal;
  /** Extra attempts after the first, only for retryable errors. Non-idempotent methods default to 0. */
  retries?: number;
  backoffMs?: number;
  maxBackoffMs?: number;
  fetchImpl?: FetchLike;
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
}

export interface HttpResult<T = unknown> {
  status: number;
  headers: Headers;
  body: T;
}

export function abortableSleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new ApiError('aborted', 'aborted'));
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(new ApiError('aborted', 'aborted'));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

export function parseRetryAfter(value: string | null, nowMs = Date.now()): number | undefined {
  if (!value) return undefined;
  const secs = Number(value);
  if (Number.isFinite(secs)) return Math.max(0, secs * 1000);
  const d = Date.parse(value);
  return Number.isFinite(d) ? Math.max(0, d - nowMs) : undefined;
}

/** Human message from RFC 9457 problem+json, the Orchestrator error envelope, or an OAuth error. */
export function describeErrorBody(body: unknown): { message?: string; code?: string } {
  if (!body || typeof body !== 'object') return {};
  const b = body as Record<string, any>;
  if (b.error && typeof b.error === 'object') return { message: b.error.message, code: b.error.code };
  if (typeof b.error === 'string') return { message: b.error_description ?? b.error, code: b.error };
  if (typeof b.title === 'string' || typeof b.detail === 'string') {
    const errs = Array.isArray(b.errors) ? b.errors.map((e: any) => (typeof e === 'string' ? e : e?.detail ?? e?.message ?? JSON.stringify(e))).join('; ') : '';
    const msg = [b.title, b.detail, errs].filter(Boolean).join(': ');
    return { message: msg, code: typeof b.type === 'string' ? b.type : undefined };
  }
  return {};
}

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE']);

export async function request<T = unknown>(url: string, opts: RequestOptions = {}): Promise<HttpResult<T>> {
  const method = (opts.method ?? 'GET').toUpperCase();
  const fetchImpl = opts.fetchImpl ?? (globalThis.fetch as FetchLike);
  const sleep = opts.sleep ?? abortableSleep;
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const retries = Math.min(opts.retries ?? (IDEMPOTENT.has(method) ? 2 : 0), 5);
  const base = opts.backoffMs ?? 500;
  const maxBackoff = opts.maxBackoffMs ?? 8_000;
  let lastErr: ApiError | undefined;
  for (let attempt = 0; attempt <= retries; attempt++) {
    if (attempt > 0 && lastErr) {
      const backoff = Math.min(maxBackoff, base * 2 ** (attempt - 1));
      const wait = lastErr.retryAfterMs !== undefined ? Math.min(lastErr.retryAfterMs, 30_000) : backoff;
      await sleep(wait, opts.signal);
    }
    try {
      return await once<T>(url, method, opts, fetchImpl, timeoutMs);
    } catch (e) {
      const err = e instanceof ApiError ? e : new ApiError(String((e as Error)?.message ?? e), 'network');
      lastErr = err;
      if (!err.isRetryable || err.kind === 'aborted') throw err;
    }
  }
  throw lastErr!;
}

async function once<T>(url: string, method: string, opts: RequestOptions, fetchImpl: FetchLike, timeoutMs: number): Promise<HttpResult<T>> {
  if (opts.signal?.aborted) throw new ApiError('aborted', 'aborted');
  const ctl = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    ctl.abort();
  }, timeoutMs);
  const onAbort = () => ctl.abort();
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    let res: Response;
    try {
      res = await fetchImpl(url, { method, headers: { Accept: 'application/json', ...(opts.headers ?? {}) }, body: opts.body, signal: ctl.signal });
    } catch (e) {
      if (timedOut) throw new ApiError(`timed out after ${timeoutMs} ms: ${method} ${url}`, 'timeout');
      if (opts.signal?.aborted) throw new ApiError('aborted', 'aborted');
      const cause = (e as any)?.cause?.code ?? (e as Error)?.message;
      throw new ApiError(`cannot reach ${new URL(url).origin} (${cause})`, 'network');
    }
    let text: string;
    try {
      text = await res.text();
    } catch (e) {
      if (timedOut) throw new ApiError(`timed out after ${timeoutMs} ms: ${method} ${url}`, 'timeout');
      if (opts.signal?.aborted) throw new ApiError('aborted', 'aborted');
      throw new ApiError(`connection lost reading ${url}`, 'network');
    }
    let body: unknown = text;
    const ct = res.headers.get('content-type') ?? '';
    if (text && (ct.includes('json') || /^[\[{]/.test(text.trim()))) {
      try {
        body = JSON.parse(text);
      } catch {
        if (res.ok) throw new ApiError(`invalid JSON from ${url}`, 'parse', res.status);
      }
    }
    if (!res.ok) {
      const d = describeErrorBody(body);
      const msg = d.message ? `${res.status} ${d.message}` : `${res.status} ${res.statusText || 'error'}`;
      throw new ApiError(msg, 'http', res.status, d.code, body, parseRetryAfter(res.headers.get('retry-after')));
    }
    return { status: res.status, headers: res.headers, body: body as T };
  } finally {
    clearTimeout(timer);
    opts.signal?.removeEventListener('abort', onAbort);
  }
}

/** Accepts the three Orchestrator list shapes: bare array, {success,data,meta}, {data,meta:{page,totalCount}}. */
export function unwrapList<T>(body: unknown): T[] {
  if (Array.isArray(body)) return body as T[];
  if (body && typeof body === 'object' && Array.isArray((body as any).data)) return (body as any).data as T[];
  if (body && typeof body === 'object' && Array.isArray((body as any).items)) return (body as any).items as T[];
  throw new ApiError('unexpected list response shape', 'parse');
}

export function unwrapOne<T>(body: unknown): T {
  if (body && typeof body === 'object' && 'data' in (body as any) && (body as any).data && typeof (body as any).data === 'object' && !Array.isArray((body as any).data))
    return (body as any).data as T;
  return body as T;
}

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]', '::1']);

/** Upstream rule: HTTPS only. Plain HTTP is accepted for loopback hosts (local daemons, tests). */
export function checkBaseUrl(raw: string, what: string): string {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new ApiError(`${what}: "${raw}" is not a URL`, 'config');
  }
  if (u.protocol !== 'https:' && !(u.protocol === 'http:' && LOOPBACK.has(u.hostname))) throw new ApiError(`${what}: HTTPS is required (got ${u.protocol}//${u.host})`, 'config');
  return raw.replace(/\/+$/, '');
}
