// Pure view models: what the tree views, the status bar and the CodeLens show, computed from a Snapshot.
// The VS Code adapters only translate these into TreeItem / StatusBarItem / CodeLens objects.
import type { Connectivity, LiveState, Resource, Snapshot } from './service';
import type { StellaModel } from './stellaYaml';
import type { Environment, Integration, IntegrationStatus, Promotion, PromotionStatus, Release } from './types';

export interface IconModel {
  id: string; // codicon id
  color?: string; // theme color id
}

export interface CommandModel {
  command: string;
  title: string;
  arguments?: unknown[];
}

export interface NodeModel {
  id: string;
  label: string;
  description?: string;
  tooltip?: string; // markdown
  icon?: IconModel;
  contextValue?: string;
  command?: CommandModel;
  children?: NodeModel[];
}

export function fmtTime(ms?: number): string {
  if (!ms) return 'never';
  const d = new Date(ms);
  return d.toISOString().replace('T', ' ').slice(0, 19) + 'Z';
}

function date(iso?: string | null): string {
  return iso ? iso.slice(0, 10) : '';
}

const SIGN_IN: CommandModel = { command: 'stellaops.signIn', title: 'Sign in' };
const API_KEY: CommandModel = { command: 'stellaops.setIntegrationsApiKey', title: 'Set API key' };
const SETTINGS: CommandModel = { command: 'workbench.action.openSettings', title: 'Open settings', arguments: ['stellaops'] };

/** Header/message nodes shared by all three views: configuration, sign-in, offline/stale, errors. */
function stateNodes(view: string, conn: Connectivity, res: Resource<unknown>, error: string | undefined, what: { setting: string; signInLabel: string; signIn: CommandModel }): NodeModel[] {
  const out: NodeModel[] = [];
  if (conn === 'not-configured') out.push({ id: `${view}:cfg`, label: `Set ${what.setting} to use this view`, icon: { id: 'gear' }, command: SETTINGS });
  else if (conn === 'signed-out') out.push({ id: `${view}:signin`, label: what.signInLabel, icon: { id: 'account' }, command: what.signIn });
  if (conn === 'offline' || (conn === 'error' && res.data !== undefined)) {
    const since = res.fetchedAt ? ` — showing data from ${fmtTime(res.fetchedAt)}` : '';
    out.push({
      id: `${view}:offline`,
      label: conn === 'offline' ? `Offline${since}` : `Refresh failed${since}`,
      icon: { id: conn === 'offline' ? 'debug-disconnect' : 'warning', color: 'list.warningForeground' },
      tooltip: error ? `**${conn === 'offline' ? 'Unreachable' : 'Error'}**: ${escapeMd(error)}\n\nRetrying in the background.` : undefined,
      command: { command: 'stellaops.refresh', title: 'Retry now' },
    });
  } else if (conn === 'error') {
    out.push({ id: `${view}:error`, label: `Error: ${error ?? 'unknown'}`, icon: { id: 'error', color: 'errorForeground' }, tooltip: escapeMd(error ?? ''), command: { command: 'stellaops.refresh', title: 'Retry' } });
  } else if (res.stale && res.data !== undefined && conn === 'signed-out') {
    out.push({ id: `${view}:stale`, label: `Signed out — showing data from ${fmtTime(res.fetchedAt)}`, icon: { id: 'history' } });
  }
  return out;
}

