import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { IntegrationsClient } from '../src/core/clients';
import { ApiError } from '../src/core/http';
import { noSleep, startStubServer } from './helpers';

test('listIntegrations follows nextCursor and sends the API key as a bearer token', async () => {
  const srv = await startStubServer((req, res) => {
    const u = new URL(req.url!, 'http://x');
    res.writeHead(200, { 'Content-Type': 'application/json' });
    if (!u.searchParams.get('cursor')) res.end(JSON.stringify({ items: [{ id: 'a', name: 'a', status: 'healthy' }], nextCursor: 'c2' }));
    else res.end(JSON.stringify({ items: [{ id: 'b', name: 'b', status: 'error' }], nextCursor: null }));
  });
  try {
    const c = new IntegrationsClient(srv.url, async () => 'secret-key');
    const items = await c.listIntegrations();
    assert.deepEqual(items.map((i) => i.id), ['a', 'b']);
    assert.equal(srv.requests[0].auth, 'Bearer secret-key');
    assert.match(srv.requests[1].url!, /cursor=c2/);
  } finally {
    await srv.close();
  }
});

test('health check: 200 result and 501 problem+json both handled', async () => {
  let implemented = false;
  const srv = await startStubServer((_req, res) => {
    if (!implemented) {
      res.writeHead(501, { 'Content-Type': 'application/problem+json' });
      res.end(JSON.stringify({ type: 'about:blank', title: 'Not Implemented', status: 501, detail: 'health engine not available' }));
    } else {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ status: 'unhealthy', reason: 'auth_failed', message: '401 from registry', latencyMs: 12, checkedAt: '2026-11-28T12:00:00Z' }));
    }
  });
  try {
    const c = new IntegrationsClient(srv.url, async () => 'k');
    const a = await c.runHealthCheck('id-1');
    assert.equal(a.kind, 'not-implemented');
    assert.match(a.kind === 'not-implemented' ? a.message : '', /Not Implemented: health engine not available/);
    implemented = true;
    const b = await c.runHealthCheck('id-1');
    assert.deepEqual(b.kind === 'result' ? [b.result.status, b.result.latencyMs] : [], ['unhealthy', 12]);
    assert.equal(srv.requests[0].method, 'POST');
    assert.equal(srv.requests[0].url, '/api/v1/integrations/id-1/health-check');
  } finally {
    await srv.close();
  }
});

test('429 with Retry-After is retried after the advertised delay; validation errors are reported', async () => {
  let n = 0;
  const srv = await startStubServer((req, res) => {
    n++;
    if (req.method === 'GET' && n === 1) {
      res.writeHead(429, { 'Content-Type': 'application/problem+json', 'Retry-After': '2' });
      res.end(JSON.stringify({ title: 'Too Many Requests', status: 429 }));
      return;
    }
    if (req.method === 'POST') {
      res.writeHead(422, { 'Content-Type': 'application/problem+json' });
      res.end(JSON.stringify({ title: 'Unprocessable', status: 422, detail: 'invalid config', errors: [{ detail: 'name: must not be empty' }] }));
      return;
    }
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ items: [], nextCursor: null }));
  });
  try {
    const waits: number[] = [];
    const c = new IntegrationsClient(srv.url, async () => 'k', { retries: 2, sleep: async (ms) => void waits.push(ms) });
    assert.deepEqual(await c.listIntegrations(), []);
    assert.deepEqual(waits, [2000]);
    await assert.rejects(c.createIntegration({ type: 'inmemory', name: '', config: {} }), (e: ApiError) => e.status === 422 && /name: must not be empty/.test(e.message));
  } finally {
    await srv.close();
  }
});

test('no API key: no request is made', async () => {
  const srv = await startStubServer((_q, res) => res.end());
  try {
    const c = new IntegrationsClient(srv.url, async () => undefined, { sleep: noSleep });
    await assert.rejects(c.listIntegrations(), /no Integrations API key/);
    assert.equal(srv.requests.length, 0);
  } finally {
    await srv.close();
  }
});
