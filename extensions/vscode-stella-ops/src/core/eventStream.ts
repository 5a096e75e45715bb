// The hub's event stream (GET /api/v1/events): one long-lived request read as it arrives, resumed with
// Last-Event-ID after any drop, reconnected with back-off (extensions/fixtures/events/reconnect.json), treated
// as lost when silent past the idle timeout. Everything is asynchronous; nothing waits on the UI.
import { FetchLike } from './http';
import { classifyAnswer, RECONNECT, reconnectDelay, ReconnectPolicy } from './reconnect';
import { SseMessage, SseParser } from './sse';

export type StreamStatus =
  | { state: 'stopped' }
  | { state: 'connecting'; attempt: number }
  | { state: 'live'; since: number; resumedFrom?: string }
  | { state: 'retrying'; attempt: number; inMs: number; error: string }
  | { state: 'unsupported'; error: string; inMs: number }
  | { state: 'unauthorized'; error: string; inMs: number };

export interface EventStreamOptions {
  /** The hub's base URL (no trailing slash). */
  baseUrl: string;
  apiKey: () => Promise<string | undefined>;
  /** The position to resume from (sent as Last-Event-ID). */
  lastEventId: () => string | undefined;
  /** The stream is open; `resuming` when a Last-Event-ID was sent. */
  onOpen?: (resuming: boolean) => void;
  /** Messages completed by one read, in order. */
  onMessages: (m: SseMessage[]) => void;
  /** The hub refused the position (422): forget it; the client reconnects at once without it. */
  onForgetPosition?: () => void;
  onStatus?: (s: StreamStatus) => void;
  /** Until the response headers. */
  connectTimeoutMs?: number;
  policy?: ReconnectPolicy;
  random?: () => number;
  fetchImpl?: FetchLike;
  now?: () => number;
  log?: (m: string) => void;
}

type Outcome =
  | { kind: 'stopped' }
  | { kind: 'ended'; stable: boolean; error: string }
  | { kind: 'failed'; error: string }
  | { kind: 'unsupported' | 'unauthorized'; error: string }
  | { kind: 'restart'; error: string }
  | { kind: 'retry'; error: string; retryAfterMs?: number };

export class EventStreamClient {
  private gen = 0;
  private running = false;
  private conn?: AbortController;
  private wake?: () => void;
  private retryMs?: number;
  private current: StreamStatus = { state: 'stopped' };
  private readonly p: ReconnectPolicy;
  private readonly now: () => number;

  constructor(private readonly o: EventStreamOptions) {
    this.p = o.policy ?? RECONNECT;
    this.now = o.now ?? Date.now;
  }

  get status(): StreamStatus {
    return this.current;
  }

  get isLive(): boolean {
    return this.current.state === 'live';
  }

  /** Starts (or restarts, attempts counted afresh) the connection loop. */
  start(): void {
    this.running = true;
    const gen = ++this.gen;
    this.conn?.abort();
    this.wake?.();
    void this.loop(gen);
  }

  /** Skips the current wait (e.g. the hub answered a poll again); a live connection is kept. */
  reconnectNow(): void {
    if (!this.running || this.current.state === 'live' || this.current.state === 'connecting') return;
    this.start();
  }

  stop(): void {
    this.running = false;
    this.gen++;
    this.conn?.abort();
    this.wake?.();
    this.setStatus({ state: 'stopped' });
  }

  private setStatus(s: StreamStatus) {
    this.current = s;
    this.o.onStatus?.(s);
  }

  private async loop(gen: number) {
    let failures = 0;
    while (gen === this.gen) {
      let key: string | undefined;
      try {
        key = await this.o.apiKey();
      } catch {
        key = undefined;
      }
      if (gen !== this.gen) return;
      if (!key) {
        this.setStatus({ state: 'stopped' });
        return;
      }
      this.setStatus({ state: 'connecting', attempt: failures + 1 });
      const out = await this.connectOnce(key, gen);
      if (gen !== this.gen || out.kind === 'stopped') return;
      let delay: number;
      switch (out.kind) {
        case 'ended':
          if (out.stable) failures = 0;
          failures++;
          delay = reconnectDelay(failures, this.random(), this.retryMs, this.p);
          this.setStatus({ state: 'retrying', attempt: failures, inMs: delay, error: out.error });
          break;
        case 'failed':
          failures++;
          delay = reconnectDelay(failures, this.random(), this.retryMs, this.p);
          this.setStatus({ state: 'retrying', attempt: failures, inMs: delay, error: out.error });
          break;
        case 'unsupported':
        case 'unauthorized':
          failures = 0;
          delay = this.p.unsupportedRetryMs;
          this.setStatus({ state: out.kind, error: out.error, inMs: delay });
          break;
        case 'restart':
          this.o.log?.(`event stream: ${out.error}; starting again without a position`);
          this.o.onForgetPosition?.();
          failures = 0;
          delay = 0;
          break;
        case 'retry':
          failures++;
          delay = out.retryAfterMs ?? reconnectDelay(failures, this.random(), this.retryMs, this.p);
          this.setStatus({ state: 'retrying', attempt: failures, inMs: delay, error: out.error });
          break;
      }
      if (out.kind !== 'restart') this.o.log?.(`event stream: ${out.error}; next attempt in ${delay} ms`);
      await this.sleep(delay, gen);
    }
  }

