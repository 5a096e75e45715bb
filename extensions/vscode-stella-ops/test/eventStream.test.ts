// The event stream client against a stub hub on loopback: resume with Last-Event-ID, back-off, answers that
// mean "no stream here", the idle timeout. Small policy values keep it fast; every wait is bounded.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { EventStreamClient, StreamStatus } from '../src/core/eventStream';
import { RECONNECT, ReconnectPolicy } from '../src/core/reconnect';
import type { SseMessage } from '../src/core/sse';
import { healthEvent, startStubHub, until } from './helpers';

const FAST: ReconnectPolicy = { ...RECONNECT, initialMs: 40, maxMs: 320, jitter: 0, unsupportedRetryMs: 60_000, stableAfterMs: 60_000, idleTimeoutMs: 60_000 };

function client(url: string, policy: ReconnectPolicy = FAST, key = 'k1') {
  const got: SseMessage[] = [];
  const statuses: StreamStatus[] = [];
  let position: string | undefined;
  let forgot = 0;
  let opened: boolean[] = [];
  const c = new EventStreamClient({
    baseUrl: url,
    apiKey: async () => key,
    lastEventId: () => position,
    onOpen: (resuming) => opened.push(resuming),
    onMessages: (ms) => {
      for (const m of ms) {
        got.push(m);
        position = m.id;
      }
    },
    onForgetPosition: () => {
      forgot++;
      position = undefined;
    },
    onStatus: (s) => statuses.push(s),
    connectTimeoutMs: 2000,
    policy,
  });
  return {
    c,
    got,
    statuses,
    get opened() {
      return opened;
    },
    get forgot() {
      return forgot;
    },
    setPosition: (p: string | undefined) => (position = p),
  };
}

test('event stream: live messages; after a dropped connection it resumes with Last-Event-ID and misses nothing, twice nothing', async () => {
  const hub = await startStubHub();
  const t = client(hub.url);
  try {
    t.c.start();
    await until('stream open', () => hub.openStreams === 1);
    assert.equal(hub.state.eventRequests[0].lastEventId, undefined, 'a first connection starts at the next event');
    hub.emit(healthEvent('a', 'unhealthy'));
    hub.emit(healthEvent('a', 'healthy'));
    await until('two messages', () => t.got.length === 2);
    assert.ok(t.c.isLive);
    hub.dropStreams();
    // Events while the client is away: the replay must bring them, once.
    hub.emit(healthEvent('b', 'unhealthy'));
    hub.emit(healthEvent('b', 'degraded'));
    await until('the missed events', () => t.got.length === 4);
    assert.equal(hub.state.eventRequests.at(-1)!.lastEventId, '2');
    hub.emit(healthEvent('c', 'error'));
    await until('live again', () => t.got.length === 5);
    assert.deepEqual(t.got.map((m) => m.id), ['1', '2', '3', '4', '5']);
    assert.deepEqual(t.got.map((m) => JSON.parse(m.data).data.integrationId), ['a', 'a', 'b', 'b', 'c']);
    assert.deepEqual(t.opened, [false, true]);
    assert.ok(t.statuses.some((s) => s.state === 'retrying'), 'the drop was seen');
  } finally {
    t.c.stop();
    await hub.close();
  }
});

test('event stream: a clean end of the stream (the hub stops it) is resumed the same way', async () => {
  const hub = await startStubHub();
  const t = client(hub.url);
  try {
    t.c.start();
    await until('open', () => hub.openStreams === 1);
    hub.emit(healthEvent('a', 'unhealthy'));
    await until('one', () => t.got.length === 1);
    hub.endStreams();
    hub.emit(healthEvent('a', 'healthy'));
    await until('replayed', () => t.got.length === 2);
    assert.equal(hub.state.eventRequests.at(-1)!.lastEventId, '1');
  } finally {
    t.c.stop();
    await hub.close();
  }
});

