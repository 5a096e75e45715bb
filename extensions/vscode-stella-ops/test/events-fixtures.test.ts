// The shared health event cases (extensions/fixtures/events): SSE parser + health tracker, as the JetBrains
// core runs them too (EventFixturesTest).
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'fs';
import * as path from 'path';
import { HealthNotification, HealthTracker } from '../src/core/healthTracker';
import { classifyAnswer, reconnectDelay, RECONNECT } from '../src/core/reconnect';
import { SseParser } from '../src/core/sse';
import { REPO_EXT } from './helpers';

const dir = path.join(REPO_EXT, 'fixtures', 'events');
const cases = fs.readdirSync(dir).filter((f) => f.endsWith('.json') && f !== 'reconnect.json');

test('there are event cases', () => {
  assert.ok(cases.length >= 10, cases.join(', '));
});

/** The contract's view of a notification (the wording is the client's own). */
function view(n: HealthNotification) {
  return n.kind === 'integration'
    ? { kind: n.kind, integrationId: n.integrationId, name: n.name, status: n.status, reason: n.reason }
    : { kind: n.kind, incidentId: n.incidentId, integrationIds: n.integrationIds, title: n.title, reason: n.reason };
}

for (const file of cases) {
  test(`event case ${file.replace(/\.json$/, '')}`, () => {
    const c = JSON.parse(fs.readFileSync(path.join(dir, file), 'utf8'));
    const tracker = new HealthTracker(c.settings, c.limits ?? {});
    let parser = new SseParser();
    let retryMs: number | undefined;
    const notes: ReturnType<typeof view>[] = [];
    const feed = (text: string) => {
      for (const m of parser.push(text)) tracker.applyMessage(m);
      retryMs = parser.retryMs ?? retryMs;
      notes.push(...tracker.drain().map(view));
    };
    c.steps.forEach((step: any, i: number) => {
      const at = `${file} step ${i}`;
      if (step.list) {
        tracker.applyList(step.list);
        notes.push(...tracker.drain().map(view));
      } else if (step.event) feed(`id: ${step.event.id}\ndata: ${JSON.stringify(step.event.data)}\n\n`);
      else if (step.sse !== undefined) feed(step.sse);
      else if (step.connection === 'lost') parser = new SseParser(tracker.lastEventId);
      else if (step.expect) {
        const x = step.expect;
        if ('lastEventId' in x) assert.equal(tracker.lastEventId ?? null, x.lastEventId, `${at}: lastEventId`);
        if ('retryMs' in x) assert.equal(retryMs, x.retryMs, `${at}: retryMs`);
        if ('notifications' in x) assert.deepEqual(notes, x.notifications, `${at}: notifications`);
        if ('count' in x) assert.equal(tracker.size, x.count, `${at}: count`);
        if ('resyncRequests' in x) assert.equal(tracker.resyncRequests, x.resyncRequests, `${at}: resyncRequests`);
        if ('openIncidents' in x) assert.deepEqual(tracker.openIncidents(), x.openIncidents, `${at}: openIncidents`);
        for (const id of x.absent ?? []) assert.equal(tracker.entry(id), undefined, `${at}: ${id} absent`);
        for (const want of x.integrations ?? []) {
          const e = tracker.entry(want.id);
          assert.ok(e, `${at}: ${want.id} in the model`);
          const got: Record<string, unknown> = {};
          for (const k of Object.keys(want)) got[k] = k === 'id' ? e.id : ((e as any)[k] ?? null);
          assert.deepEqual(got, want, `${at}: entry ${want.id}`);
        }
      } else assert.fail(`${at}: unknown step ${JSON.stringify(step)}`);
    });
  });
}

test('reconnect.json: back-off delays and answers', () => {
  const r = JSON.parse(fs.readFileSync(path.join(dir, 'reconnect.json'), 'utf8'));
  assert.deepEqual(r.policy, RECONNECT);
  for (const b of r.backoff) assert.equal(reconnectDelay(b.attempt, b.random, b.retryMs), b.delayMs, JSON.stringify(b));
  for (const a of r.responses) assert.deepEqual(classifyAnswer(a.status, a.contentType, !!a.resuming, a.retryAfter), a.expect, JSON.stringify(a));
});
