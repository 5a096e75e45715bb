// Fetches releases, environments, deployments and integrations; keeps last-known data (persisted) and marks it
// stale when a backend is unreachable; one notice per transition instead of an error storm; backoff while offline.
// Integration status goes through the HealthTracker, fed by lists (first load, polling, resync) and by the
// hub's event stream (applyStreamMessages); while the stream is live the list is not polled.
import { ApiError } from './http';
import type { IntegrationsClient, OrchestratorClient } from './clients';
import { FollowSettings, HealthCheckLike, HealthNotification, HealthTracker, TrackerLimits } from './healthTracker';
import type { SseMessage } from './sse';
import type { Environment, Integration, Promotion, Release } from './types';

export type Backend = 'orchestrator' | 'integrations';
/** not-configured: no URL; signed-out: no credential; offline: unreachable; error: reachable but refused/failed. */
export type Connectivity = 'not-configured' | 'signed-out' | 'connected' | 'offline' | 'error';

export interface Resource<T> {
  data?: T;
  fetchedAt?: number;
  stale: boolean;
  error?: string;
}

/** How integration status reaches the extension: the hub's event stream, or polling the list. */
export interface LiveState {
  mode: 'off' | 'connecting' | 'live' | 'polling';
  /** Why it is polling (the stream's last error), or where a live stream resumed. */
  detail?: string;
}

export interface Snapshot {
  releases: Resource<Release[]>;
  environments: Resource<Environment[]>;
  deployments: Resource<Promotion[]>;
  integrations: Resource<Integration[]>;
  live: LiveState;
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
  /** Which integrations the user follows, and whether notifications are muted (read at each update). */
  follow?: () => FollowSettings;
  /** An integration the user follows went unhealthy, or an incident opened. */
  onHealthNotification?: (n: HealthNotification) => void;
  /** True while the event stream is live: background refreshes then leave the integration list alone. */
  integrationsLive?: () => boolean;
  trackerLimits?: TrackerLimits;
  /** Delay before reading the list again when the tracker asks for it (default 200 ms). */
  resyncDelayMs?: number;
}

export const DEFAULT_FOLLOW: FollowSettings = { follow: 'referenced', muted: false, pinned: [], referenced: [] };

const CACHE_KEY = 'stellaops.lastKnown.v1';
const MAX_BACKOFF_MS = 5 * 60_000;

export class DataService {
  private snap: Snapshot;
  private listeners: Array<(s: Snapshot) => void> = [];
  private inflight?: Promise<void>;
  private listInflight?: Promise<void>;
  private resyncTimer?: NodeJS.Timeout;
  private tracker: HealthTracker;
  private failures: Record<Backend, number> = { orchestrator: 0, integrations: 0 };
  private readonly now: () => number;

