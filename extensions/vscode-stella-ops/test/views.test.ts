import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'fs';
import * as path from 'path';
import * as vscode from 'vscode';
import { DataService, Snapshot } from '../src/core/service';
import { codeLenses, deploymentNodes, environmentNodes, integrationNodes, releaseNodes, statusBarModel } from '../src/core/viewModel';
import { parseStellaYaml } from '../src/core/stellaYaml';
import type { Environment, Integration, Release } from '../src/core/types';
import { pinnedAfter } from '../src/vscode/commands/integrations';
import { StatusBar } from '../src/vscode/statusBar';
import { StellaCodeLensProvider, StellaDiagnostics, StellaDocuments } from '../src/vscode/stellaYaml';
import { SnapshotTreeProvider } from '../src/vscode/trees';
import { REPO_EXT, SCHEMA } from './helpers';
// eslint-disable-next-line @typescript-eslint/no-var-requires
const mock = require('vscode') as typeof import('./vscode-mock');

const seed = JSON.parse(fs.readFileSync(path.join(REPO_EXT, 'contracts', 'fake-server', 'seed.json'), 'utf8'));
const releases: Release[] = seed.releases;
const environments: Environment[] = seed.environments;
const integ = (name: string, status: Integration['status'], reason: string | null = null): Integration => ({ id: `id-${name}`, tenantId: 't', type: 'harbor', name, config: {}, authRef: null, status, statusReason: reason, lastCheckedAt: '2026-11-28T10:00:00Z', version: 1, createdAt: '', updatedAt: '' });

function snap(p: Partial<Snapshot> = {}): Snapshot {
  return {
    releases: { data: releases, fetchedAt: Date.UTC(2026, 10, 28, 12), stale: false },
    environments: { data: environments, fetchedAt: Date.UTC(2026, 10, 28, 12), stale: false },
    deployments: { data: seed.promotions, fetchedAt: Date.UTC(2026, 10, 28, 12), stale: false },
    live: { mode: 'live' },
    integrations: { data: [integ('registry', 'unhealthy', 'auth_failed: 401'), integ('gh', 'healthy'), integ('gl', 'degraded', 'slow')], fetchedAt: Date.UTC(2026, 10, 28, 12), stale: false },
    orchestrator: 'connected',
    integrationsConn: 'connected',
    refreshing: false,
    ...p,
  };
}

/** A DataService whose snapshot the test sets directly. */
class FakeService {
  snapshot: Snapshot;
  private ls: Array<(s: Snapshot) => void> = [];
  constructor(s: Snapshot) {
    this.snapshot = s;
  }
  onDidChange(l: (s: Snapshot) => void) {
    this.ls.push(l);
    return { dispose: () => undefined };
  }
  set(s: Snapshot) {
    this.snapshot = s;
    this.ls.forEach((l) => l(s));
  }
}
const asService = (f: FakeService) => f as unknown as DataService;

test('integrations tree: status icons, reason in description and tooltip, failures first', () => {
  const f = new FakeService(snap());
  const tree = new SnapshotTreeProvider(asService(f), integrationNodes);
  const items = tree.getChildren().map((n) => tree.getTreeItem(n));
  assert.deepEqual(items.map((i) => i.label), ['registry', 'gl', 'gh']);
  assert.deepEqual(items.map((i) => (i.iconPath as vscode.ThemeIcon).id), ['error', 'warning', 'pass']);
  assert.equal(((items[0].iconPath as vscode.ThemeIcon).color as vscode.ThemeColor).id, 'testing.iconFailed');
  assert.equal(items[0].description, 'harbor · unhealthy: auth_failed: 401');
  assert.match((items[0].tooltip as vscode.MarkdownString).value, /Status: \*\*unhealthy\*\* — auth\\_failed: 401/);
  assert.equal(items[0].contextValue, 'integration');
});

