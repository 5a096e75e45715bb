import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { ApiError, checkBaseUrl, describeErrorBody, parseRetryAfter, request, unwrapList } from '../src/core/http';
import { startStubServer } from './helpers';

test('unwrapList accepts the three upstream list shapes and rejects others', () => {
  assert.deepEqual(unwrapList([1, 2]), [1, 2]);
  assert.deepEqual(unwrapList({ success: true, data: [1], meta: {} }), [1]);
  assert.deepEqual(unwrapList({ data: [3], meta: { page: 1, totalCount: 1 } }), [3]);
  assert.deepEqual(unwrapList({ items: [4], nextCursor: null }), [4]);
  assert.throws(() => unwrapList({ data: 'x' }), ApiError);
});

test('error bodies: problem+json, orchestrator envelope, oauth', () => {
  assert.equal(describeErrorBody({ type: 'about:blank', title: 'Bad Request', status: 400, detail: 'name is empty' }).message, 'Bad Request: name is empty');
  assert.deepEqual(describeErrorBody({ success: false, error: { code: 'PROMOTION_BLOCKED', message: 'frozen' } }), { message: 'frozen', code: 'PROMOTION_BLOCKED' });
  assert.deepEqual(describeErrorBody({ error: 'invalid_grant', error_description: 'used' }), { message: 'used', code: 'invalid_grant' });
});

test('Retry-After: seconds and HTTP date', () => {
  assert.equal(parseRetryAfter('3'), 3000);
  assert.equal(parseRetryAfter(new Date(10_000).toUTCString(), 4_000), 6000);
  assert.equal(parseRetryAfter(null), undefined);
});

test('base URLs: https required except loopback http', () => {
  assert.equal(checkBaseUrl('https://stella.example.com/', 'x'), 'https://stella.example.com');
  assert.equal(checkBaseUrl('http://127.0.0.1:8787', 'x'), 'http://127.0.0.1:8787');
  assert.throws(() => checkBaseUrl('http://stella.example.com', 'x'), /HTTPS is required/);
  assert.throws(() => checkBaseUrl('not a url', 'x'), /not a URL/);
});

test('GET retries 503 with backoff then succeeds; honours Retry-After', async () => {
  let n = 0;
  const srv = await startStubServer((_req, res) => {
    n++;
    if (n <= 2) {
      res.writeHead(n === 1 ? 503 : 429, { 'Content-Type': 'application/json', 'Retry-After': '0' });
      res.end('{"title":"busy"}');
    } else {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end('{"ok":true}');
    }
  });
  try {
    const waits: number[] = [];
    const r = await request<{ ok: boolean }>(`${srv.url}/x`, { retries: 3, backoffMs: 100, sleep: async (ms) => void waits.push(ms) });
    assert.equal(r.body.ok, true);
    assert.equal(n, 3);
    assert.deepEqual(waits, [0, 0]); // Retry-After: 0 wins over the backoff
  } finally {
    await srv.close();
  }
});

test('backoff doubles and is capped; retries stop after the limit', async () => {
  const srv = await startStubServer((_req, res) => {
    res.writeHead(503);
    res.end();
  });
  try {
    const waits: number[] = [];
    await assert.rejects(request(`${srv.url}/x`, { retries: 4, backoffMs: 100, maxBackoffMs: 300, sleep: async (ms) => void waits.push(ms) }), (e: ApiError) => e.status === 503 && e.isUnreachable);
    assert.deepEqual(waits, [100, 200, 300, 300]);
  } finally {
    await srv.close();
  }
});

test('POST is not retried', async () => {
  let n = 0;
  const srv = await startStubServer((_req, res) => {
    n++;
    res.writeHead(503);
    res.end();
  });
  try {
    await assert.rejects(request(`${srv.url}/x`, { method: 'POST', body: '{}', sleep: async () => undefined }));
    assert.equal(n, 1);
  } finally {
    await srv.close();
  }
});

test('timeout: a hanging server fails fast with kind timeout', async () => {
  const srv = await startStubServer(() => {
    /* never answers */
  });
  try {
    const t0 = Date.now();
    await assert.rejects(request(`${srv.url}/x`, { timeoutMs: 200, retries: 0 }), (e: ApiError) => e.kind === 'timeout' && e.isUnreachable);
    assert.ok(Date.now() - t0 < 2000);
  } finally {
    await srv.close();
  }
});

test('cancellation: an AbortSignal stops the request and the retry loop', async () => {
  const srv = await startStubServer(() => {
    /* never answers */
  });
  try {
    const ctl = new AbortController();
    setTimeout(() => ctl.abort(), 100);
    await assert.rejects(request(`${srv.url}/x`, { timeoutMs: 5000, retries: 3, signal: ctl.signal }), (e: ApiError) => e.kind === 'aborted');
  } finally {
    await srv.close();
  }
});

test('connection refused is a network error', async () => {
  const srv = await startStubServer(() => undefined);
  const url = srv.url;
  await srv.close();
  await assert.rejects(request(`${url}/x`, { retries: 0 }), (e: ApiError) => e.kind === 'network' && e.isUnreachable);
});
