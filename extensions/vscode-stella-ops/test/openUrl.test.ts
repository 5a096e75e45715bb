import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { openUrl } from '../src/vscode/openUrl';
// eslint-disable-next-line @typescript-eslint/no-var-requires
const mock = require('vscode') as typeof import('./vscode-mock');

test('openUrl: a local host opens the URL as it is', async () => {
  mock.resetCalls();
  const logs: string[] = [];
  await openUrl('http://127.0.0.1:8080/docs?x=1', (m) => logs.push(m));
  assert.deepEqual(mock.calls.opened.map(String), ['http://127.0.0.1:8080/docs?x=1']);
  assert.deepEqual(logs, ['opening http://127.0.0.1:8080/docs?x=1']);
});

test('openUrl: through a port forward (code-server), only the origin is forwarded; path and query are kept', async (t) => {
  mock.resetCalls();
  const forwarded: string[] = [];
  t.mock.method(mock.env, 'asExternalUri', async (u: InstanceType<typeof mock.Uri>) => {
    forwarded.push(String(u));
    return mock.Uri.parse('https://cs.example/proxy/8080/');
  });
  await openUrl('http://127.0.0.1:8080/docs?x=1', () => undefined);
  assert.deepEqual(forwarded, ['http://127.0.0.1:8080/']);
  assert.deepEqual(mock.calls.opened.map(String), ['https://cs.example/proxy/8080/docs?x=1']);
});
