// The live model of integration status: fed by the hub's event stream (GET /api/v1/events, CloudEvents over
// SSE) and by integration lists (first load, polling, resync). Decides the notifications: one per integration
// per status change into unhealthy/error, one per incident, only for the integrations the user follows.
// Pure and synchronous; the rules are the shared contract in extensions/fixtures/README.md ("Health events").
import type { SseMessage } from './sse';
import type { Integration } from './types';

export type FollowMode = 'referenced' | 'pinned' | 'all';

export interface FollowSettings {
  /** `referenced`: named in stella.yaml `integrations:`, plus pinned; `pinned`: only pinned; `all`. */
  follow: FollowMode;
  muted: boolean;
  /** Names or ids. */
  pinned: string[];
  /** Names or ids from the project's stella.yaml. */
  referenced: string[];
}

export interface TrackerLimits {
  maxIntegrations?: number;
  maxSeenEvents?: number;
}

export interface HealthEntry {
  id: string;
  /** null until a list names it (an event carries no name). */
  name: string | null;
  type: string | null;
  status: string;
  statusReason: string | null;
  message: string | null;
  lastCheckedAt: string | null;
  flapping?: boolean;
  /** When the status came from an event: that event's check time (ms). A list older than this does not undo it. */
  eventAt?: number;
  /** The last list item for it (config, version, … for the view). */
  item?: Integration;
  touched: number;
}

export interface HealthCheckLike {
  status: string;
  reason?: string | null;
  message?: string | null;
  checkedAt?: string | null;
}

export type HealthNotification =
  | { kind: 'integration'; integrationId: string; name: string; type: string | null; status: string; previousStatus: string; reason: string | null; message: string | null }
  | { kind: 'incident'; incidentId: string; integrationIds: string[]; names: string[]; title: string | null; reason: string | null };

/** Event types whose `data.status` is the integration's status. */
export const STATUS_EVENT_TYPES = new Set([
  'dev.stellaops.integration.health.changed',
  'dev.stellaops.integration.health.recovered',
  'dev.stellaops.integration.health.reminder',
  'dev.stellaops.integration.health.flapping',
  'dev.stellaops.integration.plugin.crashloop',
]);

/**
 * Incident events: not emitted by the hub yet (another issue). This is the one place that reads them; the
 * assumed shape is `….incident.opened` / `….incident.resolved` with `data.incidentId`, `data.integrationIds`,
 * optional `data.title` and `data.reason` (else `data.message`). Returns undefined for any other event.
 */
export function parseIncident(ce: any): { incidentId: string; opened: boolean; integrationIds: string[]; title: string | null; reason: string | null } | undefined {
  const type = typeof ce?.type === 'string' ? ce.type : '';
  const opened = type.endsWith('.incident.opened');
  if (!opened && !type.endsWith('.incident.resolved')) return undefined;
  const d = ce.data ?? {};
  const incidentId = str(d.incidentId);
  if (!incidentId) return undefined;
  const integrationIds = Array.isArray(d.integrationIds) ? d.integrationIds.filter((x: unknown): x is string => typeof x === 'string') : [];
  return { incidentId, opened, integrationIds, title: str(d.title), reason: str(d.reason) ?? str(d.message) };
}

const FAILING = new Set(['unhealthy', 'error']);
export const isFailing = (status: string | undefined) => status !== undefined && FAILING.has(status);

function str(v: unknown): string | null {
  return typeof v === 'string' ? v : null;
}

/** Milliseconds of an RFC 3339 time (fractions past milliseconds are cut), or undefined. */
export function timeMs(v: unknown): number | undefined {
  if (typeof v !== 'string' || !v) return undefined;
  const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$/i.exec(v.trim());
  if (!m) return undefined;
  const frac = m[2] ? m[2].slice(0, 4).padEnd(4, '0') : '';
  const t = Date.parse(`${m[1]}${frac}${m[3].toUpperCase()}`);
  return Number.isFinite(t) ? t : undefined;
}

