// DataService + LiveHealth against a stub hub on loopback: the views' data follows the event stream without
// polling, notifications come once, the list is read when the stream asks, and polling takes over when there
// is no stream.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { IntegrationsClient } from '../src/core/clients';
import type { FollowSettings, HealthNotification } from '../src/core/healthTracker';
import { LiveHealth } from '../src/core/liveHealth';
import { RECONNECT } from '../src/core/reconnect';
import { DataService } from '../src/core/service';
import type { Integration } from '../src/core/types';
import { statusBarModel } from '../src/core/viewModel';
import { healthEvent, startStubHub, until } from './helpers';

const item = (id: string, name: string, status: Integration['status'], lastCheckedAt = '2026-01-01T00:00:00Z'): Integration => ({
  id,
  tenantId: 'acme',
  type: 'inmemory',
  name,
  config: {},
  authRef: null,
  status,
  statusReason: null,
  lastCheckedAt,
  version: 1,
  createdAt: '2026-01-01T00:00:00Z',
  updatedAt: '2026-01-01T00:00:00Z',
});

async function setup(follow: Partial<FollowSettings> = {}) {
  const hub = await startStubHub();
  hub.state.items = [item('id-reg', 'registry', 'healthy'), item('id-gl', 'gitlab', 'healthy')];
  const notes: HealthNotification[] = [];
  let live: LiveHealth | undefined;
  const service = new DataService({
    orchestrator: () => undefined,
    integrations: () => new IntegrationsClient(hub.url, async () => 'k1', { timeoutMs: 2000, retries: 0 }),
    isSignedIn: () => false,
    hasApiKey: async () => true,
    project: () => undefined,
    follow: () => ({ follow: 'referenced', muted: false, pinned: [], referenced: ['registry'], ...follow }),
    onHealthNotification: (n) => notes.push(n),
    integrationsLive: () => live?.isLive ?? false,
    resyncDelayMs: 10,
  });
  live = new LiveHealth({
    service,
    baseUrl: () => hub.url,
    apiKey: async () => 'k1',
    hasApiKey: () => true,
    timeoutMs: () => 2000,
    policy: { ...RECONNECT, initialMs: 40, maxMs: 200, jitter: 0, unsupportedRetryMs: 60_000 },
  });
  const status = (name: string) => service.snapshot.integrations.data?.find((i) => i.name === name)?.status;
  return {
    hub,
    service,
    live,
    notes,
    status,
    close: async () => {
      live!.dispose();
      service.dispose();
      await hub.close();
    },
  };
}

test('live: an unhealthy event changes the view data at once, with one notification, and no list polling', async () => {
  const t = await setup();
  try {
    t.live.update();
    await until('live', () => t.live.isLive && t.service.snapshot.integrations.data?.length === 2);
    assert.equal(t.hub.state.listRequests, 1, 'the stream opened without a position: the list is read once');
    assert.equal(t.service.snapshot.live.mode, 'live');
    const before = t.hub.state.listRequests;
    const sent = Date.now();
    t.hub.emit(healthEvent('id-reg', 'unhealthy', { reason: 'timeout', message: 'no answer within 10 s' }));
    await until('registry unhealthy', () => t.status('registry') === 'unhealthy');
    assert.ok(Date.now() - sent < 1000, `took ${Date.now() - sent} ms`);
    assert.equal(statusBarModel(t.service.snapshot).text, 'Stella ✓ 1 ✗ 1');
    assert.match(statusBarModel(t.service.snapshot).tooltip, /Integrations: connected .*; live \(event stream\)/);
    assert.equal(t.notes.length, 1);
    assert.deepEqual({ ...t.notes[0] }, { kind: 'integration', integrationId: 'id-reg', name: 'registry', type: 'inmemory', status: 'unhealthy', previousStatus: 'healthy', reason: 'timeout', message: 'no answer within 10 s' });
    // A reminder, and gitlab (not followed) failing: the model changes, no notification.
    t.hub.emit(healthEvent('id-reg', 'unhealthy', { reason: 'timeout', reminder: 1 }, 'dev.stellaops.integration.health.reminder'));
    t.hub.emit(healthEvent('id-gl', 'unhealthy'));
    await until('gitlab unhealthy', () => t.status('gitlab') === 'unhealthy');
    assert.equal(t.notes.length, 1);
    // A background refresh while live leaves the list alone; the Refresh command reads it.
    await t.service.refresh();
    assert.equal(t.hub.state.listRequests, before);
    await t.service.refresh(undefined, { integrations: true });
    assert.equal(t.hub.state.listRequests, before + 1);
  } finally {
    await t.close();
  }
});