export function escapeMd(s: string): string {
  return s.replace(/([\\`*_{}\[\]()#+\-.!|<>])/g, '\\$1');
}

const staleTag = (r: Resource<unknown>) => (r.stale ? ' (stale)' : '');

export function releaseNodes(s: Snapshot): NodeModel[] {
  const out = stateNodes('releases', s.orchestrator, s.releases, s.orchestratorError, { setting: 'stellaops.serverUrl', signInLabel: 'Sign in to Stella Ops…', signIn: SIGN_IN });
  const envs = s.environments.data ?? [];
  for (const r of s.releases.data ?? []) {
    const deployedIn = envs.filter((e) => e.currentRelease?.id === r.id).map((e) => e.name);
    const icon: IconModel = r.status === 'ready' ? { id: 'package', color: deployedIn.length ? 'charts.green' : undefined } : r.status === 'draft' ? { id: 'edit' } : { id: 'archive', color: 'disabledForeground' };
    out.push({
      id: `release:${r.id}`,
      label: r.name,
      description: [r.status, date(r.createdAt), deployedIn.length ? `on ${deployedIn.join(', ')}` : ''].filter(Boolean).join(' · ') + staleTag(s.releases),
      tooltip: [`**${escapeMd(r.name)}** (${r.status})`, `Version: ${escapeMd(r.version)}`, r.digest ? `Digest: \`${r.digest}\`` : '', `Created: ${r.createdAt}`, deployedIn.length ? `Deployed to: ${deployedIn.join(', ')}` : 'Not deployed', s.releases.stale ? `_Stale: last updated ${fmtTime(s.releases.fetchedAt)}_` : '']
        .filter(Boolean)
        .join('\n\n'),
      icon,
      contextValue: `release-${r.status}`,
      children: (r.components ?? []).map((c) => ({
        id: `release:${r.id}:${c.name}`,
        label: c.name,
        description: `${c.tag ?? ''} ${c.digest.slice(0, 19)}…`.trim(),
        tooltip: `${escapeMd(c.image ?? c.name)}\n\n\`${c.digest}\``,
        icon: { id: 'symbol-namespace' },
        contextValue: 'component',
      })),
    });
  }
  if (!out.length) out.push({ id: 'releases:empty', label: s.refreshing ? 'Loading…' : 'No releases', icon: { id: s.refreshing ? 'loading~spin' : 'info' } });
  return out;
}

export function environmentNodes(s: Snapshot): NodeModel[] {
  const out = stateNodes('environments', s.orchestrator, s.environments, s.orchestratorError, { setting: 'stellaops.serverUrl', signInLabel: 'Sign in to Stella Ops…', signIn: SIGN_IN });
  for (const e of s.environments.data ?? []) {
    const cur = e.currentRelease;
    const approvals = e.requiredApprovals ? `${e.requiredApprovals} approval${e.requiredApprovals > 1 ? 's' : ''}` : '';
    out.push({
      id: `environment:${e.id}`,
      label: e.displayName || e.name,
      description: [e.name !== e.displayName ? e.name : '', cur ? cur.name : 'nothing deployed', approvals].filter(Boolean).join(' · ') + staleTag(s.environments),
      tooltip: [
        `**${escapeMd(e.displayName || e.name)}** (\`${e.name}\`)${e.isProduction ? ' — production' : ''}`,
        cur ? `Deployed: ${escapeMd(cur.name)}${cur.deployedAt ? ` at ${cur.deployedAt}` : ''}` : 'Nothing deployed',
        approvals ? `Requires ${approvals}${e.requireSeparationOfDuties ? ', separation of duties' : ''}` : '',
        s.environments.stale ? `_Stale: last updated ${fmtTime(s.environments.fetchedAt)}_` : '',
      ]
        .filter(Boolean)
        .join('\n\n'),
      icon: { id: e.isProduction ? 'shield' : 'server-environment', color: cur ? 'charts.blue' : undefined },
      contextValue: 'environment',
    });
  }
  if (!out.length) out.push({ id: 'environments:empty', label: s.refreshing ? 'Loading…' : 'No environments', icon: { id: s.refreshing ? 'loading~spin' : 'info' } });
  return out;
}

const PROMOTION_ICON: Record<PromotionStatus, IconModel> = {
  pending: { id: 'clock' },
  awaiting_approval: { id: 'person', color: 'list.warningForeground' },
  approved: { id: 'check' },
  deploying: { id: 'sync~spin', color: 'charts.blue' },
  deployed: { id: 'pass', color: 'testing.iconPassed' },
  rejected: { id: 'close', color: 'testing.iconFailed' },
  cancelled: { id: 'circle-slash', color: 'disabledForeground' },
  failed: { id: 'error', color: 'testing.iconFailed' },
  rolled_back: { id: 'history', color: 'list.warningForeground' },
};

