import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { AuthorityClient, SECRET_KEYS, TokenManager } from '../src/core/auth';
import { OrchestratorClient } from '../src/core/clients';
import { ApiError } from '../src/core/http';
import { MemorySecrets, noSleep, startFake } from './helpers';

function setup(url: string, clientId: string, clock = { t: Date.now() }) {
  const secrets = new MemorySecrets();
  const logs: string[] = [];
  const authority = new AuthorityClient(url, { timeoutMs: 3000, log: (m) => logs.push(m) });
  const tm = new TokenManager(secrets, () => authority, { clientId, now: () => clock.t, sleep: noSleep, log: (m) => logs.push(m) });
  return { secrets, authority, tm, clock, logs };
}

test('discovery finds /token; client credentials sign-in stores the session in the secret store only', async () => {
  const fake = await startFake();
  try {
    const { secrets, authority, tm } = setup(fake.url, 'stella-ci');
    const s = await tm.signInClientCredentials('stella-ci-secret');
    assert.equal((await authority.discover()).source, 'discovery');
    assert.equal(s.tokenEndpoint, `${fake.url}/token`);
    assert.ok(s.accessToken.startsWith('fake_at_'));
    assert.deepEqual([...secrets.map.keys()].sort(), [SECRET_KEYS.clientSecret, SECRET_KEYS.session].sort());
    assert.equal(JSON.parse(secrets.map.get(SECRET_KEYS.session)!).accessToken, s.accessToken);
  } finally {
    await fake.close();
  }
});

test('wrong client secret: sign-in fails with invalid_client and nothing is stored', async () => {
  const fake = await startFake();
  try {
    const { secrets, tm } = setup(fake.url, 'stella-ci');
    await assert.rejects(tm.signInClientCredentials('nope'), (e: ApiError) => e.status === 401 && e.code === 'invalid_client');
    assert.equal(secrets.map.size, 0);
    assert.equal(tm.isSignedIn, false);
  } finally {
    await fake.close();
  }
});

test('device code: pending until approved, then access + refresh token', async () => {
  const fake = await startFake();
  try {
    const { tm } = setup(fake.url, 'stella-ide');
    let prompted: string | undefined;
    let polls = 0;
    const sleep = async () => {
      polls++;
      if (polls === 3) await fake.control('/device/approve', {});
    };
    const tm2 = new TokenManager(new MemorySecrets(), () => new AuthorityClient(fake.url), { clientId: 'stella-ide', sleep });
    const s = await tm2.signInDeviceCode((p) => (prompted = p.userCode));
    assert.match(prompted ?? '', /^[A-Z]{4}-[A-Z]{4}$/);
    assert.ok(polls >= 3);
    assert.equal(s.flow, 'device_code');
    assert.ok(s.refreshToken?.startsWith('fake_rt_'));
    assert.ok(!tm.isSignedIn);
  } finally {
    await fake.close();
  }
});

test('device code: denial ends the loop with an error', async () => {
  const fake = await startFake();
  try {
    const tm = new TokenManager(new MemorySecrets(), () => new AuthorityClient(fake.url), { clientId: 'stella-ide', sleep: async () => void (await fake.control('/device/deny', {})) });
    await assert.rejects(tm.signInDeviceCode(() => undefined), /denied/);
  } finally {
    await fake.close();
  }
});

test('refresh before expiry: at 80 % of the lifetime the token is refreshed (refresh token rotated)', async () => {
  const fake = await startFake({ tokenTtlSeconds: 100, autoApproveDevice: true });
  try {
    const { tm, clock } = setup(fake.url, 'stella-ide');
    const s1 = await tm.signInDeviceCode(() => undefined);
    clock.t += 79_000;
    assert.equal(await tm.getAccessToken(), s1.accessToken, 'not yet due at 79 %');
    clock.t += 2_000;
    const t2 = await tm.getAccessToken();
    assert.notEqual(t2, s1.accessToken);
    assert.notEqual(tm.current?.refreshToken, s1.refreshToken, 'refresh token rotated');
    assert.equal(fake.state.counters.refreshes, 1);
    assert.equal(tm.refreshDueAt(), clock.t + 80_000);
  } finally {
    await fake.close();
  }
});

test('concurrent callers share one refresh (single flight)', async () => {
  const fake = await startFake({ tokenTtlSeconds: 10, autoApproveDevice: true });
  try {
    const { tm, clock } = setup(fake.url, 'stella-ide');
    await tm.signInDeviceCode(() => undefined);
    clock.t += 9_000;
    const [a, b, c] = await Promise.all([tm.getAccessToken(), tm.getAccessToken(), tm.getAccessToken()]);
    assert.equal(a, b);
    assert.equal(b, c);
    assert.equal(fake.state.counters.refreshes, 1);
  } finally {
    await fake.close();
  }
});

test('a 401 from the Orchestrator triggers one refresh and the call succeeds', async () => {
  const fake = await startFake({ autoApproveDevice: true });
  try {
    const { tm } = setup(fake.url, 'stella-ide');
    await tm.signInDeviceCode(() => undefined);
    await fake.control('/tokens/expire', {});
    const orch = new OrchestratorClient(fake.url, tm, { sleep: noSleep });
    const envs = await orch.listEnvironments();
    assert.deepEqual(envs.map((e) => e.name), ['dev', 'stage', 'prod']);
    assert.equal(fake.state.counters.expiredRejected, 1);
    assert.equal(fake.state.counters.refreshes, 1);
  } finally {
    await fake.close();
  }
});

