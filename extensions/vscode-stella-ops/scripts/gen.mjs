// Build step: copy the shared stella.yaml schema into the package, and generate TypeScript types from
// the contracts (Orchestrator/Authority) and from the daemon's openapi.json, so API drift breaks `tsc`.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const r = (...p) => path.resolve(root, ...p);
fs.mkdirSync(r('schema'), { recursive: true });
fs.copyFileSync(r('../schema/stella.schema.json'), r('schema/stella.schema.json'));
fs.mkdirSync(r('src/generated'), { recursive: true });

const bin = r('node_modules/openapi-typescript/bin/cli.js');
function gen(input, output) {
  execFileSync(process.execPath, [bin, input, '-o', output], { stdio: ['ignore', 'ignore', 'inherit'] });
  console.log(`generated ${path.relative(root, output)} from ${path.relative(root, input)}`);
}
gen(r('../contracts/orchestrator-authority.openapi.yaml'), r('src/generated/orchestrator.ts'));

const daemonSpec = process.env.STELLA_OPENAPI ? path.resolve(process.env.STELLA_OPENAPI) : r('../../openapi.json');
if (!fs.existsSync(daemonSpec)) {
  console.error(`error: ${daemonSpec} not found (the daemon's OpenAPI document; set STELLA_OPENAPI to use another file)`);
  process.exit(1);
}
gen(daemonSpec, r('src/generated/daemon.ts'));
