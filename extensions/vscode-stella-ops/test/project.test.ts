import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'fs';
import * as path from 'path';
import { findProject } from '../src/core/project';
import { REPO_EXT, SCHEMA } from './helpers';

const fixture = (name: string) => fs.readFileSync(path.join(REPO_EXT, 'fixtures', 'stella-yaml', name, 'stella.yaml'), 'utf8');

function workspace(files: Record<string, string>) {
  const reads: string[] = [];
  const read = async (f: { path: string }) => {
    reads.push(f.path);
    return files[f.path];
  };
  return { files: Object.keys(files).map((p) => ({ path: p })), read, reads };
}

test('project file: shortest path first, an OpenAPI stella.yaml skipped, files read only until one is found', async () => {
  const w = workspace({ '/w/services/api/stella.yaml': fixture('valid-minimal'), '/w/stella.yaml': fixture('openapi-not-ours'), '/w/app/stella.yml': fixture('valid-full') });
  const found = await findProject(w.files, w.read, SCHEMA);
  assert.equal(found?.file.path, '/w/app/stella.yml');
  assert.deepEqual(found?.project, { name: 'myapp', server: 'https://stella.example.com', integrations: [] });
  assert.deepEqual(w.reads, ['/w/stella.yaml', '/w/app/stella.yml']);
});

test('project file: no server key leaves the setting in charge; none or only OpenAPI files: no project', async () => {
  const minimal = workspace({ '/w/stella.yaml': fixture('valid-minimal') });
  assert.deepEqual((await findProject(minimal.files, minimal.read, SCHEMA))?.project, { name: 'myapp', server: undefined, integrations: [] });
  const openapi = workspace({ '/w/stella.yaml': fixture('openapi-not-ours') });
  assert.equal(await findProject(openapi.files, openapi.read, SCHEMA), undefined);
  assert.equal(await findProject([], openapi.read, SCHEMA), undefined);
});

test('project file: the integrations it depends on, by name or id', async () => {
  const w = workspace({ '/w/stella.yaml': fixture('valid-integrations') });
  assert.deepEqual((await findProject(w.files, w.read, SCHEMA))?.project.integrations, ['harbor-prod', '0193aaaa-0000-7000-8000-00000000000a']);
  const bad = workspace({ '/w/stella.yaml': fixture('invalid-integrations') });
  assert.deepEqual((await findProject(bad.files, bad.read, SCHEMA))?.project.integrations, ['harbor-prod'], 'only the entries that are names');
});