  constructor(private readonly deps: ServiceDeps) {
    this.now = deps.now ?? Date.now;
    this.tracker = new HealthTracker(this.followSettings(), deps.trackerLimits);
    const cached = deps.cache?.get<{ releases?: Resource<Release[]>; environments?: Resource<Environment[]>; deployments?: Resource<Promotion[]>; integrations?: Resource<Integration[]> }>(CACHE_KEY);
    const fromCache = <T>(r?: Resource<T>): Resource<T> => (r?.data ? { data: r.data, fetchedAt: r.fetchedAt, stale: true } : { stale: false });
    this.snap = {
      releases: fromCache(cached?.releases),
      environments: fromCache(cached?.environments),
      deployments: fromCache(cached?.deployments),
      integrations: fromCache(cached?.integrations),
      live: { mode: 'off' },
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

  /**
   * Single flight: concurrent callers share one refresh. The integration list is read too unless the event
   * stream is live (`integrations: true` forces it, e.g. the Refresh command).
   */
  refresh(signal?: AbortSignal, opts: { integrations?: boolean } = {}): Promise<void> {
    if (!this.inflight) {
      const withList = opts.integrations ?? !this.deps.integrationsLive?.();
      this.inflight = this.doRefresh(signal, withList).finally(() => {
        this.inflight = undefined;
      });
    }
    return this.inflight;
  }

  /** Reads the integration list alone (the stream asked for a resync, or it opened without a position). */
  refreshIntegrationList(signal?: AbortSignal): Promise<void> {
    if (!this.listInflight) {
      this.listInflight = this.refreshIntegrations(signal)
        .then(() => this.emit())
        .finally(() => {
          this.listInflight = undefined;
        });
    }
    return this.listInflight;
  }

  private async doRefresh(signal: AbortSignal | undefined, withList: boolean) {
    this.snap = { ...this.snap, refreshing: true };
    this.emit();
    await Promise.all([this.refreshOrchestrator(signal), withList ? this.refreshIntegrationList(signal) : Promise.resolve()]);
    this.snap = { ...this.snap, refreshing: false };
    this.emit();
    await this.persist();
  }

  private async persist() {
    try {
      await this.deps.cache?.update(CACHE_KEY, {
        releases: strip(this.snap.releases),
        environments: strip(this.snap.environments),
        deployments: strip(this.snap.deployments),
        integrations: strip(this.snap.integrations),
      });
    } catch (e) {
      this.deps.log?.(`cache write failed: ${(e as Error).message}`);
    }
  }

  private followSettings(): FollowSettings {
    return this.deps.follow?.() ?? DEFAULT_FOLLOW;
  }

  /** Whether the user follows this integration (for the views). */
  isFollowed(i: { id: string; name: string }): boolean {
    this.tracker.setSettings(this.followSettings());
    return this.tracker.isFollowed(i);
  }

  /** The position to resume the event stream from (Last-Event-ID). */
  get lastEventId(): string | undefined {
    return this.tracker.lastEventId;
  }

  /** The hub refused the stream position: forget it (the list is read again). */
  forgetStreamPosition() {
    this.tracker.forgetPosition();
    this.scheduleResync();
  }

  setLive(live: LiveState) {
    if (live.mode === this.snap.live.mode && live.detail === this.snap.live.detail) return;
    this.snap = { ...this.snap, live };
    this.emit();
  }

  /** Messages from the event stream, applied in order; the views change at once. */
  applyStreamMessages(messages: SseMessage[]) {
    this.tracker.setSettings(this.followSettings());
    let changed = false;
    for (const m of messages) changed = this.tracker.applyMessage(m) || changed;
    if (changed) {
      this.snap = { ...this.snap, integrations: { data: this.tracker.integrations(), fetchedAt: this.now(), stale: false } };
      this.transition('integrations', 'connected');
      this.emit();
    }
    this.flushHealthNotifications();
    if (this.tracker.needsResync) this.scheduleResync();
  }

  /** A health check's result (Run Health Check), shown at once. */
  applyCheckResult(id: string, r: HealthCheckLike) {
    this.tracker.setSettings(this.followSettings());
    if (!this.tracker.applyCheck(id, r)) return;
    this.snap = { ...this.snap, integrations: { ...this.snap.integrations, data: this.tracker.integrations() } };
    this.emit();
    this.flushHealthNotifications();
  }

  private flushHealthNotifications() {
    for (const n of this.tracker.drain()) {
      try {
        this.deps.onHealthNotification?.(n);
      } catch (e) {
        this.deps.log?.(`health notification failed: ${(e as Error).message}`);
      }
    }
  }

  private scheduleResync() {
    if (this.resyncTimer) return;
    this.resyncTimer = setTimeout(() => {
      this.resyncTimer = undefined;
      void this.refreshIntegrationList();
    }, this.deps.resyncDelayMs ?? 200);
    this.resyncTimer.unref?.();
  }

  dispose() {
    if (this.resyncTimer) clearTimeout(this.resyncTimer);
    this.resyncTimer = undefined;
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
      this.snap = { ...this.snap, releases: markStale(this.snap.releases), environments: markStale(this.snap.environments), deployments: markStale(this.snap.deployments) };
      return this.transition('orchestrator', 'signed-out');
    }
    const [rel, env, dep] = await Promise.allSettled([client.listReleases(this.deps.project(), signal), client.listEnvironments(signal), client.listPromotions(signal)]);
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
    if (dep.status === 'fulfilled') this.snap = { ...this.snap, deployments: { data: dep.value, fetchedAt: t, stale: false } };
    else {
      firstErr ??= dep.reason;
      this.snap = { ...this.snap, deployments: this.failResource(this.snap.deployments, errMsg(dep.reason)) };
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
      this.tracker.setSettings(this.followSettings());
      this.tracker.applyList(items);
      this.snap = { ...this.snap, integrations: { data: this.tracker.integrations(), fetchedAt: this.now(), stale: false } };
      this.transition('integrations', 'connected');
      this.flushHealthNotifications();
    } catch (e) {
      if (isAborted(e)) return;
      this.deps.log?.(`integrations refresh failed: ${errMsg(e)}`);
      this.snap = { ...this.snap, integrations: this.failResource(this.snap.integrations, errMsg(e)) };
      this.transition('integrations', isUnreachable(e) ? 'offline' : 'error', errMsg(e));
    }
  }

  /** Forget everything that came from a backend (sign-out). */
  async clear(backend: Backend) {
    if (backend === 'orchestrator') this.snap = { ...this.snap, releases: { stale: false }, environments: { stale: false }, deployments: { stale: false } };
    else {
      this.tracker = new HealthTracker(this.followSettings(), this.deps.trackerLimits);
      this.snap = { ...this.snap, integrations: { stale: false } };
    }
    this.emit();
    await this.persist();
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
