// Fetches releases, environments and integrations; keeps last-known data (persisted) and marks it stale
// when a backend is unreachable; one notice per transition instead of an error storm; backoff while offline.
import { ApiError } from './http';
import type { IntegrationsClient, OrchestratorClient } from './clients';
import type { Environment, Integration, Release } from './types';

export type Backend = 'orchestrator' | 'integrations';
/** not-configured: no URL; signed-out: no credential; offline: unreachable; error: reachable but refused/failed. */
export type Connectivity = 'not-configured' | 'signed-out' | 'connected' | 'offline' | 'error';

export interface Resource<T> {
  data?: T;
  fetchedAt?: number;
  stale: boolean;
  error?: string;
}

export interface Snapshot {
  releases: Resource<Release[]>;
  environments: Resource<Environment[]>;
  integrations: Resource<Integration[]>;
  orchestrator: Connectivity;
  integrationsConn: Connectivity;
  orchestratorError?: string;
  integrationsError?: string;
  refreshing: boolean;
}

export interface CacheStore {
  get<T>(key: string): T | undefined;
  update(key: string, value: unknown): PromiseLike<void> | Promise<void>;
}

export interface Notice {
  kind: 'offline' | 'online' | 'error';
  backend: Backend;
  message: string;
}

export interface ServiceDeps {
  orchestrator: () => OrchestratorClient | undefined;
  integrations: () => IntegrationsClient | undefined;
  isSignedIn: () => boolean;
  hasApiKey: () => Promise<boolean>;
  project: () => string | undefined;
  cache?: CacheStore;
  now?: () => number;
  notify?: (n: Notice) => void;
  log?: (m: string) => void;
}

const CACHE_KEY = 'stellaops.lastKnown.v1';
const MAX_BACKOFF_MS = 5 * 60_000;

export class DataService {
  private snap: Snapshot;
  private listeners: Array<(s: Snapshot) => void> = [];
  private inflight?: Promise<void>;
  private failures: Record<Backend, number> = { orchestrator: 0, integrations: 0 };
  private readonly now: () => number;

  constructor(private readonly deps: ServiceDeps) {
    this.now = deps.now ?? Date.now;
    const cached = deps.cache?.get<{ releases?: Resource<Release[]>; environments?: Resource<Environment[]>; integrations?: Resource<Integration[]> }>(CACHE_KEY);
    const fromCache = <T>(r?: Resource<T>): Resource<T> => (r?.data ? { data: r.data, fetchedAt: r.fetchedAt, stale: true } : { stale: false });
    this.snap = {
      releases: fromCache(cached?.releases),
      environments: fromCache(cached?.environments),
      integrations: fromCache(cached?.integrations),
      orchestrator: 'not-configured',
      integrationsConn: 'not-configured',
      refreshing: false,
    };
  }

  get snapshot(): Snapshot {
    return this.snap;
  }

  onDidChange(l: (s: Snapshot) => void): { dispose(): void } {
    this.listeners.push(l);
    return { dispose: () => (this.listeners = this.listeners.filter((x) => x !== l)) };
  }

  private emit() {
    for (const l of this.listeners) l(this.snap);
  }

  /** Delay before the next background refresh: the interval, doubled per consecutive offline failure, capped. */
  nextDelayMs(intervalMs: number): number {
    const f = Math.max(this.failures.orchestrator, this.failures.integrations);
    return Math.min(MAX_BACKOFF_MS, intervalMs * 2 ** Math.min(f, 10));
  }

  /** Single flight: concurrent callers share one refresh. */
  refresh(signal?: AbortSignal): Promise<void> {
    if (!this.inflight) {
      this.inflight = this.doRefresh(signal).finally(() => {
        this.inflight = undefined;
      });
    }
    return this.inflight;
  }

  private async doRefresh(signal?: AbortSignal) {
    this.snap = { ...this.snap, refreshing: true };
    this.emit();
    await Promise.all([this.refreshOrchestrator(signal), this.refreshIntegrations(signal)]);
    this.snap = { ...this.snap, refreshing: false };
    this.emit();
    try {
      await this.deps.cache?.update(CACHE_KEY, {
        releases: strip(this.snap.releases),
        environments: strip(this.snap.environments),
        integrations: strip(this.snap.integrations),
      });
    } catch (e) {
      this.deps.log?.(`cache write failed: ${(e as Error).message}`);
    }
  }

  private transition(backend: Backend, next: Connectivity, message?: string) {
    const key = backend === 'orchestrator' ? 'orchestrator' : 'integrationsConn';
    const errKey = backend === 'orchestrator' ? 'orchestratorError' : 'integrationsError';
    const prev = this.snap[key];
    const prevErr = this.snap[errKey];
    this.snap = { ...this.snap, [key]: next, [errKey]: message };
    if (next === 'offline') this.failures[backend]++;
    else this.failures[backend] = 0;
    if (next === prev && (next !== 'error' || message === prevErr)) return;
    if (next === 'offline') this.deps.notify?.({ kind: 'offline', backend, message: message ?? 'unreachable' });
    else if (next === 'error') this.deps.notify?.({ kind: 'error', backend, message: message ?? 'failed' });
    else if (next === 'connected' && (prev === 'offline' || prev === 'error')) this.deps.notify?.({ kind: 'online', backend, message: 'reachable again' });
  }

