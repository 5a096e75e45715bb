import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { SECRET_KEYS } from '../src/core/auth';
import { Backends } from '../src/core/backends';
import { ApiError } from '../src/core/http';
import type { ProjectRef } from '../src/core/project';
import { Settings, settingsFrom } from '../src/core/settings';
import { MemorySecrets, startStubServer } from './helpers';

const settings = (p: Partial<Settings> = {}): Settings => ({ serverUrl: '', authorityUrl: '', integrationsUrl: '', clientId: 'stella-ide', flow: 'ask', intervalMs: 30_000, timeoutMs: 10_000, notificationsMuted: false, follow: 'referenced', pinned: [], ...p });

function setup(s: Settings, project: ProjectRef = {}) {
  const cur = { settings: s, project };
  const secrets = new MemorySecrets();
  const backends = new Backends({ secrets, settings: () => cur.settings, project: () => cur.project });
  return { backends, cur, secrets };
}

test('settings: trimmed, client id and flow defaulted, interval and timeout bounded', () => {
  const from = (m: Record<string, unknown>) => settingsFrom({ get: <T>(k: string) => m[k] as T | undefined });
  assert.deepEqual(from({}), settings());
  assert.deepEqual(
    from({
      serverUrl: ' https://s.example ',
      authorityUrl: ' https://a.example',
      integrationsUrl: 'http://127.0.0.1:8080 ',
      clientId: ' ci ',
      'auth.flow': 'client_credentials',
      refreshIntervalSeconds: 60,
      requestTimeoutMs: 2500,
      'notifications.muted': true,
      'notifications.follow': 'pinned',
      'integrations.pinned': [' harbor ', '', 42, 'gitlab'],
    }),
    {
      serverUrl: 'https://s.example',
      authorityUrl: 'https://a.example',
      integrationsUrl: 'http://127.0.0.1:8080',
      clientId: 'ci',
      flow: 'client_credentials',
      intervalMs: 60_000,
      timeoutMs: 2500,
      notificationsMuted: true,
      follow: 'pinned',
      pinned: ['harbor', 'gitlab'],
    },
  );
  assert.equal(from({ 'notifications.follow': 'everything' }).follow, 'referenced', 'an unknown follow mode falls back to the default');
  const low = from({ clientId: '   ', refreshIntervalSeconds: 1, requestTimeoutMs: 100 });
  assert.deepEqual([low.clientId, low.intervalMs, low.timeoutMs], ['stella-ide', 5000, 500]);
});

test("backends: the project file's server overrides the setting; the Authority defaults to the Orchestrator", () => {
  const { backends, cur } = setup(settings({ serverUrl: 'https://s.example' }));
  assert.deepEqual([backends.serverUrl(), backends.authorityUrl()], ['https://s.example', 'https://s.example']);
  cur.project = { name: 'myapp', server: 'https://p.example' };
  assert.deepEqual([backends.serverUrl(), backends.authorityUrl()], ['https://p.example', 'https://p.example']);
  assert.equal(backends.orchestrator()?.baseUrl, 'https://p.example');
  cur.settings = settings({ serverUrl: 'https://s.example', authorityUrl: 'https://a.example' });
  assert.deepEqual([backends.serverUrl(), backends.authorityUrl()], ['https://p.example', 'https://a.example']);
});

test('backends: nothing configured gives no clients and a config error for the Authority; one Authority client per URL', () => {
  const { backends, cur } = setup(settings());
  assert.equal(backends.orchestrator(), undefined);
  assert.equal(backends.integrations(), undefined);
  assert.throws(() => backends.authorityClient(), (e: ApiError) => e.kind === 'config' && e.message === 'stellaops.serverUrl (or stellaops.authorityUrl) is not set');
  cur.settings = settings({ serverUrl: 'https://s.example' });
  const first = backends.authorityClient();
  assert.equal(first.baseUrl, 'https://s.example');
  assert.equal(backends.authorityClient(), first, 'kept while the URL is the same (discovered endpoints are cached in it)');
  cur.project = { server: 'https://p.example' };
  const second = backends.authorityClient();
  assert.notEqual(second, first);
  assert.equal(second.baseUrl, 'https://p.example');
});

test('backends: session and API key loaded from the secret store; the daemon client sends the key current at each request', async () => {
  const srv = await startStubServer((_req, res) => {
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ items: [], nextCursor: null }));
  });
  try {
    const { backends, secrets } = setup(settings({ integrationsUrl: srv.url }));
    secrets.map.set(SECRET_KEYS.session, JSON.stringify({ flow: 'device_code', clientId: 'stella-ide', accessToken: 'at', scope: 'orch:read', obtainedAt: 0, expiresAt: 1, tokenEndpoint: 'https://s.example/token' }));
    secrets.map.set(SECRET_KEYS.integrationsApiKey, 'k0');
    await backends.load();
    assert.equal(backends.tokens.isSignedIn, true);
    assert.equal(backends.hasApiKey, true);
    const client = backends.integrations()!;
    await backends.setApiKey('k1');
    assert.equal(secrets.map.get(SECRET_KEYS.integrationsApiKey), 'k1');
    await client.listIntegrations();
    assert.equal(srv.requests[0].auth, 'Bearer k1');
    await backends.deleteApiKey();
    assert.equal(backends.hasApiKey, false);
    assert.equal(secrets.map.has(SECRET_KEYS.integrationsApiKey), false);
    await assert.rejects(client.listIntegrations(), (e: ApiError) => e.code === 'no-api-key');
    assert.equal(srv.requests.length, 1);
  } finally {
    await srv.close();
  }
});
