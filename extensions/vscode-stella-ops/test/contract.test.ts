// The fake server must answer what orchestrator-authority.openapi.yaml describes.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'fs';
import * as path from 'path';
import Ajv from 'ajv';
import { parse } from 'yaml';
import { REPO_EXT, startFake } from './helpers';

const spec = parse(fs.readFileSync(path.join(REPO_EXT, 'contracts', 'orchestrator-authority.openapi.yaml'), 'utf8'));
const ajv = new Ajv({ strict: false, allErrors: true });
ajv.addSchema(spec, 'spec');
const check = (schema: string, data: unknown) => {
  const v = ajv.getSchema(`spec#/components/schemas/${schema}`)!;
  assert.ok(v, `schema ${schema} exists`);
  const ok = v(data);
  assert.ok(ok, `${schema}: ${ajv.errorsText(v.errors)}`);
};

test('every path in the contract has an operationId and responses', () => {
  for (const [p, ops] of Object.entries<any>(spec.paths)) for (const [m, op] of Object.entries<any>(ops)) assert.ok(op.operationId && op.responses, `${m} ${p}`);
});

test('fake server responses conform to the contract schemas', async () => {
  const fake = await startFake({ promotionDelayMs: 0 });
  try {
    const post = (p: string, form: Record<string, string>) => fetch(`${fake.url}${p}`, { method: 'POST', body: new URLSearchParams(form) });
    const disc = await (await fetch(`${fake.url}/.well-known/openid-configuration`)).json();
    check('OpenIdConfiguration', disc);
    const tokRes = await post('/token', { grant_type: 'client_credentials', client_id: 'stella-ci', client_secret: 'stella-ci-secret', scope: 'orch:read orch:operate', operator_reason: 'r', operator_ticket: 't' });
    const tok = await tokRes.json();
    check('TokenResponse', tok);
    check('OAuthError', await (await post('/token', { grant_type: 'client_credentials', client_id: 'stella-ci', client_secret: 'stella-ci-secret', scope: 'orch:operate' })).json());
    check('DeviceAuthorizationResponse', await (await post('/device_authorization', { client_id: 'stella-ide', scope: 'orch:read' })).json());
    const auth = { Authorization: `Bearer ${tok.access_token}` };
    check('ReleaseListResponse', await (await fetch(`${fake.url}/api/v1/releases`, { headers: auth })).json());
    check('ReleaseResponse', await (await fetch(`${fake.url}/api/v1/releases/rel-myapp-1.5.0`, { headers: auth })).json());
    check('EnvironmentListResponse', await (await fetch(`${fake.url}/api/v1/environments?includeState=true`, { headers: auth })).json());
    check('EnvironmentResponse', await (await fetch(`${fake.url}/api/v1/environments/env-prod`, { headers: auth })).json());
    const pr = await fetch(`${fake.url}/api/v1/promotions`, { method: 'POST', headers: { ...auth, 'Content-Type': 'application/json' }, body: JSON.stringify({ releaseId: 'rel-myapp-1.5.0', targetEnvironmentId: 'env-stage', reason: 'r' }) });
    assert.equal(pr.status, 201);
    check('PromotionResponse', await pr.json());
    check('PromotionListResponse', await (await fetch(`${fake.url}/api/v1/promotions`, { headers: auth })).json());
    const unauth = await fetch(`${fake.url}/api/v1/releases`);
    assert.equal(unauth.status, 401);
    assert.match(unauth.headers.get('www-authenticate') ?? '', /invalid_token/);
    check('ErrorResponse', await unauth.json());
    const bad = await fetch(`${fake.url}/api/v1/promotions`, { method: 'POST', headers: { ...auth, 'Content-Type': 'application/json' }, body: '{}' });
    assert.equal(bad.status, 400);
    check('ErrorResponse', await bad.json());
  } finally {
    await fake.close();
  }
});