  private failResource<T>(r: Resource<T>, msg: string): Resource<T> {
    return { ...r, stale: r.data !== undefined, error: msg };
  }

  private async refreshOrchestrator(signal?: AbortSignal) {
    const client = safe(() => this.deps.orchestrator());
    if (client instanceof Error) {
      this.transition('orchestrator', 'error', client.message);
      return;
    }
    if (!client) return this.transition('orchestrator', 'not-configured');
    if (!this.deps.isSignedIn()) {
      this.snap = { ...this.snap, releases: markStale(this.snap.releases), environments: markStale(this.snap.environments) };
      return this.transition('orchestrator', 'signed-out');
    }
    const [rel, env] = await Promise.allSettled([client.listReleases(this.deps.project(), signal), client.listEnvironments(signal)]);
    const t = this.now();
    let firstErr: unknown;
    if (rel.status === 'fulfilled') this.snap = { ...this.snap, releases: { data: rel.value, fetchedAt: t, stale: false } };
    else {
      firstErr = rel.reason;
      this.snap = { ...this.snap, releases: this.failResource(this.snap.releases, errMsg(rel.reason)) };
    }
    if (env.status === 'fulfilled') this.snap = { ...this.snap, environments: { data: env.value, fetchedAt: t, stale: false } };
    else {
      firstErr ??= env.reason;
      this.snap = { ...this.snap, environments: this.failResource(this.snap.environments, errMsg(env.reason)) };
    }
    if (firstErr === undefined) return this.transition('orchestrator', 'connected');
    if (isAborted(firstErr)) return;
    this.deps.log?.(`orchestrator refresh failed: ${errMsg(firstErr)}`);
    if (!this.deps.isSignedIn()) return this.transition('orchestrator', 'signed-out');
    this.transition('orchestrator', isUnreachable(firstErr) ? 'offline' : 'error', errMsg(firstErr));
  }

  private async refreshIntegrations(signal?: AbortSignal) {
    const client = safe(() => this.deps.integrations());
    if (client instanceof Error) {
      this.transition('integrations', 'error', client.message);
      return;
    }
    if (!client) return this.transition('integrations', 'not-configured');
    if (!(await this.deps.hasApiKey())) {
      this.snap = { ...this.snap, integrations: markStale(this.snap.integrations) };
      return this.transition('integrations', 'signed-out');
    }
    try {
      const items = await client.listIntegrations(signal);
      this.snap = { ...this.snap, integrations: { data: items, fetchedAt: this.now(), stale: false } };
      this.transition('integrations', 'connected');
    } catch (e) {
      if (isAborted(e)) return;
      this.deps.log?.(`integrations refresh failed: ${errMsg(e)}`);
      this.snap = { ...this.snap, integrations: this.failResource(this.snap.integrations, errMsg(e)) };
      this.transition('integrations', isUnreachable(e) ? 'offline' : 'error', errMsg(e));
    }
  }

  /** Apply a single integration's new status locally after a health check (until the next refresh). */
  patchIntegration(id: string, patch: Partial<Integration>) {
    const items = this.snap.integrations.data;
    if (!items) return;
    this.snap = { ...this.snap, integrations: { ...this.snap.integrations, data: items.map((i) => (i.id === id ? { ...i, ...patch } : i)) } };
    this.emit();
  }

  /** Forget everything that came from a backend (sign-out). */
  async clear(backend: Backend) {
    if (backend === 'orchestrator') this.snap = { ...this.snap, releases: { stale: false }, environments: { stale: false } };
    else this.snap = { ...this.snap, integrations: { stale: false } };
    this.emit();
    await this.deps.cache?.update(CACHE_KEY, { releases: strip(this.snap.releases), environments: strip(this.snap.environments), integrations: strip(this.snap.integrations) });
  }
}

function strip<T>(r: Resource<T>) {
  return r.data !== undefined ? { data: r.data, fetchedAt: r.fetchedAt } : undefined;
}
function markStale<T>(r: Resource<T>): Resource<T> {
  return r.data !== undefined ? { ...r, stale: true } : r;
}
function safe<T>(f: () => T): T | Error {
  try {
    return f();
  } catch (e) {
    return e instanceof Error ? e : new Error(String(e));
  }
}
export function errMsg(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
function isUnreachable(e: unknown) {
  return e instanceof ApiError && e.isUnreachable;
}
function isAborted(e: unknown) {
  return e instanceof ApiError && e.kind === 'aborted';
}
