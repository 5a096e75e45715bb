// Ties the hub's event stream to the DataService: messages go to the health tracker at once; the list is read
// when the stream opens without a position, when the tracker asks, and every few minutes as a reconciliation
// (names, deleted integrations); while the stream is down the DataService polls the list as before.
import { EventStreamClient, StreamStatus } from './eventStream';
import { checkBaseUrl, FetchLike } from './http';
import type { ReconnectPolicy } from './reconnect';
import type { Connectivity, DataService, LiveState } from './service';

export interface LiveHealthDeps {
  service: DataService;
  /** The hub's URL (the `stellaops.integrationsUrl` setting); empty: no stream. */
  baseUrl: () => string | undefined;
  apiKey: () => Promise<string | undefined>;
  hasApiKey: () => boolean;
  timeoutMs: () => number;
  log?: (m: string) => void;
  /** How often the list is read while the stream is live (default 5 min). */
  reconcileMs?: number;
  policy?: ReconnectPolicy;
  random?: () => number;
  fetchImpl?: FetchLike;
}

export class LiveHealth {
  private client?: EventStreamClient;
  private url?: string;
  private reconcile?: NodeJS.Timeout;
  private lastConn: Connectivity;
  private readonly sub: { dispose(): void };

  constructor(private readonly deps: LiveHealthDeps) {
    this.lastConn = deps.service.snapshot.integrationsConn;
    // A list read that reaches the hub again is a reason to retry a stream lost to the network now rather than
    // after its back-off (not one the hub does not offer or refused: that waits, or a Refresh retries it).
    this.sub = deps.service.onDidChange((s) => {
      if (s.integrationsConn === 'connected' && this.lastConn !== 'connected' && this.client?.status.state === 'retrying') this.client.reconnectNow();
      this.lastConn = s.integrationsConn;
    });
  }

  get isLive(): boolean {
    return this.client?.isLive ?? false;
  }

  get status(): StreamStatus {
    return this.client?.status ?? { state: 'stopped' };
  }

  /** Follows the settings: starts the stream for the hub's URL and key, restarts it when they change, stops it without them. */
  update(opts: { keyChanged?: boolean } = {}): void {
    let url: string | undefined;
    try {
      url = this.deps.baseUrl() ? checkBaseUrl(this.deps.baseUrl()!, 'Integrations URL') : undefined;
    } catch {
      url = undefined;
    }
    if (!url || !this.deps.hasApiKey()) {
      this.stop();
      return;
    }
    if (this.client && this.url === url && !opts.keyChanged) {
      this.client.reconnectNow();
      return;
    }
    this.stop();
    this.url = url;
    this.client = new EventStreamClient({
      baseUrl: url,
      apiKey: this.deps.apiKey,
      lastEventId: () => this.deps.service.lastEventId,
      onOpen: (resuming) => {
        if (!resuming) void this.deps.service.refreshIntegrationList();
      },
      onMessages: (m) => this.deps.service.applyStreamMessages(m),
      onForgetPosition: () => this.deps.service.forgetStreamPosition(),
      onStatus: (s) => this.onStatus(s),
      connectTimeoutMs: this.deps.timeoutMs(),
      policy: this.deps.policy,
      random: this.deps.random,
      fetchImpl: this.deps.fetchImpl,
      log: this.deps.log,
    });
    this.client.start();
    this.reconcile = setInterval(() => {
      if (this.isLive) void this.deps.service.refreshIntegrationList();
    }, this.deps.reconcileMs ?? 5 * 60_000);
    this.reconcile.unref?.();
  }

  private onStatus(s: StreamStatus) {
    this.deps.service.setLive(liveState(s));
  }

  stop(): void {
    this.client?.stop();
    this.client = undefined;
    this.url = undefined;
    if (this.reconcile) clearInterval(this.reconcile);
    this.reconcile = undefined;
    this.deps.service.setLive({ mode: 'off' });
  }

  dispose(): void {
    this.sub.dispose();
    this.stop();
  }
}

export function liveState(s: StreamStatus): LiveState {
  switch (s.state) {
    case 'live':
      return { mode: 'live', detail: s.resumedFrom !== undefined ? `resumed after event ${s.resumedFrom}` : undefined };
    case 'connecting':
      return { mode: 'connecting' };
    case 'retrying':
      return { mode: 'polling', detail: `event stream: ${s.error}; retrying in ${Math.round(s.inMs / 1000)} s` };
    case 'unsupported':
      return { mode: 'polling', detail: `this hub has no event stream (${s.error})` };
    case 'unauthorized':
      return { mode: 'polling', detail: `event stream refused: ${s.error}` };
    default:
      return { mode: 'off' };
  }
}
