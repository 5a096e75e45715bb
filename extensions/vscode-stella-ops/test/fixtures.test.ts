import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'fs';
import * as path from 'path';
import { contractView, parseStellaYaml } from '../src/core/stellaYaml';
import { REPO_EXT, SCHEMA } from './helpers';

const dir = path.join(REPO_EXT, 'fixtures', 'stella-yaml');
const cases = fs.readdirSync(dir).filter((d) => fs.existsSync(path.join(dir, d, 'expected.json')));

test('there are fixtures, valid and invalid', () => {
  assert.ok(cases.length >= 10);
  assert.ok(cases.some((c) => c.startsWith('valid')) && cases.some((c) => c.startsWith('invalid')));
});

for (const c of cases) {
  test(`fixture ${c}: diagnostics match expected.json`, () => {
    const expected = JSON.parse(fs.readFileSync(path.join(dir, c, 'expected.json'), 'utf8'));
    const text = fs.readFileSync(path.join(dir, c, 'stella.yaml'), 'utf8');
    const r = parseStellaYaml(text, SCHEMA, expected.context ?? {});
    const got = r.diagnostics.map(contractView).map((d) => (d.kind === 'yaml-syntax' ? { ...d, line: null, column: null } : d));
    assert.deepEqual(got, expected.diagnostics);
    assert.equal(!got.some((d) => d.severity === 'error'), expected.valid);
    assert.equal(r.model.isOpenApi, !!expected.ignored);
  });
}

test('model: environment lines and promotion path for CodeLens', () => {
  const text = fs.readFileSync(path.join(dir, 'valid-full', 'stella.yaml'), 'utf8');
  const { model } = parseStellaYaml(text, SCHEMA);
  assert.equal(model.project, 'myapp');
  assert.deepEqual(model.environments.map((e) => [e.name, e.line]), [['dev', 11], ['stage', 12], ['prod', 14]]);
  assert.deepEqual({ from: model.promotion?.from, to: model.promotion?.to, line: model.promotion?.at.line }, { from: 'stage', to: 'prod', line: 17 });
});