/** Deployments (the Orchestrator's promotions, newest first): release → environment, status, who and when. */
export function deploymentNodes(s: Snapshot): NodeModel[] {
  const out = stateNodes('deployments', s.orchestrator, s.deployments, s.orchestratorError, { setting: 'stellaops.serverUrl', signInLabel: 'Sign in to Stella Ops…', signIn: SIGN_IN });
  for (const p of s.deployments.data ?? []) {
    const from = p.sourceEnvironmentName ? `${p.sourceEnvironmentName} → ` : '';
    out.push({
      id: `deployment:${p.id}`,
      label: `${p.releaseName} → ${p.targetEnvironmentName}`,
      description: [p.status.replace(/_/g, ' '), date(p.requestedAt), p.requestedBy].filter(Boolean).join(' · ') + staleTag(s.deployments),
      tooltip: [
        `**${escapeMd(p.releaseName)}**: ${escapeMd(from)}${escapeMd(p.targetEnvironmentName)} — ${p.status.replace(/_/g, ' ')}`,
        `Requested by ${escapeMd(p.requestedBy)} at ${p.requestedAt}`,
        `Reason: ${escapeMd(p.reason)}`,
        p.ticket ? `Ticket: ${escapeMd(p.ticket)}` : '',
        `Promotion \`${p.id}\``,
        s.deployments.stale ? `_Stale: last updated ${fmtTime(s.deployments.fetchedAt)}_` : '',
      ]
        .filter(Boolean)
        .join('\n\n'),
      icon: PROMOTION_ICON[p.status as PromotionStatus] ?? { id: 'circle-outline' },
      contextValue: `deployment-${p.status}`,
    });
  }
  if (!out.length) out.push({ id: 'deployments:empty', label: s.refreshing ? 'Loading…' : 'No deployments', icon: { id: s.refreshing ? 'loading~spin' : 'info' } });
  return out;
}

/** Which integrations the user follows (notified when they go unhealthy) and has pinned. */
export interface IntegrationMarks {
  followed(i: Integration): boolean;
  pinned(i: Integration): boolean;
}

export const STATUS_ICON: Record<IntegrationStatus, IconModel> = {
  healthy: { id: 'pass', color: 'testing.iconPassed' },
  degraded: { id: 'warning', color: 'list.warningForeground' },
  unhealthy: { id: 'error', color: 'testing.iconFailed' },
  error: { id: 'error', color: 'errorForeground' },
  paused: { id: 'debug-pause' },
  unknown: { id: 'circle-outline' },
};

export function integrationIcon(status: string): IconModel {
  return STATUS_ICON[status as IntegrationStatus] ?? STATUS_ICON.unknown;
}

export function integrationTooltip(i: Integration, stale?: { fetchedAt?: number }): string {
  return [
    `**${escapeMd(i.name)}** (${escapeMd(i.type)})`,
    `Status: **${i.status}**${i.statusReason ? ` — ${escapeMd(i.statusReason)}` : ''}`,
    `Last checked: ${i.lastCheckedAt ?? 'never'}`,
    i.authRef ? `Credentials: \`${i.authRef}\`` : '',
    stale ? `_Stale: last updated ${fmtTime(stale.fetchedAt)}_` : '',
  ]
    .filter(Boolean)
    .join('\n\n');
}

export function integrationNodes(s: Snapshot, marks?: IntegrationMarks): NodeModel[] {
  const out = stateNodes('integrations', s.integrationsConn, s.integrations, s.integrationsError, { setting: 'stellaops.integrationsUrl', signInLabel: 'Set the Integrations API key…', signIn: API_KEY });
  const items = [...(s.integrations.data ?? [])].sort((a, b) => severityRank(b.status) - severityRank(a.status) || a.name.localeCompare(b.name));
  for (const i of items) {
    const pinned = marks?.pinned(i) ?? false;
    const followed = pinned || (marks?.followed(i) ?? false);
    out.push({
      id: `integration:${i.id}`,
      label: i.name,
      description: `${i.type} · ${i.status}${i.statusReason ? `: ${i.statusReason}` : ''}${pinned ? ' · pinned' : followed ? ' · followed' : ''}${staleTag(s.integrations)}`,
      tooltip: integrationTooltip(i, s.integrations.stale ? s.integrations : undefined) + (followed ? `\n\n_${pinned ? 'Pinned' : 'Followed (stella.yaml)'}: notified when it goes unhealthy_` : ''),
      icon: integrationIcon(i.status),
      contextValue: pinned ? 'integration-pinned' : 'integration',
    });
  }
  if (!out.length) out.push({ id: 'integrations:empty', label: s.refreshing ? 'Loading…' : 'No integrations', icon: { id: s.refreshing ? 'loading~spin' : 'info' } });
  return out;
}