const MAX_OPEN_INCIDENTS = 100;

export class HealthTracker {
  private entries = new Map<string, HealthEntry>();
  private clock = 0;
  private listSeen = false;
  private position: string | undefined;
  private lastSeq: number | undefined;
  private seen = new Set<string>();
  private seenOrder: string[] = [];
  /** Integrations in a failing episode already told (or deliberately not told) about. */
  private episodes = new Set<string>();
  /** Entered a failing status before their name was known: decided when a list names them. */
  private pending = new Set<string>();
  private incidents = new Map<string, string[]>();
  private incidentOf = new Map<string, string>();
  private incidentsTold = new Set<string>();
  private incidentsToldOrder: string[] = [];
  private out: HealthNotification[] = [];
  private readonly maxIntegrations: number;
  private readonly maxSeen: number;
  /** Times the tracker decided the list should be read again. */
  resyncRequests = 0;
  needsResync = false;

  constructor(private settings: FollowSettings, limits: TrackerLimits = {}) {
    this.maxIntegrations = Math.max(1, limits.maxIntegrations ?? 5000);
    this.maxSeen = Math.max(1, limits.maxSeenEvents ?? 1000);
  }

  setSettings(s: FollowSettings) {
    this.settings = s;
  }

  /** The id to send as Last-Event-ID. */
  get lastEventId(): string | undefined {
    return this.position;
  }

  /** True once a list or an event has been applied. */
  get hasData(): boolean {
    return this.listSeen || this.entries.size > 0;
  }

  /** Forget the stream position (the hub refused it): the next connection starts afresh and the list is read again. */
  forgetPosition() {
    this.position = undefined;
    this.lastSeq = undefined;
    this.requestResync();
  }

  get size(): number {
    return this.entries.size;
  }

  entry(id: string): HealthEntry | undefined {
    return this.entries.get(id);
  }

  openIncidents(): string[] {
    return [...this.incidents.keys()].sort();
  }

  /** Notifications raised since the last call. */
  drain(): HealthNotification[] {
    const n = this.out;
    this.out = [];
    return n;
  }

  isFollowed(e: { id: string; name: string | null }): boolean {
    const s = this.settings;
    if (s.follow === 'all') return true;
    const hit = (l: string[]) => l.includes(e.id) || (e.name !== null && l.includes(e.name));
    return hit(s.pinned) || (s.follow === 'referenced' && hit(s.referenced));
  }

  /** The model as integrations for the views: list items with the live status over them. */
  integrations(): Integration[] {
    return [...this.entries.values()].map((e) => ({
      ...(e.item ?? { id: e.id, tenantId: '', type: e.type ?? '', name: e.id, config: {}, authRef: null, version: 0, createdAt: '', updatedAt: '' }),
      type: e.type ?? e.item?.type ?? '',
      name: e.name ?? e.id,
      status: e.status as Integration['status'],
      statusReason: e.statusReason,
      lastCheckedAt: e.lastCheckedAt,
    }));
  }

