// How the event stream reconnects: the back-off between attempts and what each answer of
// GET /api/v1/events means. The shared contract is extensions/fixtures/events/reconnect.json.
import { parseRetryAfter } from './http';

export interface ReconnectPolicy {
  /** First delay (the stream's `retry:` replaces it). */
  initialMs: number;
  maxMs: number;
  factor: number;
  /** ± fraction of each delay, drawn at random. */
  jitter: number;
  /** Longest `Retry-After` honoured. */
  maxRetryAfterMs: number;
  /** Next try of the stream after a hub without it (404/405/501) or a refused credential (401/403). */
  unsupportedRetryMs: number;
  /** A connection open this long (or that delivered a message) starts the attempt count again. */
  stableAfterMs: number;
  /** A stream silent this long is treated as lost (the hub sends a comment every 15 s). */
  idleTimeoutMs: number;
}

export const RECONNECT: ReconnectPolicy = {
  initialMs: 500,
  maxMs: 30_000,
  factor: 2,
  jitter: 0.2,
  maxRetryAfterMs: 300_000,
  unsupportedRetryMs: 300_000,
  stableAfterMs: 60_000,
  idleTimeoutMs: 45_000,
};

/** Delay before reconnection attempt `attempt` (1 = the first after a failure); `random` in [0, 1). */
export function reconnectDelay(attempt: number, random: number, retryMs: number | undefined, p: ReconnectPolicy = RECONNECT): number {
  const first = retryMs ?? p.initialMs;
  const base = Math.min(p.maxMs, first * p.factor ** Math.min(Math.max(attempt - 1, 0), 60));
  return Math.round(base * (1 - p.jitter + 2 * p.jitter * random));
}

export type StreamAnswer =
  | { action: 'live' }
  | { action: 'unsupported' }
  | { action: 'unauthorized' }
  | { action: 'restart' }
  | { action: 'retry'; retryAfterMs?: number };

/** What to do with the answer to GET /api/v1/events. `resuming`: the request sent a Last-Event-ID. */
export function classifyAnswer(status: number, contentType: string | null | undefined, resuming: boolean, retryAfter: string | null | undefined, p: ReconnectPolicy = RECONNECT, nowMs = Date.now()): StreamAnswer {
  if (status === 200) return (contentType ?? '').toLowerCase().startsWith('text/event-stream') ? { action: 'live' } : { action: 'unsupported' };
  if (status === 404 || status === 405 || status === 501) return { action: 'unsupported' };
  if (status === 401 || status === 403) return { action: 'unauthorized' };
  if (status === 422 && resuming) return { action: 'restart' };
  const ra = parseRetryAfter(retryAfter ?? null, nowMs);
  return ra === undefined ? { action: 'retry' } : { action: 'retry', retryAfterMs: Math.min(ra, p.maxRetryAfterMs) };
}