function severityRank(st: string): number {
  return { error: 5, unhealthy: 4, degraded: 3, unknown: 2, paused: 1, healthy: 0 }[st] ?? 2;
}

export interface HealthCounts {
  healthy: number;
  failed: number;
  degraded: number;
  other: number;
}

export function healthCounts(items: Integration[]): HealthCounts {
  const c = { healthy: 0, failed: 0, degraded: 0, other: 0 };
  for (const i of items) {
    if (i.status === 'healthy') c.healthy++;
    else if (i.status === 'unhealthy' || i.status === 'error') c.failed++;
    else if (i.status === 'degraded') c.degraded++;
    else c.other++;
  }
  return c;
}

export type BarState = 'not-configured' | 'signed-out' | 'connected' | 'offline' | 'error';

export interface StatusBarModel {
  state: BarState;
  text: string;
  tooltip: string;
}

function countsText(c: HealthCounts): string {
  return `✓ ${c.healthy} ✗ ${c.failed}${c.degraded ? ` ⚠ ${c.degraded}` : ''}`;
}

/** How integration status arrives, for the tooltip: "live (event stream)", "polling (…)". */
export function liveText(l: LiveState): string {
  switch (l.mode) {
    case 'live':
      return `live (event stream${l.detail ? `, ${l.detail}` : ''})`;
    case 'connecting':
      return 'connecting to the event stream';
    case 'polling':
      return `polling${l.detail ? ` — ${l.detail}` : ''}`;
    default:
      return '';
  }
}

function connLine(name: string, conn: Connectivity, r: Resource<unknown>, err?: string, live?: LiveState): string {
  const when = r.fetchedAt ? ` (updated ${fmtTime(r.fetchedAt)})` : '';
  switch (conn) {
    case 'connected':
      return `${name}: connected${when}${live && live.mode !== 'off' ? `; ${liveText(live)}` : ''}`;
    case 'offline':
      return `${name}: offline — ${err ?? 'unreachable'}${r.data !== undefined ? `; showing data${when}` : ''}`;
    case 'error':
      return `${name}: error — ${err ?? ''}`;
    case 'signed-out':
      return `${name}: signed out`;
    default:
      return `${name}: not configured`;
  }
}

/** Status bar: "Stella ✓ 12 ✗ 1" when connected, "Stella ⚠ offline …" when a backend is unreachable, "Stella: signed out". */
export function statusBarModel(s: Snapshot): StatusBarModel {
  const conns = [s.orchestrator, s.integrationsConn];
  const configured = conns.filter((c) => c !== 'not-configured');
  const counts = s.integrations.data ? countsText(healthCounts(s.integrations.data)) : '';
  const tooltip = [connLine('Orchestrator', s.orchestrator, s.releases, s.orchestratorError), connLine('Integrations', s.integrationsConn, s.integrations, s.integrationsError, s.live), 'Click to open the Integrations view.'].join('\n');
  if (!configured.length) return { state: 'not-configured', text: 'Stella: not configured', tooltip };
  if (configured.includes('offline')) return { state: 'offline', text: `Stella ⚠ offline${counts ? ` · ${counts}` : ''}`, tooltip };
  if (configured.every((c) => c === 'signed-out')) return { state: 'signed-out', text: 'Stella: signed out', tooltip };
  if (configured.includes('connected')) {
    if (s.integrationsConn === 'connected' && counts) return { state: 'connected', text: `Stella ${counts}`, tooltip };
    return { state: 'connected', text: counts ? `Stella ${counts}` : 'Stella ✓ connected', tooltip };
  }
  if (configured.includes('error')) return { state: 'error', text: 'Stella ✗ error', tooltip };
  return { state: 'signed-out', text: 'Stella: signed out', tooltip };
}