test('trees refresh when the service changes; stale data is marked and an offline node leads', () => {
  const f = new FakeService(snap());
  const tree = new SnapshotTreeProvider(asService(f), releaseNodes);
  let fired = 0;
  tree.onDidChangeTreeData(() => fired++);
  f.set(snap({ orchestrator: 'offline', orchestratorError: 'cannot reach http://127.0.0.1:1 (ECONNREFUSED)', releases: { data: releases, fetchedAt: Date.UTC(2026, 10, 28, 11, 59), stale: true } }));
  assert.equal(fired, 1);
  const nodes = tree.getChildren();
  assert.equal(nodes[0].label, 'Offline — showing data from 2026-11-28 11:59:00Z');
  assert.equal(nodes[0].command?.command, 'stellaops.refresh');
  assert.ok(nodes.slice(1).every((n) => n.description?.endsWith('(stale)')));
});

test('releases tree: status, deployment places, components as children', () => {
  const nodes = releaseNodes(snap());
  const r150 = nodes.find((n) => n.label === 'myapp v1.5.0')!;
  assert.equal(r150.description, 'ready · 2026-11-12 · on dev');
  assert.equal(r150.contextValue, 'release-ready');
  assert.deepEqual(r150.children?.map((c) => c.label), ['api', 'web']);
  assert.equal(nodes.find((n) => n.label === 'myapp v1.6.0-rc.1')!.contextValue, 'release-draft');
  const tree = new SnapshotTreeProvider(asService(new FakeService(snap())), releaseNodes);
  assert.equal(tree.getTreeItem(r150).collapsibleState, mock.TreeItemCollapsibleState.Collapsed);
});

test('environments tree: order, current release, approvals, production icon', () => {
  const nodes = environmentNodes(snap());
  assert.deepEqual(nodes.map((n) => n.label), ['Development', 'Staging', 'Production']);
  assert.equal(nodes[2].description, 'prod · myapp v1.4.1 · 2 approvals');
  assert.equal(nodes[2].icon?.id, 'shield');
});

test('signed-out and not-configured trees offer the right action', () => {
  assert.equal(releaseNodes(snap({ orchestrator: 'signed-out', releases: { stale: false } }))[0].command?.command, 'stellaops.signIn');
  assert.equal(integrationNodes(snap({ integrationsConn: 'signed-out', integrations: { stale: false } }))[0].command?.command, 'stellaops.setIntegrationsApiKey');
  assert.equal(integrationNodes(snap({ integrationsConn: 'not-configured', integrations: { stale: false } }))[0].command?.command, 'workbench.action.openSettings');
  assert.equal(integrationNodes(snap({ integrationsConn: 'error', integrationsError: '401 Unauthorized', integrations: { stale: false } }))[0].label, 'Error: 401 Unauthorized');
});

test('status bar: connected / offline / signed-out / not configured, click opens Integrations', () => {
  const f = new FakeService(snap());
  const bar = new StatusBar(asService(f));
  const item = bar.item as unknown as InstanceType<typeof mock.FakeStatusBarItem>;
  assert.equal(item.text, 'Stella ✓ 1 ✗ 1 ⚠ 1');
  assert.equal(item.command, 'stellaops.showIntegrations');
  assert.equal(item.visible, true);
  assert.equal(item.backgroundColor, undefined);
  f.set(snap({ integrationsConn: 'offline', integrationsError: 'timed out', integrations: { ...snap().integrations, stale: true } }));
  assert.equal(item.text, 'Stella ⚠ offline · ✓ 1 ✗ 1 ⚠ 1');
  assert.equal((item.backgroundColor as { id: string } | undefined)?.id, 'statusBarItem.warningBackground');
  assert.match(String(item.tooltip), /Integrations: offline — timed out; showing data/);
  f.set(snap({ orchestrator: 'signed-out', integrationsConn: 'signed-out' }));
  assert.equal(item.text, 'Stella: signed out');
  f.set(snap({ orchestrator: 'not-configured', integrationsConn: 'not-configured' }));
  assert.equal(item.text, 'Stella: not configured');
  const twelve = Array.from({ length: 12 }, (_, i) => integ(`h${i}`, 'healthy'));
  assert.equal(statusBarModel(snap({ integrations: { data: [...twelve, integ('x', 'error')], stale: false } })).text, 'Stella ✓ 12 ✗ 1');
});

const fullYaml = fs.readFileSync(path.join(REPO_EXT, 'fixtures', 'stella-yaml', 'valid-full', 'stella.yaml'), 'utf8');