test('event stream: back-off doubles between failed attempts up to its cap, then a success starts the count again', async () => {
  const hub = await startStubHub();
  const t = client(hub.url);
  try {
    hub.state.resetNext = 6;
    t.c.start();
    await until('the seventh attempt opens', () => hub.openStreams === 1, 5000);
    const at = hub.state.eventRequests.map((r) => r.at);
    const gaps = at.slice(1).map((x, i) => x - at[i]);
    const want = [40, 80, 160, 320, 320, 320];
    assert.equal(gaps.length, want.length, `attempts: ${at.length}`);
    gaps.forEach((g, i) => assert.ok(g >= want[i] - 5 && g < want[i] + 150, `gap ${i + 1}: ${g} ms, expected about ${want[i]} ms (${gaps.join(', ')})`));
    const retrying = t.statuses.filter((s): s is Extract<StreamStatus, { state: 'retrying' }> => s.state === 'retrying');
    assert.deepEqual(retrying.map((s) => s.inMs), want);
    // Delivered a message, then dropped: the next attempt waits the first delay again.
    hub.emit(healthEvent('a', 'unhealthy'));
    await until('message', () => t.got.length === 1);
    hub.dropStreams();
    await until('retrying', () => t.c.status.state === 'retrying');
    assert.equal((t.c.status as any).inMs, 40);
  } finally {
    t.c.stop();
    await hub.close();
  }
});

test('event stream: Retry-After of a 503 is honoured', async () => {
  const hub = await startStubHub();
  const t = client(hub.url);
  try {
    hub.state.refuse = { status: 503, headers: { 'Retry-After': '1' }, count: 1 };
    t.c.start();
    await until('open after the wait', () => hub.openStreams === 1, 4000);
    const [a, b] = hub.state.eventRequests.map((r) => r.at);
    assert.ok(b - a >= 950, `waited ${b - a} ms`);
    assert.ok(t.statuses.some((s) => s.state === 'retrying' && s.inMs === 1000));
  } finally {
    t.c.stop();
    await hub.close();
  }
});

test('event stream: a hub without it (404) or a refused key (401) is left alone until much later', async () => {
  for (const [status, state] of [
    [404, 'unsupported'],
    [401, 'unauthorized'],
  ] as const) {
    const hub = await startStubHub();
    const t = client(hub.url);
    try {
      hub.state.refuse = { status, count: 100 };
      t.c.start();
      await until(state, () => t.c.status.state === state);
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(hub.state.eventRequests.length, 1, `${status}: no hammering`);
      assert.equal((t.c.status as any).inMs, FAST.unsupportedRetryMs);
      assert.match((t.c.status as any).error, new RegExp(`answered ${status}: scripted ${status}`));
      // Something changed (a new key, a poll that reached the hub): try again now.
      hub.state.refuse = undefined;
      t.c.reconnectNow();
      await until('open', () => hub.openStreams === 1);
    } finally {
      t.c.stop();
      await hub.close();
    }
  }
});

test('event stream: a refused position (422) is forgotten and the stream starts afresh at once', async () => {
  const hub = await startStubHub();
  const t = client(hub.url);
  try {
    t.setPosition('not-a-number');
    t.c.start();
    // The hub counts the stream before the client has read its headers: wait for the client.
    await until('open', () => hub.openStreams === 1 && t.opened.length === 1);
    assert.equal(t.forgot, 1);
    assert.deepEqual(hub.state.eventRequests.map((r) => r.lastEventId), ['not-a-number', undefined]);
    assert.deepEqual(t.opened, [false]);
  } finally {
    t.c.stop();
    await hub.close();
  }
});

test('event stream: a stream silent past the idle timeout is dropped and resumed', async () => {
  const hub = await startStubHub();
  const t = client(hub.url, { ...FAST, idleTimeoutMs: 150 });
  try {
    hub.state.silent = true;
    t.c.start();
    await until('a second attempt', () => hub.state.eventRequests.length >= 2, 3000);
    assert.ok(t.statuses.some((s) => s.state === 'retrying' && /no data for 150 ms/.test(s.error)), JSON.stringify(t.statuses));
  } finally {
    t.c.stop();
    await hub.close();
  }
});

test('event stream: stop() closes the connection and makes no further requests; no key, no request', async () => {
  const hub = await startStubHub();
  const t = client(hub.url);
  try {
    t.c.start();
    await until('open', () => hub.openStreams === 1);
    t.c.stop();
    await until('closed', () => hub.openStreams === 0);
    const n = hub.state.eventRequests.length;
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(hub.state.eventRequests.length, n);
    assert.equal(t.c.status.state, 'stopped');
    t.c.reconnectNow();
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(hub.state.eventRequests.length, n, 'a stopped client stays stopped');
    const nokey = new EventStreamClient({ baseUrl: hub.url, apiKey: async () => undefined, lastEventId: () => undefined, onMessages: () => undefined });
    nokey.start();
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(hub.state.eventRequests.length, n);
    assert.equal(nokey.status.state, 'stopped');
  } finally {
    t.c.stop();
    await hub.close();
  }
});