  private random(): number {
    return (this.o.random ?? Math.random)();
  }

  private sleep(ms: number, gen: number): Promise<void> {
    if (ms <= 0 || gen !== this.gen) return Promise.resolve();
    return new Promise((resolve) => {
      const t = setTimeout(done, ms);
      function done() {
        clearTimeout(t);
        resolve();
      }
      this.wake = done;
    });
  }

  private async connectOnce(key: string, gen: number): Promise<Outcome> {
    const ctl = new AbortController();
    this.conn = ctl;
    const fetchImpl = this.o.fetchImpl ?? (globalThis.fetch as FetchLike);
    const position = this.o.lastEventId();
    const headers: Record<string, string> = { Accept: 'text/event-stream', 'Cache-Control': 'no-cache', Authorization: `Bearer ${key}` };
    if (position !== undefined) headers['Last-Event-ID'] = position;
    let why = '';
    const abortFor = (reason: string) => {
      why = reason;
      ctl.abort();
    };
    const connectTimer = setTimeout(() => abortFor(`no answer within ${this.o.connectTimeoutMs ?? 10_000} ms`), this.o.connectTimeoutMs ?? 10_000);
    let res: Response;
    try {
      res = await fetchImpl(`${this.o.baseUrl}/api/v1/events`, { headers, signal: ctl.signal });
    } catch (e) {
      clearTimeout(connectTimer);
      if (gen !== this.gen) return { kind: 'stopped' };
      return { kind: 'failed', error: why || `cannot reach ${this.o.baseUrl} (${(e as any)?.cause?.code ?? (e as Error)?.message ?? e})` };
    }
    const answer = classifyAnswer(res.status, res.headers.get('content-type'), position !== undefined, res.headers.get('retry-after'), this.p, this.now());
    if (answer.action !== 'live') {
      let detail = '';
      try {
        detail = (await res.text()).slice(0, 300);
      } catch {
        /* the body does not matter */
      }
      clearTimeout(connectTimer);
      if (gen !== this.gen) return { kind: 'stopped' };
      const error = `GET /api/v1/events answered ${res.status}${problemDetail(detail)}`;
      if (answer.action === 'retry') return { kind: 'retry', error, retryAfterMs: answer.retryAfterMs };
      return { kind: answer.action, error };
    }
    clearTimeout(connectTimer);
    const since = this.now();
    this.setStatus({ state: 'live', since, resumedFrom: position });
    this.o.log?.(`event stream open${position !== undefined ? `, resuming after ${position}` : ''}`);
    try {
      this.o.onOpen?.(position !== undefined);
    } catch (e) {
      this.o.log?.(`event stream: onOpen failed: ${(e as Error).message}`);
    }
    const parser = new SseParser(position);
    const decoder = new TextDecoder();
    let delivered = false;
    let idle: NodeJS.Timeout | undefined;
    const armIdle = () => {
      if (idle) clearTimeout(idle);
      idle = setTimeout(() => abortFor(`no data for ${this.p.idleTimeoutMs} ms`), this.p.idleTimeoutMs);
    };
    armIdle();
    let error = 'the hub closed the stream';
    try {
      const reader = res.body!.getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        armIdle();
        const messages = parser.push(decoder.decode(value, { stream: true }));
        if (parser.retryMs !== undefined) this.retryMs = parser.retryMs;
        if (messages.length && gen === this.gen) {
          delivered = true;
          try {
            this.o.onMessages(messages);
          } catch (e) {
            this.o.log?.(`event stream: handling messages failed: ${(e as Error).message}`);
          }
        }
      }
    } catch (e) {
      error = why || `connection lost (${(e as any)?.cause?.code ?? (e as Error)?.message ?? e})`;
    } finally {
      if (idle) clearTimeout(idle);
    }
    if (gen !== this.gen) return { kind: 'stopped' };
    return { kind: 'ended', stable: delivered || this.now() - since >= this.p.stableAfterMs, error };
  }
}

function problemDetail(text: string): string {
  try {
    const p = JSON.parse(text);
    const d = p?.detail ?? p?.title;
    return typeof d === 'string' ? `: ${d}` : '';
  } catch {
    return '';
  }
}
