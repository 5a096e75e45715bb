// Runs the compiled unit tests (out/test/*.test.js) with node's test runner and the vscode mock preloaded.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dir = path.join(root, 'out', 'test');
const files = fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => f.endsWith('.test.js')).sort().map((f) => path.join('out', 'test', f)) : [];
if (!files.length) {
  console.error('no compiled tests in out/test (run npm run compile)');
  process.exit(1);
}
const extra = process.argv.slice(2);
const r = spawnSync(process.execPath, ['--require', './out/test/setup.js', '--test', '--test-timeout=60000', ...extra, ...files], { cwd: root, stdio: 'inherit' });
process.exit(r.status ?? 1);