test('live: after a dropped connection the missed events are replayed: the view catches up, one notification', async () => {
  const t = await setup();
  try {
    t.live.update();
    await until('live', () => t.live.isLive && t.service.snapshot.integrations.data?.length === 2);
    t.hub.emit(healthEvent('id-gl', 'degraded'));
    await until('gitlab degraded', () => t.status('gitlab') === 'degraded');
    t.hub.dropStreams();
    t.hub.emit(healthEvent('id-reg', 'unhealthy', { reason: 'auth_failed' }));
    t.hub.emit(healthEvent('id-gl', 'healthy', {}, 'dev.stellaops.integration.health.recovered'));
    await until('caught up', () => t.status('registry') === 'unhealthy' && t.status('gitlab') === 'healthy');
    assert.equal(t.hub.state.eventRequests.at(-1)!.lastEventId, '1');
    assert.equal(t.service.lastEventId, '3');
    assert.equal(t.notes.length, 1);
    assert.equal(t.service.snapshot.live.detail, 'resumed after event 1');
  } finally {
    await t.close();
  }
});

test('live: an event about an integration created meanwhile reads the list again for its name', async () => {
  const t = await setup({ referenced: ['newcomer'] });
  try {
    t.live.update();
    await until('live', () => t.live.isLive && t.service.snapshot.integrations.data?.length === 2);
    const reads = t.hub.state.listRequests;
    t.hub.state.items = [...t.hub.state.items, item('id-new', 'newcomer', 'unhealthy', new Date(Date.now() + 1000).toISOString())];
    t.hub.emit(healthEvent('id-new', 'unhealthy', { reason: 'connection_refused', previousStatus: 'unknown' }));
    await until('named', () => t.service.snapshot.integrations.data?.some((i) => i.name === 'newcomer'));
    assert.equal(t.hub.state.listRequests, reads + 1);
    await until('notified', () => t.notes.length === 1);
    assert.equal(t.notes[0].kind === 'integration' && t.notes[0].name, 'newcomer');
  } finally {
    await t.close();
  }
});

test('polling: a hub without the event stream (404) is polled; a change found by a poll notifies once', async () => {
  const t = await setup();
  try {
    t.hub.state.refuse = { status: 404, count: 100 };
    t.live.update();
    await until('polling', () => t.service.snapshot.live.mode === 'polling');
    assert.match(t.service.snapshot.live.detail ?? '', /no event stream/);
    await t.service.refresh();
    assert.equal(t.status('registry'), 'healthy');
    t.hub.state.items = [item('id-reg', 'registry', 'unhealthy', '2026-01-01T00:01:00Z'), item('id-gl', 'gitlab', 'healthy')];
    await t.service.refresh();
    await t.service.refresh();
    assert.equal(t.status('registry'), 'unhealthy');
    assert.equal(t.notes.length, 1);
    assert.match(statusBarModel(t.service.snapshot).tooltip, /polling — this hub has no event stream/);
    assert.equal(t.hub.state.eventRequests.length, 1, 'the stream is not retried before unsupportedRetryMs');
  } finally {
    await t.close();
  }
});

test('live: muted, nothing is shown; follow = all, every integration', async () => {
  const muted = await setup({ muted: true, follow: 'all' });
  try {
    muted.live.update();
    await until('live', () => muted.live.isLive && muted.service.snapshot.integrations.data?.length === 2);
    muted.hub.emit(healthEvent('id-reg', 'unhealthy'));
    muted.hub.emit(healthEvent('id-gl', 'error'));
    await until('both failing', () => muted.status('gitlab') === 'error' && muted.status('registry') === 'unhealthy');
    assert.equal(muted.notes.length, 0);
  } finally {
    await muted.close();
  }
  const all = await setup({ follow: 'all', referenced: [] });
  try {
    all.live.update();
    await until('live', () => all.live.isLive && all.service.snapshot.integrations.data?.length === 2);
    all.hub.emit(healthEvent('id-reg', 'unhealthy'));
    all.hub.emit(healthEvent('id-gl', 'error'));
    await until('two notifications', () => all.notes.length === 2);
  } finally {
    await all.close();
  }
});
