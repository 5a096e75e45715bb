import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { AuthorityClient, TokenManager } from '../src/core/auth';
import { IntegrationsClient, OrchestratorClient } from '../src/core/clients';
import { DataService, Notice } from '../src/core/service';
import { statusBarModel } from '../src/core/viewModel';
import type { Integration } from '../src/core/types';
import { MemoryCache, MemorySecrets, noSleep, startFake, startStubServer } from './helpers';

function integration(name: string, status: Integration['status'], statusReason: string | null = null): Integration {
  return { id: `00000000-0000-4000-8000-${Buffer.from(name).toString('hex').padStart(12, '0').slice(-12)}`, tenantId: 'default', type: 'inmemory', name, config: {}, authRef: null, status, statusReason, lastCheckedAt: null, version: 1, createdAt: '2026-11-28T00:00:00Z', updatedAt: '2026-11-28T00:00:00Z' };
}

async function stubDaemon(items: Integration[]) {
  const state = { down: false, items };
  const srv = await startStubServer((req, res) => {
    if (state.down) {
      res.writeHead(503, { 'Content-Type': 'application/problem+json' });
      res.end(JSON.stringify({ type: 'about:blank', title: 'Service Unavailable', status: 503 }));
      return;
    }
    if (req.headers.authorization !== 'Bearer k1') {
      res.writeHead(401, { 'Content-Type': 'application/problem+json' });
      res.end(JSON.stringify({ type: 'about:blank', title: 'Unauthorized', status: 401, detail: 'bad key' }));
      return;
    }
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ items: state.items, nextCursor: null }));
  });
  return { ...srv, state };
}

async function setup(opts: { tokenTtl?: number } = {}) {
  const fake = await startFake({ autoApproveDevice: true, ...(opts.tokenTtl ? { tokenTtlSeconds: opts.tokenTtl } : {}) });
  const daemon = await stubDaemon([integration('gh', 'healthy'), integration('harbor', 'unhealthy', 'connection refused'), integration('gitlab', 'healthy')]);
  const tm = new TokenManager(new MemorySecrets(), () => new AuthorityClient(fake.url), { clientId: 'stella-ide', sleep: noSleep });
  await tm.signInDeviceCode(() => undefined);
  const notices: Notice[] = [];
  const cache = new MemoryCache();
  const copts = { timeoutMs: 1000, retries: 1, sleep: noSleep };
  const svc = new DataService({
    orchestrator: () => new OrchestratorClient(fake.url, tm, copts),
    integrations: () => new IntegrationsClient(daemon.url, async () => 'k1', copts),
    isSignedIn: () => tm.isSignedIn,
    hasApiKey: async () => true,
    project: () => 'myapp',
    cache,
    notify: (n) => notices.push(n),
  });
  return { fake, daemon, tm, svc, notices, cache, close: async () => (await fake.close(), await daemon.close()) };
}

test('connected: data from both backends, status bar counts', async () => {
  const t = await setup();
  try {
    await t.svc.refresh();
    const s = t.svc.snapshot;
    assert.equal(s.orchestrator, 'connected');
    assert.equal(s.integrationsConn, 'connected');
    assert.equal(s.releases.data?.length, 5);
    assert.equal(s.environments.data?.[0].name, 'dev');
    assert.equal(statusBarModel(s).text, 'Stella ✓ 2 ✗ 1');
    assert.equal(t.notices.length, 0);
  } finally {
    await t.close();
  }
});

test('offline: last-known data kept and marked stale, one notice for many failures, backoff grows, recovery', async () => {
  const t = await setup();
  try {
    await t.svc.refresh();
    await t.fake.control('/down', { down: true, mode: '503' });
    t.daemon.state.down = true;
    for (let i = 0; i < 4; i++) await t.svc.refresh();
    const s = t.svc.snapshot;
    assert.equal(s.orchestrator, 'offline');
    assert.equal(s.integrationsConn, 'offline');
    assert.equal(s.releases.stale, true);
    assert.equal(s.releases.data?.length, 5, 'cached releases still shown');
    assert.equal(s.integrations.stale, true);
    assert.match(statusBarModel(s).text, /^Stella ⚠ offline · ✓ 2 ✗ 1$/);
    assert.deepEqual(
      t.notices.map((n) => `${n.backend}:${n.kind}`).sort(),
      ['integrations:offline', 'orchestrator:offline'],
      'exactly one notice per backend, not one per failure',
    );
    assert.equal(t.svc.nextDelayMs(30_000), 5 * 60_000, 'backoff capped at 5 min after 4 failures');
    await t.fake.control('/down', { down: false });
    t.daemon.state.down = false;
    await t.svc.refresh();
    assert.equal(t.svc.snapshot.orchestrator, 'connected');
    assert.equal(t.svc.snapshot.releases.stale, false);
    assert.equal(t.svc.nextDelayMs(30_000), 30_000);
    assert.deepEqual(t.notices.filter((n) => n.kind === 'online').map((n) => n.backend).sort(), ['integrations', 'orchestrator']);
  } finally {
    await t.close();
  }
});

