import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import type { TokenManager } from '../src/core/auth';
import { Poller } from '../src/core/poller';
import type { DataService } from '../src/core/service';
import { TokenRefreshTimer } from '../src/core/tokenRefresh';

// setTimeout is mocked (t.mock.timers); setImmediate is not, so this lets promise callbacks run.
const flush = () => new Promise((r) => setImmediate(r));

test('poller: next refresh after the service delay, again after each refresh; schedule() restarts the wait; none after dispose', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  let refreshes = 0;
  const asked: number[] = [];
  const service = {
    refresh: async () => void refreshes++,
    nextDelayMs: (intervalMs: number) => (asked.push(intervalMs), intervalMs * 2),
  };
  let interval = 1000;
  const poller = new Poller(service as unknown as DataService, () => interval);
  poller.start();
  assert.equal(refreshes, 1, 'first load right away');
  await flush();
  assert.deepEqual(asked, [1000]);
  t.mock.timers.tick(1999);
  assert.equal(refreshes, 1);
  t.mock.timers.tick(1);
  assert.equal(refreshes, 2);
  await flush();
  interval = 5000;
  poller.schedule();
  t.mock.timers.tick(2000);
  assert.equal(refreshes, 2, 'the earlier wait was dropped');
  t.mock.timers.tick(8000);
  assert.equal(refreshes, 3);
  await flush();
  poller.dispose();
  poller.schedule();
  t.mock.timers.tick(3_600_000);
  assert.equal(refreshes, 3);
});

class FakeTokens {
  due?: number;
  refreshes = 0;
  fail?: Error;
  private ls: Array<(signedIn: boolean) => void> = [];
  refreshDueAt() {
    return this.due;
  }
  async refresh() {
    this.refreshes++;
    if (this.fail) throw this.fail;
    return {};
  }
  onDidChange(l: (signedIn: boolean) => void) {
    this.ls.push(l);
    return { dispose: () => (this.ls = this.ls.filter((x) => x !== l)) };
  }
  change(due?: number) {
    this.due = due;
    this.ls.forEach((l) => l(due !== undefined));
  }
}

test('token refresh timer: at the due time, at least 1 s away, set again on every session change, failures logged', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const tokens = new FakeTokens();
  const logs: string[] = [];
  const timer = new TokenRefreshTimer(tokens as unknown as TokenManager, (m) => logs.push(m));
  t.mock.timers.tick(3_600_000);
  assert.equal(tokens.refreshes, 0, 'signed out: nothing to refresh');

  tokens.change(Date.now() + 60_000);
  t.mock.timers.tick(59_000);
  assert.equal(tokens.refreshes, 0);
  t.mock.timers.tick(1000);
  assert.equal(tokens.refreshes, 1);

  tokens.change(Date.now() + 10_000);
  tokens.change(Date.now() + 100_000);
  t.mock.timers.tick(20_000);
  assert.equal(tokens.refreshes, 1, 'the timer of the previous session was dropped');
  tokens.change(undefined);
  t.mock.timers.tick(3_600_000);
  assert.equal(tokens.refreshes, 1, 'signed out: timer dropped');

  tokens.fail = new Error('authority down');
  tokens.change(Date.now() - 5000);
  t.mock.timers.tick(999);
  assert.equal(tokens.refreshes, 1);
  t.mock.timers.tick(1);
  assert.equal(tokens.refreshes, 2, 'overdue: refreshed after 1 s');
  await flush();
  assert.deepEqual(logs, ['background token refresh failed: authority down']);

  tokens.change(Date.now() + 10_000);
  timer.dispose();
  tokens.change(Date.now() + 10_000);
  t.mock.timers.tick(3_600_000);
  assert.equal(tokens.refreshes, 2, 'disposed: no timer, no subscription');
});