test('CodeLens provider: deployed version and promote action above each environment', () => {
  const f = new FakeService(snap());
  const docs = new StellaDocuments(SCHEMA, asService(f));
  const p = new StellaCodeLensProvider(docs, asService(f));
  const doc = mock.textDocument('/w/stella.yaml', fullYaml);
  const lenses = p.provideCodeLenses(doc as unknown as vscode.TextDocument);
  const byLine = lenses.map((l) => `${l.range.start.line + 1}: ${l.command?.title}`);
  assert.deepEqual(byLine, [
    '2: Latest release: myapp v1.6.0-rc.1 (draft) · 5 releases',
    '11: deployed v1.5.0 to dev',
    '11: Promote v1.5.0 to stage…',
    '12: deployed v1.4.2 to stage',
    '12: Promote v1.4.2 to prod…',
    '14: deployed v1.4.1 to prod',
    '17: Promote stage → prod (v1.4.2)…',
  ]);
  const promote = lenses[2].command!;
  assert.equal(promote.command, 'stellaops.promoteRelease');
  assert.deepEqual(promote.arguments, [{ releaseId: 'rel-myapp-1.5.0', releaseName: 'myapp v1.5.0', targetEnvironmentId: 'env-stage', targetEnvironmentName: 'stage' }]);
  let changed = 0;
  p.onDidChangeCodeLenses(() => changed++);
  f.set(snap());
  assert.equal(changed, 1, 'lenses refresh when data changes');
});

test('CodeLens: stale marker, signed-out prompt, unknown environment, other files ignored', () => {
  const { model } = parseStellaYaml(fullYaml, SCHEMA);
  const stale = codeLenses(model, snap({ orchestrator: 'offline', environments: { data: environments, stale: true } }));
  assert.ok(stale.filter((l) => l.title.startsWith('deployed')).every((l) => l.title.endsWith('(stale)')));
  const out = codeLenses(model, snap({ orchestrator: 'signed-out', environments: { stale: false }, releases: { stale: false } }));
  assert.deepEqual(out.map((l) => [l.title, l.command]), [['Stella Ops: Sign in to see releases and environments', 'stellaops.signIn']]);
  const qa = parseStellaYaml('version: 1\nproject: myapp\nenvironments:\n  - name: qa\n', SCHEMA).model;
  assert.equal(codeLenses(qa, snap()).find((l) => l.line === 4)?.title, 'qa: not known to the Orchestrator');
  const f = new FakeService(snap());
  const p = new StellaCodeLensProvider(new StellaDocuments(SCHEMA, asService(f)), asService(f));
  assert.equal(p.provideCodeLenses(mock.textDocument('/w/other.yaml', fullYaml) as unknown as vscode.TextDocument).length, 0);
  const openapi = fs.readFileSync(path.join(REPO_EXT, 'fixtures', 'stella-yaml', 'openapi-not-ours', 'stella.yaml'), 'utf8');
  assert.equal(p.provideCodeLenses(mock.textDocument('/w/api/stella.yaml', openapi) as unknown as vscode.TextDocument).length, 0);
});

test('diagnostics adapter: ranges and severities from the shared contract, server context applied', () => {
  const f = new FakeService(snap());
  const d = new StellaDiagnostics(new StellaDocuments(SCHEMA, asService(f)));
  const doc = mock.textDocument('/w/stella.yaml', 'version: 1\nproject: myapp\nenvironments:\n  - name: dev\n  - name: qa\n');
  d.update(doc as unknown as vscode.TextDocument);
  const got = mock.created.diagnostics.get(doc.uri.toString())!;
  assert.equal(got.length, 1);
  assert.equal(got[0].code, 'environment-not-on-server');
  assert.equal(got[0].severity, mock.DiagnosticSeverity.Warning);
  assert.deepEqual([got[0].range.start.line, got[0].range.start.character], [4, 10]);
});

test('CodeLens: no promote action when the next environment already runs that release', () => {
  const { model } = parseStellaYaml(fullYaml, SCHEMA);
  const envs = environments.map((e) => (e.name === 'stage' ? { ...e, currentRelease: { id: 'rel-myapp-1.5.0', name: 'myapp v1.5.0', version: '1.5.0' } } : e));
  const titles = codeLenses(model, snap({ environments: { data: envs, stale: false } })).map((l) => l.title);
  assert.ok(!titles.includes('Promote v1.5.0 to stage…'));
  assert.ok(titles.includes('deployed v1.5.0 to stage'));
  assert.ok(titles.includes('Promote v1.5.0 to prod…'));
});