test('a rejected refresh (reused refresh token) signs out and clears the secrets', async () => {
  const fake = await startFake({ autoApproveDevice: true });
  try {
    const { tm, secrets } = setup(fake.url, 'stella-ide');
    const s = await tm.signInDeviceCode(() => undefined);
    // Use the refresh token behind the manager's back: the stored one is now spent.
    await fetch(`${fake.url}/token`, { method: 'POST', body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: s.refreshToken!, client_id: 'stella-ide' }) });
    await assert.rejects(tm.refresh(), (e: ApiError) => e.code === 'invalid_grant');
    assert.equal(tm.isSignedIn, false);
    assert.equal(secrets.map.has(SECRET_KEYS.session), false);
  } finally {
    await fake.close();
  }
});

test('client-credential sessions refresh by asking again with the stored secret', async () => {
  const fake = await startFake({ tokenTtlSeconds: 10 });
  try {
    const { tm, clock } = setup(fake.url, 'stella-ci');
    const s = await tm.signInClientCredentials('stella-ci-secret');
    clock.t += 8_500;
    const t = await tm.getAccessToken();
    assert.notEqual(t, s.accessToken);
    const grants = (await fake.control('/requests')).filter((r: any) => r.path === '/token').map((r: any) => r.grantType);
    assert.deepEqual(grants, ['client_credentials', 'client_credentials']);
  } finally {
    await fake.close();
  }
});

test('sign-out revokes and deletes every stored credential', async () => {
  const fake = await startFake({ autoApproveDevice: true });
  try {
    const { tm, secrets } = setup(fake.url, 'stella-ide');
    await tm.signInDeviceCode(() => undefined);
    await secrets.store(SECRET_KEYS.clientSecret, 'x');
    await tm.signOut();
    assert.equal(secrets.map.size, 0);
    assert.equal(await tm.getAccessToken(), undefined);
    const paths = (await fake.control('/requests')).map((r: any) => r.path);
    assert.equal(paths.filter((p: string) => p === '/revoke').length, 2);
  } finally {
    await fake.close();
  }
});

test('no discovery document: falls back to /token, then to the legacy /oauth/token', async () => {
  const fake = await startFake({ discovery: false, tokenEndpoint: 'legacy-only' });
  try {
    const { tm, logs } = setup(fake.url, 'stella-ci');
    const s = await tm.signInClientCredentials('stella-ci-secret');
    assert.equal(s.tokenEndpoint, `${fake.url}/oauth/token`);
    assert.ok(logs.some((l) => /falling back to legacy/.test(l)));
    assert.ok(logs.some((l) => /deprecated/.test(l)), 'Deprecation header noticed');
    const paths = (await fake.control('/requests')).map((r: any) => `${r.path} ${r.status}`);
    assert.deepEqual(paths, ['/.well-known/openid-configuration 404', '/token 404', '/oauth/token 200']);
  } finally {
    await fake.close();
  }
});

test('legacy endpoint gone (410) is reported, not retried forever', async () => {
  const fake = await startFake({ discovery: false, tokenEndpoint: 'legacy-only', legacyToken: 'gone' });
  try {
    const { tm } = setup(fake.url, 'stella-ci');
    await assert.rejects(tm.signInClientCredentials('stella-ci-secret'), (e: ApiError) => e.status === 410);
  } finally {
    await fake.close();
  }
});

test('promotion: elevated token carries orch:operate only with reason and ticket; POST /promotions → 201', async () => {
  const fake = await startFake({ autoApproveDevice: true, promotionDelayMs: 0 });
  try {
    const { tm } = setup(fake.url, 'stella-ide');
    await tm.signInDeviceCode(() => undefined);
    const orch = new OrchestratorClient(fake.url, tm, { sleep: noSleep });
    // The read-only session token may not promote.
    await assert.rejects(orch.createPromotion({ releaseId: 'rel-myapp-1.5.0', targetEnvironmentId: 'env-stage', reason: 'x' }, (await tm.getAccessToken())!), (e: ApiError) => e.status === 403);
    const token = await tm.elevate('ship 1.5.0', 'CHG-1');
    const p = await orch.createPromotion({ releaseId: 'rel-myapp-1.5.0', targetEnvironmentId: 'env-stage', reason: 'ship 1.5.0', ticket: 'CHG-1' }, token);
    assert.equal(p.status, 'pending');
    assert.equal(p.targetEnvironmentName, 'stage');
    assert.equal(p.reason, 'ship 1.5.0');
    await new Promise((r) => setTimeout(r, 50));
    const envs = await orch.listEnvironments();
    assert.equal(envs.find((e) => e.name === 'stage')?.currentRelease?.id, 'rel-myapp-1.5.0');
    // Promoting a draft is blocked (422).
    await assert.rejects(orch.createPromotion({ releaseId: 'rel-myapp-1.6.0-rc.1', targetEnvironmentId: 'env-dev', reason: 'x' }, token), (e: ApiError) => e.status === 422 && e.code === 'PROMOTION_BLOCKED');
  } finally {
    await fake.close();
  }
});

test('Authority unreachable at the refresh point: the still-valid token keeps being used, then refresh resumes', async () => {
  const fake = await startFake({ tokenTtlSeconds: 100, autoApproveDevice: true });
  try {
    const { tm, clock, logs } = setup(fake.url, 'stella-ide');
    const s1 = await tm.signInDeviceCode(() => undefined);
    await fake.control('/down', { down: true, mode: 'reset' });
    clock.t += 85_000; // past 80 %, before expiry
    assert.equal(await tm.getAccessToken(), s1.accessToken);
    assert.ok(logs.some((l) => /using the current token/.test(l)));
    clock.t += 20_000; // expired now: no silent fallback
    await assert.rejects(tm.getAccessToken(), (e: ApiError) => e.isUnreachable);
    await fake.control('/down', { down: false });
    assert.notEqual(await tm.getAccessToken(), s1.accessToken);
    assert.equal(tm.isSignedIn, true);
  } finally {
    await fake.close();
  }
});