  /** A full list of integrations (all pages). The first one ever is a silent baseline. */
  applyList(items: Integration[]): void {
    const baseline = !this.listSeen;
    this.listSeen = true;
    this.needsResync = false;
    let keep = items;
    if (items.length > this.maxIntegrations) {
      const followed = items.filter((i) => this.isFollowed(i));
      keep = [...followed, ...items.filter((i) => !this.isFollowed(i))].slice(0, this.maxIntegrations);
      const kept = new Set(keep);
      keep = items.filter((i) => kept.has(i));
    }
    const next = new Map<string, HealthEntry>();
    const changed: Array<[HealthEntry, string]> = [];
    for (const item of keep) {
      const old = this.entries.get(item.id);
      const e: HealthEntry = old ?? { id: item.id, name: null, type: null, status: 'unknown', statusReason: null, message: null, lastCheckedAt: null, touched: 0 };
      const prev = old ? old.status : 'unknown';
      e.name = item.name;
      e.type = item.type;
      e.item = item;
      const listAt = timeMs(item.lastCheckedAt);
      const eventWins = e.eventAt !== undefined && (listAt === undefined || listAt < e.eventAt);
      if (!eventWins) {
        if (item.status !== e.status) e.flapping = undefined;
        e.status = item.status;
        e.statusReason = item.statusReason ?? null;
        e.message = null;
        e.lastCheckedAt = item.lastCheckedAt ?? null;
        e.eventAt = undefined;
      }
      e.touched = ++this.clock;
      next.set(item.id, e);
      if (!baseline && (old === undefined || prev !== e.status)) changed.push([e, prev]);
    }
    for (const id of this.entries.keys()) if (!next.has(id)) this.forget(id);
    this.entries = next;
    if (baseline) {
      for (const e of this.entries.values()) if (isFailing(e.status) && !this.pending.has(e.id)) this.episodes.add(e.id);
    }
    for (const [e, prev] of changed) this.transition(e, prev);
    for (const id of [...this.pending]) {
      const e = this.entries.get(id);
      this.pending.delete(id);
      if (!e || e.name === null || !isFailing(e.status) || this.episodes.has(id)) continue;
      this.enterFailing(e, 'unknown');
    }
  }

  /** One SSE message. Returns true when the model changed. */
  applyMessage(m: SseMessage): boolean {
    const seq = m.id !== undefined && /^\d+$/.test(m.id) ? Number(m.id) : undefined;
    let ce: any;
    try {
      ce = JSON.parse(m.data);
    } catch {
      ce = undefined;
    }
    const ceId = ce && typeof ce === 'object' && typeof ce.id === 'string' ? (ce.id as string) : undefined;
    if (ceId !== undefined && this.seen.has(ceId)) return false; // a duplicate delivery
    const behind = seq !== undefined && this.lastSeq !== undefined && seq <= this.lastSeq;
    if (behind && ceId === undefined) return false;
    if (behind) this.requestResync(); // the hub's log started again
    if (m.id !== undefined) {
      this.position = m.id;
      if (seq !== undefined) this.lastSeq = seq;
    }
    if (ceId !== undefined) this.remember(ceId);
    if (!ce || typeof ce !== 'object') return false;
    const incident = parseIncident(ce);
    if (incident) return this.applyIncident(incident);
    if (typeof ce.type !== 'string' || !STATUS_EVENT_TYPES.has(ce.type)) return false;
    return this.applyStatus(ce);
  }

  /** A health check's result for one integration (e.g. "Run health check"), as fresh as a list entry. */
  applyCheck(id: string, r: HealthCheckLike): boolean {
    const e = this.entries.get(id);
    if (!e) return false;
    const at = timeMs(r.checkedAt);
    if (e.eventAt !== undefined && at !== undefined && at < e.eventAt) return false;
    const prev = e.status;
    e.status = r.status;
    e.statusReason = r.reason ?? null;
    e.message = r.message ?? null;
    e.lastCheckedAt = r.checkedAt ?? e.lastCheckedAt;
    e.eventAt = at;
    e.touched = ++this.clock;
    if (prev !== e.status) this.transition(e, prev);
    return true;
  }

  private applyStatus(ce: any): boolean {
    const d = ce.data && typeof ce.data === 'object' ? ce.data : {};
    const id = str(d.integrationId) ?? str(ce.subject);
    const status = str(d.status);
    if (!id || !status) return false;
    let e = this.entries.get(id);
    const prev = e ? e.status : 'unknown';
    if (!e) {
      e = { id, name: null, type: str(d.integrationType), status: 'unknown', statusReason: null, message: null, lastCheckedAt: null, touched: 0 };
      this.insert(e);
      this.requestResync();
    }
    e.status = status;
    e.statusReason = str(d.reason);
    e.message = str(d.message);
    e.lastCheckedAt = str(d.checkedAt) ?? str(ce.time);
    if (typeof d.flapping === 'boolean') e.flapping = d.flapping;
    e.eventAt = timeMs(d.checkedAt) ?? timeMs(ce.time);
    if (!e.type) e.type = str(d.integrationType);
    e.touched = ++this.clock;
    if (prev !== status) this.transition(e, prev);
    return true;
  }