test('deployments tree: the Orchestrator promotions, release → environment, status icon, who and when', () => {
  const nodes = deploymentNodes(snap());
  assert.equal(nodes.length, 1);
  const n = nodes[0];
  assert.equal(n.label, 'myapp v1.4.2 → stage');
  assert.equal(n.description, 'deployed · 2026-11-03 · dev@acme.example');
  assert.deepEqual(n.icon, { id: 'pass', color: 'testing.iconPassed' });
  assert.equal(n.contextValue, 'deployment-deployed');
  assert.match(n.tooltip ?? '', /dev → stage — deployed/);
  assert.match(n.tooltip ?? '', /Reason: Sprint 44 release/);
  assert.match(n.tooltip ?? '', /Ticket: CHG\\-1001/);
  const waiting = deploymentNodes(snap({ deployments: { data: [{ ...seed.promotions[0], id: 'p2', status: 'awaiting_approval', sourceEnvironmentName: null }], stale: true, fetchedAt: Date.UTC(2026, 10, 28, 11) }, orchestrator: 'offline' }));
  assert.equal(waiting[0].label, 'Offline — showing data from 2026-11-28 11:00:00Z');
  assert.equal(waiting[1].description, 'awaiting approval · 2026-11-03 · dev@acme.example (stale)');
  assert.equal(waiting[1].icon?.id, 'person');
  assert.deepEqual(deploymentNodes(snap({ deployments: { data: [], stale: false } })).map((x) => x.label), ['No deployments']);
  assert.equal(deploymentNodes(snap({ orchestrator: 'signed-out', deployments: { stale: false } }))[0].command?.command, 'stellaops.signIn');
});

test('integrations tree: followed and pinned integrations are marked; pinned ones offer Unpin', () => {
  const marks = { followed: (i: Integration) => i.name === 'gh', pinned: (i: Integration) => i.name === 'gl' };
  const byName = new Map(integrationNodes(snap(), marks).map((n) => [n.label, n] as const));
  assert.equal(byName.get('gh')?.description, 'harbor · healthy · followed');
  assert.equal(byName.get('gh')?.contextValue, 'integration');
  assert.equal(byName.get('gl')?.description, 'harbor · degraded: slow · pinned');
  assert.equal(byName.get('gl')?.contextValue, 'integration-pinned');
  assert.match(byName.get('gl')?.tooltip ?? '', /Pinned_?: notified when it goes unhealthy/);
  assert.equal(byName.get('registry')?.description, 'harbor · unhealthy: auth_failed: 401');
});

test('status bar: how integration status arrives is in the tooltip and the accessible label', () => {
  assert.match(statusBarModel(snap()).tooltip, /Integrations: connected \(updated .*\); live \(event stream\)/);
  assert.match(statusBarModel(snap({ live: { mode: 'polling', detail: 'this hub has no event stream (GET /api/v1/events answered 404)' } })).tooltip, /; polling — this hub has no event stream/);
  const f = new FakeService(snap());
  const bar = new StatusBar(asService(f));
  assert.equal(bar.item.accessibilityInformation!.label, 'Stella ✓ 1 ✗ 1 ⚠ 1 (connected; integrations live (event stream))');
  f.set(snap({ live: { mode: 'polling', detail: 'x' } }));
  assert.equal(bar.item.accessibilityInformation!.label, 'Stella ✓ 1 ✗ 1 ⚠ 1 (connected; integrations polling)');
  bar.dispose();
});

test('pinning: the setting gains the name, unpinning removes it by name or id', () => {
  const i = { id: 'id-gl', name: 'gl' };
  assert.deepEqual(pinnedAfter(['registry'], i, true), ['registry', 'gl']);
  assert.deepEqual(pinnedAfter(['registry', 'gl'], i, true), ['registry', 'gl']);
  assert.deepEqual(pinnedAfter(['id-gl', 'registry', 'gl'], i, false), ['registry']);
});
