import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import type * as vscode from 'vscode';
import { healthNoticeHandler, healthNoticeText, OPEN_SWAGGER, RUN_CHECK, SHOW_INTEGRATIONS } from '../src/vscode/healthNotices';
import { noticeHandler } from '../src/vscode/notices';
// eslint-disable-next-line @typescript-eslint/no-var-requires
const mock = require('vscode') as typeof import('./vscode-mock');

function setup() {
  mock.resetCalls();
  const logs: string[] = [];
  let shown = 0;
  const channel = { show: () => void shown++ };
  const notify = noticeHandler(channel as unknown as vscode.OutputChannel, (m) => logs.push(m));
  return { notify, logs, shown: () => shown };
}

test('notices: one warning per backend and kind a minute, back online in the status bar, everything logged', (t) => {
  let now = 1_000_000;
  t.mock.method(Date, 'now', () => now);
  const { notify, logs } = setup();
  notify({ kind: 'offline', backend: 'integrations', message: 'connect ECONNREFUSED' });
  notify({ kind: 'offline', backend: 'integrations', message: 'connect ECONNREFUSED' });
  notify({ kind: 'offline', backend: 'orchestrator', message: 'timed out' });
  notify({ kind: 'error', backend: 'orchestrator', message: '403 Forbidden' });
  assert.deepEqual(mock.calls.warnings, [
    { message: 'Stella Ops: Integrations daemon is unreachable; showing the last known data and retrying in the background.', items: ['Retry now', 'Show log'] },
    { message: 'Stella Ops: Orchestrator is unreachable; showing the last known data and retrying in the background.', items: ['Retry now', 'Show log'] },
    { message: 'Stella Ops: Orchestrator: 403 Forbidden', items: ['Retry now', 'Show log'] },
  ]);
  notify({ kind: 'online', backend: 'integrations', message: 'reachable' });
  assert.deepEqual(mock.calls.statusBarMessages, ['Stella Ops: Integrations daemon reachable again']);
  now += 59_999;
  notify({ kind: 'offline', backend: 'integrations', message: 'connect ECONNREFUSED' });
  assert.equal(mock.calls.warnings.length, 3, 'still within the minute');
  now += 1;
  notify({ kind: 'offline', backend: 'integrations', message: 'connect ECONNREFUSED' });
  assert.equal(mock.calls.warnings.length, 4);
  assert.equal(logs.length, 7);
  assert.equal(logs[0], 'Integrations daemon: offline — connect ECONNREFUSED');
});

test('notices: the buttons retry now or show the log', async () => {
  const { notify, shown } = setup();
  mock.answers.warning = 'Retry now';
  notify({ kind: 'offline', backend: 'orchestrator', message: 'timed out' });
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(mock.calls.executed, [{ command: 'stellaops.refresh', args: [] }]);
  mock.answers.warning = 'Show log';
  notify({ kind: 'offline', backend: 'integrations', message: 'timed out' });
  await new Promise((r) => setImmediate(r));
  assert.equal(shown(), 1);
  assert.equal(mock.calls.executed.length, 1);
});

test('health notices: the integration, its status and reason, with Run health check and Open in Swagger UI', async () => {
  mock.resetCalls();
  const logs: string[] = [];
  const show = healthNoticeHandler((m) => logs.push(m));
  mock.answers.warning = RUN_CHECK;
  show({ kind: 'integration', integrationId: 'id-1', name: 'registry', type: 'harbor', status: 'unhealthy', previousStatus: 'healthy', reason: 'timeout', message: 'no answer within 10 s' });
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(mock.calls.warnings, [{ message: 'Stella Ops: registry is unhealthy: timeout — no answer within 10 s', items: [RUN_CHECK, OPEN_SWAGGER] }]);
  assert.deepEqual(mock.calls.executed, [{ command: 'stellaops.runHealthCheck', args: ['id-1'] }]);
  mock.resetCalls();
  mock.answers.warning = OPEN_SWAGGER;
  show({ kind: 'incident', incidentId: 'inc-1', integrationIds: ['id-1', 'id-2'], names: ['registry', 'gitlab'], title: 'registry outage', reason: 'timeout' });
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(mock.calls.warnings, [{ message: 'Stella Ops: incident — registry outage: registry, gitlab affected (timeout).', items: [SHOW_INTEGRATIONS, OPEN_SWAGGER] }]);
  assert.deepEqual(mock.calls.executed, [{ command: 'stellaops.openSwaggerUi', args: [] }]);
  assert.equal(healthNoticeText({ kind: 'integration', integrationId: 'x', name: 'vault', type: null, status: 'error', previousStatus: 'healthy', reason: null, message: null }), 'Stella Ops: vault is in error');
  assert.equal(logs.length, 2);
});