test('offline by dropped connections and by hanging requests (timeouts) — both end as offline, bounded in time', async () => {
  const t = await setup();
  try {
    await t.svc.refresh();
    await t.fake.control('/down', { down: true, mode: 'reset' });
    await t.svc.refresh();
    assert.equal(t.svc.snapshot.orchestrator, 'offline');
    await t.fake.control('/down', { down: true, mode: 'hang' });
    const t0 = Date.now();
    await t.svc.refresh();
    assert.equal(t.svc.snapshot.orchestrator, 'offline');
    assert.ok(Date.now() - t0 < 5000, 'timeouts bound the refresh');
    await t.fake.control('/down', { down: false });
  } finally {
    await t.close();
  }
});

test('cache: a new session starts with last-known data marked stale', async () => {
  const t = await setup();
  try {
    await t.svc.refresh();
    const svc2 = new DataService({ orchestrator: () => undefined, integrations: () => undefined, isSignedIn: () => false, hasApiKey: async () => false, project: () => undefined, cache: t.cache });
    assert.equal(svc2.snapshot.releases.stale, true);
    assert.equal(svc2.snapshot.releases.data?.length, 5);
    assert.equal(svc2.snapshot.integrations.data?.length, 3);
  } finally {
    await t.close();
  }
});

test('signed out and not configured states', async () => {
  const svc = new DataService({ orchestrator: () => undefined, integrations: () => undefined, isSignedIn: () => false, hasApiKey: async () => false, project: () => undefined });
  await svc.refresh();
  assert.equal(statusBarModel(svc.snapshot).state, 'not-configured');
  const fake = await startFake();
  try {
    const tm = new TokenManager(new MemorySecrets(), () => new AuthorityClient(fake.url), { clientId: 'stella-ide' });
    const svc2 = new DataService({ orchestrator: () => new OrchestratorClient(fake.url, tm), integrations: () => undefined, isSignedIn: () => tm.isSignedIn, hasApiKey: async () => false, project: () => undefined });
    await svc2.refresh();
    assert.equal(svc2.snapshot.orchestrator, 'signed-out');
    assert.equal(statusBarModel(svc2.snapshot).text, 'Stella: signed out');
    assert.equal((await fake.control('/requests')).length, 0, 'no calls without a token');
  } finally {
    await fake.close();
  }
});

test('refresh is single-flight', async () => {
  const t = await setup();
  try {
    await t.fake.control('/requests', undefined, 'DELETE');
    await Promise.all([t.svc.refresh(), t.svc.refresh(), t.svc.refresh()]);
    const reqs = (await t.fake.control('/requests')).filter((r: any) => r.path === '/api/v1/releases');
    assert.equal(reqs.length, 1);
  } finally {
    await t.close();
  }
});

test('a wrong API key is an error state (not offline) with the problem+json detail', async () => {
  const daemon = await stubDaemon([]);
  try {
    const notices: Notice[] = [];
    const svc = new DataService({ orchestrator: () => undefined, integrations: () => new IntegrationsClient(daemon.url, async () => 'wrong', { sleep: noSleep }), isSignedIn: () => false, hasApiKey: async () => true, project: () => undefined, notify: (n) => notices.push(n) });
    await svc.refresh();
    await svc.refresh();
    assert.equal(svc.snapshot.integrationsConn, 'error');
    assert.match(svc.snapshot.integrationsError ?? '', /401 Unauthorized: bad key/);
    assert.equal(notices.length, 1);
  } finally {
    await daemon.close();
  }
});