  private applyIncident(i: NonNullable<ReturnType<typeof parseIncident>>): boolean {
    if (!i.opened) {
      const members = this.incidents.get(i.incidentId) ?? i.integrationIds;
      this.incidents.delete(i.incidentId);
      for (const m of members) if (this.incidentOf.get(m) === i.incidentId) this.incidentOf.delete(m);
      return true;
    }
    if (this.incidents.has(i.incidentId)) return false;
    if (this.incidents.size >= MAX_OPEN_INCIDENTS) {
      const [oldest, members] = this.incidents.entries().next().value as [string, string[]];
      this.incidents.delete(oldest);
      for (const m of members) if (this.incidentOf.get(m) === oldest) this.incidentOf.delete(m);
    }
    this.incidents.set(i.incidentId, i.integrationIds);
    for (const m of i.integrationIds) {
      this.incidentOf.set(m, i.incidentId);
      if (isFailing(this.entries.get(m)?.status)) this.episodes.add(m);
      this.pending.delete(m);
    }
    if (this.incidentsTold.has(i.incidentId)) return true;
    this.incidentsTold.add(i.incidentId);
    this.incidentsToldOrder.push(i.incidentId);
    if (this.incidentsToldOrder.length > this.maxSeen) this.incidentsTold.delete(this.incidentsToldOrder.shift()!);
    const followed = i.integrationIds.some((m) => this.isFollowed(this.entries.get(m) ?? { id: m, name: null }));
    if (!this.settings.muted && followed)
      this.out.push({ kind: 'incident', incidentId: i.incidentId, integrationIds: i.integrationIds, names: i.integrationIds.map((m) => this.entries.get(m)?.name ?? m), title: i.title, reason: i.reason });
    return true;
  }

  private transition(e: HealthEntry, prev: string) {
    if (!isFailing(e.status)) {
      this.episodes.delete(e.id);
      this.pending.delete(e.id);
      return;
    }
    if (this.episodes.has(e.id) || this.pending.has(e.id)) return; // already failing (unhealthy ⇄ error is the same episode)
    if (this.incidentOf.has(e.id)) {
      this.episodes.add(e.id); // told as part of its incident
      return;
    }
    if (e.name === null) {
      this.pending.add(e.id);
      return;
    }
    this.enterFailing(e, prev);
  }

  private enterFailing(e: HealthEntry, prev: string) {
    this.episodes.add(e.id);
    if (this.settings.muted || !this.isFollowed(e)) return;
    this.out.push({ kind: 'integration', integrationId: e.id, name: e.name ?? e.id, type: e.type, status: e.status, previousStatus: prev, reason: e.statusReason ?? e.message, message: e.message });
  }

  private requestResync() {
    if (!this.needsResync) this.resyncRequests++;
    this.needsResync = true;
  }

  private remember(ceId: string) {
    this.seen.add(ceId);
    this.seenOrder.push(ceId);
    if (this.seenOrder.length > this.maxSeen) this.seen.delete(this.seenOrder.shift()!);
  }

  /** Adds an entry, dropping the least recently updated one that is not followed when full. */
  private insert(e: HealthEntry) {
    if (this.entries.size >= this.maxIntegrations) {
      let victim: HealthEntry | undefined;
      let victimFollowed = true;
      for (const c of this.entries.values()) {
        const f = this.isFollowed(c);
        if (!victim || (victimFollowed && !f) || (victimFollowed === f && c.touched < victim.touched)) {
          victim = c;
          victimFollowed = f;
        }
      }
      if (victim) {
        this.entries.delete(victim.id);
        this.forget(victim.id);
      }
    }
    this.entries.set(e.id, e);
  }

  private forget(id: string) {
    this.episodes.delete(id);
    this.pending.delete(id);
  }
}
