// Thin API clients: the Orchestrator (Authority token) and the Integrations daemon (API key).
import { ApiError, FetchLike, checkBaseUrl, request, unwrapList, unwrapOne } from './http';
import type { Environment, HealthCheckResult, Integration, IntegrationCreate, Promotion, PromotionRequest, Release } from './types';

export interface ClientOptions {
  timeoutMs?: number;
  fetchImpl?: FetchLike;
  retries?: number;
  backoffMs?: number;
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
}

export interface TokenSource {
  getAccessToken(signal?: AbortSignal): Promise<string | undefined>;
  /** Called once after a 401; returns a fresh token. */
  refresh(signal?: AbortSignal): Promise<{ accessToken: string }>;
}

export class OrchestratorClient {
  readonly baseUrl: string;
  constructor(baseUrl: string, private readonly tokens: TokenSource, private readonly opts: ClientOptions = {}) {
    this.baseUrl = checkBaseUrl(baseUrl, 'Orchestrator URL');
  }

  private async call<T>(path: string, init: { method?: string; body?: unknown; headers?: Record<string, string>; token?: string }, signal?: AbortSignal): Promise<T> {
    const send = async (token: string) =>
      (
        await request<T>(`${this.baseUrl}${path}`, {
          method: init.method,
          headers: { Authorization: `Bearer ${token}`, ...(init.body !== undefined ? { 'Content-Type': 'application/json' } : {}), ...(init.headers ?? {}) },
          body: init.body !== undefined ? JSON.stringify(init.body) : undefined,
          timeoutMs: this.opts.timeoutMs,
          signal,
          fetchImpl: this.opts.fetchImpl,
          retries: init.method && init.method !== 'GET' ? 0 : this.opts.retries,
          backoffMs: this.opts.backoffMs,
          sleep: this.opts.sleep,
        })
      ).body;
    const token = init.token ?? (await this.tokens.getAccessToken(signal));
    if (!token) throw new ApiError('not signed in', 'http', 401, 'UNAUTHORIZED');
    try {
      return await send(token);
    } catch (e) {
      if (e instanceof ApiError && e.status === 401 && !init.token) {
        const fresh = await this.tokens.refresh(signal);
        return await send(fresh.accessToken);
      }
      throw e;
    }
  }

  async listReleases(project?: string, signal?: AbortSignal): Promise<Release[]> {
    const q = new URLSearchParams({ pageSize: '100' });
    if (project) q.set('project', project);
    return unwrapList<Release>(await this.call(`/api/v1/releases?${q}`, {}, signal));
  }

  async listEnvironments(signal?: AbortSignal): Promise<Environment[]> {
    const envs = unwrapList<Environment>(await this.call('/api/v1/environments?includeState=true', {}, signal));
    return [...envs].sort((a, b) => a.orderIndex - b.orderIndex);
  }

  /** Deployments: the promotions, newest first (GET /api/v1/promotions). */
  async listPromotions(signal?: AbortSignal): Promise<Promotion[]> {
    return unwrapList<Promotion>(await this.call('/api/v1/promotions', {}, signal));
  }

  /** POST /api/v1/promotions with the reason in the body and in X-Stella-Reason. `token` must carry orch:operate. */
  async createPromotion(req: PromotionRequest, token: string, signal?: AbortSignal): Promise<Promotion> {
    const headers: Record<string, string> = { 'X-Stella-Reason': encodeHeader(req.reason) };
    if (req.ticket) headers['X-Stella-Ticket'] = encodeHeader(req.ticket);
    return unwrapOne<Promotion>(await this.call('/api/v1/promotions', { method: 'POST', body: req, headers, token }, signal));
  }
}

function encodeHeader(v: string): string {
  // Header values must be ISO-8859-1; keep ASCII, escape the rest.
  return /^[\x20-\x7e]*$/.test(v) ? v : encodeURIComponent(v);
}

export type HealthCheckOutcome = { kind: 'result'; result: HealthCheckResult } | { kind: 'not-implemented'; message: string };

export class IntegrationsClient {
  readonly baseUrl: string;
  constructor(baseUrl: string, private readonly apiKey: () => Promise<string | undefined>, private readonly opts: ClientOptions = {}) {
    this.baseUrl = checkBaseUrl(baseUrl, 'Integrations URL');
  }

  private async call<T>(path: string, method = 'GET', body?: unknown, signal?: AbortSignal): Promise<T> {
    const key = await this.apiKey();
    if (!key) throw new ApiError('no Integrations API key set', 'http', 401, 'no-api-key');
    return (
      await request<T>(`${this.baseUrl}${path}`, {
        method,
        headers: { Authorization: `Bearer ${key}`, ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}) },
        body: body !== undefined ? JSON.stringify(body) : undefined,
        timeoutMs: this.opts.timeoutMs,
        signal,
        fetchImpl: this.opts.fetchImpl,
        retries: method === 'GET' ? this.opts.retries : 0,
        backoffMs: this.opts.backoffMs,
        sleep: this.opts.sleep,
      })
    ).body;
  }

  /** All integrations, following nextCursor (bounded to 20 pages). */
  async listIntegrations(signal?: AbortSignal): Promise<Integration[]> {
    const out: Integration[] = [];
    let cursor: string | null | undefined;
    for (let page = 0; page < 20; page++) {
      const q = new URLSearchParams({ limit: '100' });
      if (cursor) q.set('cursor', cursor);
      const body = await this.call<{ items: Integration[]; nextCursor?: string | null }>(`/api/v1/integrations?${q}`, 'GET', undefined, signal);
      out.push(...unwrapList<Integration>(body));
      cursor = (body as any)?.nextCursor;
      if (!cursor) break;
    }
    return out;
  }

  async createIntegration(input: IntegrationCreate, signal?: AbortSignal): Promise<Integration> {
    return this.call<Integration>('/api/v1/integrations', 'POST', input, signal);
  }

  /** 200 → the check result; 501 (health engine not there yet) → a distinct outcome, not an error. */
  async runHealthCheck(id: string, signal?: AbortSignal): Promise<HealthCheckOutcome> {
    try {
      const result = await this.call<HealthCheckResult>(`/api/v1/integrations/${encodeURIComponent(id)}/health-check`, 'POST', undefined, signal);
      return { kind: 'result', result };
    } catch (e) {
      if (e instanceof ApiError && e.status === 501) return { kind: 'not-implemented', message: e.message.replace(/^501 /, '') };
      throw e;
    }
  }

  swaggerUrl(): string {
    return `${this.baseUrl}/docs`;
  }
}