export interface LensModel {
  line: number; // 1-based
  title: string;
  command: string;
  arguments?: unknown[];
}

export interface PromoteArgs {
  releaseId: string;
  releaseName: string;
  targetEnvironmentId: string;
  targetEnvironmentName: string;
}

/** CodeLens for stella.yaml: above each environment "deployed v1.4.2 to dev · Promote to prod…", above promotion and project. */
export function codeLenses(m: StellaModel, s: Snapshot): LensModel[] {
  if (m.isOpenApi) return [];
  const out: LensModel[] = [];
  const firstLine = m.projectAt?.line ?? m.environments[0]?.line ?? 1;
  if (s.orchestrator === 'not-configured') return [{ line: firstLine, title: 'Stella Ops: set stellaops.serverUrl', command: 'workbench.action.openSettings', arguments: ['stellaops'] }];
  const envs = s.environments.data;
  if (!envs) {
    if (s.orchestrator === 'signed-out') return [{ line: firstLine, title: 'Stella Ops: Sign in to see releases and environments', command: 'stellaops.signIn' }];
    return [{ line: firstLine, title: s.orchestrator === 'offline' ? 'Stella Ops: offline' : 'Stella Ops: loading…', command: 'stellaops.refresh' }];
  }
  const stale = s.environments.stale ? ' (stale)' : '';
  const byName = new Map(envs.map((e) => [e.name, e] as const));
  const releases: Release[] = s.releases.data ?? [];
  if (m.projectAt) {
    const latest = releases.find((r) => !m.project || !r.project || r.project === m.project);
    out.push({
      line: m.projectAt.line,
      title: latest ? `Latest release: ${latest.name} (${latest.status}) · ${releases.length} release${releases.length === 1 ? '' : 's'}${stale}` : `No releases for ${m.project}${stale}`,
      command: 'workbench.view.extension.stellaops',
    });
  }
  m.environments.forEach((fe, i) => {
    const env = byName.get(fe.name);
    if (!env) {
      out.push({ line: fe.line, title: `${fe.name}: not known to the Orchestrator${stale}`, command: 'stellaops.refresh' });
      return;
    }
    const cur = env.currentRelease;
    out.push({ line: fe.line, title: cur ? `deployed ${versionOf(cur.name, cur.version)} to ${env.name}${stale}` : `nothing deployed to ${env.name}${stale}`, command: 'workbench.view.extension.stellaops' });
    const next = nextEnvironment(m, i, byName);
    if (cur && next && next.currentRelease?.id !== cur.id) out.push({ line: fe.line, title: `Promote ${versionOf(cur.name, cur.version)} to ${next.name}…`, command: 'stellaops.promoteRelease', arguments: [promoteArgs(cur.id, cur.name, next)] });
  });
  if (m.promotion?.from && m.promotion.to) {
    const from = byName.get(m.promotion.from);
    const to = byName.get(m.promotion.to);
    const cur = from?.currentRelease;
    if (from && to && cur && to.currentRelease?.id !== cur.id) out.push({ line: m.promotion.at.line, title: `Promote ${m.promotion.from} → ${m.promotion.to} (${versionOf(cur.name, cur.version)})…`, command: 'stellaops.promoteRelease', arguments: [promoteArgs(cur.id, cur.name, to)] });
  }
  return out;
}

function nextEnvironment(m: StellaModel, i: number, byName: Map<string, Environment>): Environment | undefined {
  for (let j = i + 1; j < m.environments.length; j++) {
    const e = byName.get(m.environments[j].name);
    if (e) return e;
  }
  return undefined;
}

function promoteArgs(releaseId: string, releaseName: string, to: Environment): PromoteArgs {
  return { releaseId, releaseName, targetEnvironmentId: to.id, targetEnvironmentName: to.name };
}

export function versionOf(name: string, version?: string): string {
  if (version) return version.startsWith('v') ? version : `v${version}`;
  const m = /v?\d+\.\d+[^\s]*$/.exec(name);
  return m ? (m[0].startsWith('v') ? m[0] : `v${m[0]}`) : name;
}
