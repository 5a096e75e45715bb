// End-to-end: the packaged .vsix in a real code-server, driven by playwright-core with Debian's chromium,
// against the fake Orchestrator/Authority (extensions/contracts/fake-server) and the real Integrations daemon.
// The extension reaches the daemon through a recording proxy (loopback) that the test can also use to cut it
// off: it shows which Last-Event-ID the extension resumes with and which events reach it.
//
// Env: CODE_SERVER_BIN (code-server executable), STELLA_VSIX (the .vsix), STELLA_DAEMON_BIN (daemon binary),
//      CHROMIUM_BIN (default /usr/bin/chromium), E2E_ARTIFACTS (screenshots dir, default e2e/artifacts).
// Every wait is bounded; every process started here is stopped in the `after` hook.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const EXT = path.resolve(HERE, '..');
const REPO_EXT = path.resolve(EXT, '..');
const ARTIFACTS = path.resolve(process.env.E2E_ARTIFACTS ?? path.join(HERE, 'artifacts'));
const CODE_SERVER = process.env.CODE_SERVER_BIN ?? 'code-server';
const VSIX = path.resolve(process.env.STELLA_VSIX ?? path.join(EXT, 'stella-ops.vsix'));
const DAEMON = path.resolve(EXT, process.env.STELLA_DAEMON_BIN ?? '../../target/debug/stella-integrations');
const CHROMIUM = process.env.CHROMIUM_BIN ?? '/usr/bin/chromium';
const API_KEY = `e2e-${crypto.randomBytes(12).toString('hex')}`;

const procs = [];
const state = {};
let shot = 0;

function log(...a) {
  console.log('[e2e]', ...a);
}

async function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const p = s.address().port;
      s.close(() => resolve(p));
    });
  });
}

async function waitFor(what, fn, timeoutMs = 30_000, everyMs = 250) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${last.message}` : ''}`);
}

function start(name, cmd, args, opts = {}) {
  const logFile = path.join(ARTIFACTS, `${name}.log`);
  const out = fs.openSync(logFile, 'w');
  const p = spawn(cmd, args, { stdio: ['ignore', out, out], detached: false, ...opts });
  p.on('exit', (code, sig) => log(`${name} exited (${code ?? sig})`));
  procs.push({ name, p });
  return p;
}

async function stop(p) {
  if (p.exitCode !== null || p.signalCode !== null) return;
  p.kill('SIGTERM');
  await Promise.race([new Promise((r) => p.once('exit', r)), new Promise((r) => setTimeout(r, 5000))]);
  if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
}

async function httpOk(url, init) {
  const r = await fetch(url, { ...init, signal: AbortSignal.timeout(3000) });
  return r.ok ? r : undefined;
}

async function screenshot(page, name) {
  const file = path.join(ARTIFACTS, `${String(++shot).padStart(2, '0')}-${name}.png`);
  await page.screenshot({ path: file });
  log(`screenshot ${path.relative(EXT, file)}`);
}

async function daemonApi(p, init = {}) {
  const r = await fetch(`${state.daemonUrl}${p}`, { ...init, headers: { Authorization: `Bearer ${API_KEY}`, 'Content-Type': 'application/json', ...(init.headers ?? {}) }, signal: AbortSignal.timeout(5000) });
  if (!r.ok) throw new Error(`${init.method ?? 'GET'} ${p}: ${r.status} ${await r.text()}`);
  return r.json();
}

/**
 * A pass-through proxy to the daemon that records, for every GET /api/v1/events, the Last-Event-ID sent, the
 * answer, whether it is still open and the events it carried; and the times of integration list reads.
 * `block = true` answers every request with 503 (the network gap of a test).
 */
async function startProxy(targetPort) {
  const st = { block: false, streams: [], listReads: [] };
  const sockets = new Set();
  const server = http.createServer((req, res) => {
    const isEvents = req.url.startsWith('/api/v1/events');
    if (req.method === 'GET' && /^\/api\/v1\/integrations(\?|$)/.test(req.url)) st.listReads.push(Date.now());
    if (st.block) {
      res.writeHead(503, { 'Content-Type': 'application/problem+json' });
      res.end(JSON.stringify({ title: 'Service Unavailable', status: 503, detail: 'cut off by the e2e proxy' }));
      return;
    }
    const rec = isEvents ? { at: Date.now(), lastEventId: req.headers['last-event-id'], status: undefined, open: true, ids: [], events: [] } : undefined;
    if (rec) st.streams.push(rec);
    const up = http.request({ host: '127.0.0.1', port: targetPort, method: req.method, path: req.url, headers: req.headers }, (ur) => {
      if (rec) rec.status = ur.statusCode;
      res.writeHead(ur.statusCode ?? 502, ur.headers);
      res.flushHeaders(); // an event stream's headers must not wait for its first event
      let buf = '';
      ur.on('data', (chunk) => {
        if (rec) {
          buf += chunk.toString('utf8');
          for (let i = buf.indexOf('\n\n'); i >= 0; i = buf.indexOf('\n\n')) {
            const block = buf.slice(0, i);
            buf = buf.slice(i + 2);
            const id = /^id: ?(.*)$/m.exec(block)?.[1];
            const data = /^data: ?(.*)$/m.exec(block)?.[1];
            if (id === undefined || data === undefined) continue;
            rec.ids.push(id);
            try {
              const ce = JSON.parse(data);
              rec.events.push({ id, type: ce.type, integrationId: ce.data?.integrationId, status: ce.data?.status });
            } catch {
              rec.events.push({ id });
            }
          }
        }
        res.write(chunk);
      });
      ur.on('end', () => {
        if (rec) rec.open = false;
        res.end();
      });
      ur.on('error', () => {
        if (rec) rec.open = false;
        res.destroy();
      });
    });
    up.on('error', () => {
      if (rec) {
        rec.open = false;
        rec.status ??= 502;
      }
      if (!res.headersSent) {
        res.writeHead(502, { 'Content-Type': 'application/problem+json' });
        res.end(JSON.stringify({ title: 'Bad Gateway', status: 502, detail: 'daemon unreachable' }));
      } else res.destroy();
    });
    req.pipe(up);
    res.on('close', () => {
      if (rec) rec.open = false;
      up.destroy();
    });
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  const port = await freePort();
  await new Promise((r) => server.listen(port, '127.0.0.1', r));
  return {
    st,
    port,
    url: `http://127.0.0.1:${port}`,
    /** The event stream the extension has open now, if any. */
    openStream: () => st.streams.filter((r) => r.open && r.status === 200).at(-1),
    /** The highest event id delivered to the extension so far. */
    lastDelivered: () => st.streams.flatMap((r) => r.ids).reduce((m, id) => Math.max(m, Number(id)), 0),
    close: () =>
      new Promise((r) => {
        for (const s of sockets) s.destroy();
        server.close(r);
      }),
  };
}

/** The events in the daemon's log after `after`, read directly (not through the proxy) for `ms`. */
async function daemonEventsAfter(after, ms = 1500) {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), ms);
  let text = '';
  try {
    const r = await fetch(`${state.daemonUrl}/api/v1/events?after=${after}`, { headers: { Authorization: `Bearer ${API_KEY}` }, signal: ctl.signal });
    const reader = r.body.getReader();
    const dec = new TextDecoder();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      text += dec.decode(value, { stream: true });
    }
  } catch {
    /* the read ends with the abort */
  } finally {
    clearTimeout(timer);
  }
  return text
    .split('\n\n')
    .map((b) => ({ id: /^id: ?(.*)$/m.exec(b)?.[1], data: /^data: ?(.*)$/m.exec(b)?.[1] }))
    .filter((e) => e.id !== undefined && e.data !== undefined)
    .map((e) => {
      const ce = JSON.parse(e.data);
      return { id: e.id, type: ce.type, integrationId: ce.data?.integrationId, status: ce.data?.status };
    });
}

async function integrationByName(name) {
  return (await daemonApi('/api/v1/integrations')).items.find((i) => i.name === name);
}

/** The status bar text the daemon's current counts give. */
async function expectedStatusBar() {
  const items = (await daemonApi('/api/v1/integrations')).items;
  const healthy = items.filter((i) => i.status === 'healthy').length;
  const failed = items.filter((i) => ['unhealthy', 'error'].includes(i.status)).length;
  const degraded = items.filter((i) => i.status === 'degraded').length;
  return `Stella ✓ ${healthy} ✗ ${failed}${degraded ? ` ⚠ ${degraded}` : ''}`;
}

const fakeControl = async (p, body) =>
  (await fetch(`${state.fakeUrl}/_control${p}`, { method: body === undefined ? 'GET' : 'POST', body: body === undefined ? undefined : JSON.stringify(body), signal: AbortSignal.timeout(3000) })).json();

// ---------- workbench helpers ----------
const statusItem = (page) => page.locator('.statusbar-item', { hasText: /^Stella/ }).first();

async function statusText(page) {
  return ((await statusItem(page).textContent({ timeout: 2000 })) ?? '').trim();
}

async function runCommand(page, title) {
  await page.keyboard.press('F1');
  const input = page.locator('.quick-input-widget input');
  await input.waitFor({ state: 'visible', timeout: 10_000 });
  await input.fill(`>${title}`);
  const row = page.locator('.quick-input-list .monaco-list-row', { hasText: title }).first();
  await row.waitFor({ state: 'visible', timeout: 10_000 });
  await page.keyboard.press('Enter');
}

/** Types into the quick input; with `title`, first waits for the input box/pick carrying that title. */
async function answerInput(page, text, title) {
  if (title) await page.locator('.quick-input-widget .quick-input-title', { hasText: title }).first().waitFor({ state: 'visible', timeout: 20_000 });
  const input = page.locator('.quick-input-widget input');
  await input.waitFor({ state: 'visible', timeout: 15_000 });
  await input.fill(text);
  await page.keyboard.press('Enter');
  await page.waitForTimeout(300);
}

function treeRow(page, text) {
  return page.locator('.monaco-list-row', { hasText: text }).first();
}

// ---------- setup ----------
before(async () => {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  for (const f of fs.readdirSync(ARTIFACTS)) if (f.endsWith('.png')) fs.rmSync(path.join(ARTIFACTS, f));
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'stella-e2e-'));
  state.tmp = tmp;
  assert.ok(fs.existsSync(VSIX), `vsix not found: ${VSIX}`);
  assert.ok(fs.existsSync(DAEMON), `daemon binary not found: ${DAEMON} (set STELLA_DAEMON_BIN)`);
  assert.ok(fs.existsSync(CHROMIUM), `chromium not found: ${CHROMIUM}`);

  // Fake Orchestrator + Authority: short-lived tokens (refresh happens during the run), device codes auto-approved.
  const fakePort = await freePort();
  state.fakeUrl = `http://127.0.0.1:${fakePort}`;
  state.fake = start('fake-server', process.execPath, [path.join(REPO_EXT, 'contracts', 'fake-server', 'server.mjs'), '--port', String(fakePort), '--token-ttl', '20']);
  await waitFor('fake server', () => httpOk(`${state.fakeUrl}/_control/health`), 15_000);

  // The real daemon with one API key (only its SHA-256 in the config) and a fresh SQLite database.
  const daemonPort = await freePort();
  state.daemonUrl = `http://127.0.0.1:${daemonPort}`;
  const db = `sqlite://${path.join(tmp, 'db.sqlite')}?mode=rwc`;
  const sha = crypto.createHash('sha256').update(API_KEY).digest('hex');
  const cfg = path.join(tmp, 'daemon.toml');
  fs.writeFileSync(
    cfg,
    // One failed check makes an integration unhealthy, one good check healthy again: the test changes a status
    // with one on-demand health check.
    `[http]\nlisten = "127.0.0.1:${daemonPort}"\n[database]\nurl = "${db}"\n[health]\nunhealthy_after = 1\nhealthy_after = 1\n[[auth.api_keys]]\nid = "ide-e2e"\ntenant = "default"\nscopes = ["integrations:read", "integrations:write"]\nsha256 = "${sha}"\n`,
  );
  const daemonEnv = { ...process.env, STELLA_CONFIG: cfg, DATABASE_URL: db, STELLA_HTTP_LISTEN: `127.0.0.1:${daemonPort}` };
  state.daemonArgs = [DAEMON, [], { env: daemonEnv, cwd: tmp }];
  state.daemon = start('daemon', ...state.daemonArgs);
  await waitFor('daemon /healthz', () => httpOk(`${state.daemonUrl}/healthz`), 60_000);
  for (const [name, behaviour] of [
    ['e2e-registry', 'healthy'],
    ['e2e-gitlab', 'healthy'],
    ['e2e-broken', 'unhealthy'],
    ['e2e-target', 'healthy'],
  ])
    await daemonApi('/api/v1/integrations', { method: 'POST', body: JSON.stringify({ type: 'inmemory', name, config: { behaviour } }) });
  state.proxy = await startProxy(daemonPort);

  // Workspace with stella.yaml (the shared fixture) and settings pointing at the two backends.
  const ws = path.join(tmp, 'workspace');
  fs.mkdirSync(path.join(ws, '.vscode'), { recursive: true });
  fs.copyFileSync(path.join(REPO_EXT, 'fixtures', 'stella-yaml', 'valid-full', 'stella.yaml'), path.join(ws, 'stella.yaml'));
  // The fixture's `server:` would override the setting; point it at the fake.
  // The project depends on e2e-target: the extension follows it (notifications when it goes unhealthy).
  const yaml = fs.readFileSync(path.join(ws, 'stella.yaml'), 'utf8').replace(/^server: .*$/m, `server: ${state.fakeUrl}`) + 'integrations:\n  - e2e-target\n';
  fs.writeFileSync(path.join(ws, 'stella.yaml'), yaml);
  fs.writeFileSync(
    path.join(ws, '.vscode', 'settings.json'),
    JSON.stringify({ 'stellaops.serverUrl': state.fakeUrl, 'stellaops.integrationsUrl': state.proxy.url, 'stellaops.auth.flow': 'device_code', 'stellaops.refreshIntervalSeconds': 5, 'stellaops.requestTimeoutMs': 2000 }, null, 2),
  );
  state.ws = ws;

  // code-server: fresh user data and extensions dirs, the .vsix installed.
  const userData = path.join(tmp, 'cs-user');
  const extDir = path.join(tmp, 'cs-extensions');
  fs.mkdirSync(path.join(userData, 'User'), { recursive: true });
  fs.writeFileSync(
    path.join(userData, 'User', 'settings.json'),
    JSON.stringify({
      'workbench.startupEditor': 'none',
      'security.workspace.trust.enabled': false,
      'telemetry.telemetryLevel': 'off',
      'extensions.autoCheckUpdates': false,
      'extensions.autoUpdate': false,
      'update.mode': 'none',
      'workbench.tips.enabled': false,
      'workbench.welcomePage.walkthroughs.openOnInstall': false,
      'editor.codeLens': true,
      'chat.commandCenter.enabled': false,
    }),
  );
  const csEnv = { ...process.env, HOME: path.join(tmp, 'home') };
  fs.mkdirSync(csEnv.HOME, { recursive: true });
  const inst = spawnSync(CODE_SERVER, ['--user-data-dir', userData, '--extensions-dir', extDir, '--install-extension', VSIX, '--force'], { env: csEnv, encoding: 'utf8', timeout: 120_000 });
  log(`install-extension: ${(inst.stdout + inst.stderr).trim().split('\n').slice(-2).join(' | ')}`);
  assert.equal(inst.status, 0, `code-server --install-extension failed: ${inst.stderr}`);
  const csPort = await freePort();
  state.csUrl = `http://127.0.0.1:${csPort}`;
  state.cs = start('code-server', CODE_SERVER, ['--auth', 'none', '--bind-addr', `127.0.0.1:${csPort}`, '--user-data-dir', userData, '--extensions-dir', extDir, '--disable-telemetry', '--disable-update-check', '--disable-workspace-trust', '--disable-getting-started-override', '--ignore-last-opened', ws], { env: csEnv });
  await waitFor('code-server /healthz', () => httpOk(`${state.csUrl}/healthz`), 90_000);

  state.context = await chromium.launchPersistentContext(path.join(tmp, 'chromium-profile'), {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1400, height: 900 },
  });
  state.page = state.context.pages()[0] ?? (await state.context.newPage());
  state.page.setDefaultTimeout(15_000);
});

// If the runner is killed (ci.sh's `timeout`), do not leave code-server, the daemon or the fake behind.
for (const sig of ['SIGTERM', 'SIGINT']) {
  process.once(sig, () => {
    for (const { p } of procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    process.exit(1);
  });
}

after(async () => {
  try {
    await state.context?.close();
  } catch (e) {
    log(`closing chromium: ${e.message}`);
  }
  for (const { p } of procs.reverse()) await stop(p);
  await state.proxy?.close();
  if (state.tmp && !process.env.E2E_KEEP_TMP) fs.rmSync(state.tmp, { recursive: true, force: true });
});

// ---------- tests (run in order) ----------
/** A test that leaves a FAILED-*.png screenshot behind when it fails. */
function step(name, fn) {
  test(name, async () => {
    try {
      await fn();
    } catch (e) {
      try {
        if (state.page) await screenshot(state.page, `FAILED-${name.replace(/[^a-z0-9]+/gi, '-').slice(0, 60)}`);
      } catch {
        /* best effort */
      }
      throw e;
    }
  });
}

step('the workbench loads and the extension activates (status bar: signed out)', async () => {
  const page = state.page;
  await page.goto(`${state.csUrl}/?folder=${encodeURIComponent(state.ws)}`, { waitUntil: 'domcontentloaded', timeout: 60_000 });
  await page.locator('.monaco-workbench').waitFor({ timeout: 90_000 });
  await waitFor('Stella status bar item', async () => /^Stella: signed out/.test(await statusText(page)), 90_000, 500);
  await screenshot(page, 'activated-signed-out');
});

step('sign in (device code against the fake Authority) and store the daemon API key', async () => {
  const page = state.page;
  await runCommand(page, 'Stella Ops: Sign In');
  // Device flow: the dialog shows the code; its button opens the verification page in a new tab, where the
  // user approves; the extension's polling then gets the token and asks for the Integrations API key.
  const open = page.locator('.monaco-dialog-box .monaco-button', { hasText: 'Copy & Open Browser' }).first();
  await open.waitFor({ timeout: 20_000 });
  const code = /code ([A-Z]{4}-[A-Z]{4})/.exec((await page.locator('.monaco-dialog-box').first().textContent()) ?? '')?.[1];
  assert.ok(code, 'the dialog shows the user code');
  assert.deepEqual((await fakeControl('/state')).pendingDeviceCodes, [code]);
  await screenshot(page, 'device-code');
  const [tab] = await Promise.all([state.context.waitForEvent('page', { timeout: 20_000 }), open.click()]);
  const fakePort = new URL(state.fakeUrl).port;
  await waitFor('verification page', async () => [`${state.fakeUrl}/device?user_code=`, `${state.csUrl}/proxy/${fakePort}/device?user_code=`].some((w) => tab.url().startsWith(w)), 15_000);
  log(`verification page: ${tab.url()}`);
  assert.equal(await tab.locator('input[name=user_code]').inputValue({ timeout: 15_000 }), code);
  await tab.locator('button[value=approve]').click();
  await tab.getByText('Done').waitFor({ timeout: 10_000 });
  await tab.close();
  await answerInput(page, API_KEY, 'Integrations API key');
  await waitFor('connected status bar', async () => /^Stella ✓ \d+ ✗ \d+/.test(await statusText(page)), 30_000, 500);
  const st = await fakeControl('/state');
  assert.ok(st.counters.tokensIssued >= 1, 'a token was issued by the fake Authority');
  await screenshot(page, 'signed-in');
});

step('status bar shows the integrations health from the daemon; clicking it opens the Integrations view', async () => {
  const page = state.page;
  // The daemon's health engine may change statuses meanwhile: compare against a fresh read each time.
  let items = [];
  let expected = '';
  await waitFor(
    'status bar counts equal to the daemon\'s',
    async () => {
      items = (await daemonApi('/api/v1/integrations')).items;
      const healthy = items.filter((i) => i.status === 'healthy').length;
      const failed = items.filter((i) => ['unhealthy', 'error'].includes(i.status)).length;
      const degraded = items.filter((i) => i.status === 'degraded').length;
      expected = `Stella ✓ ${healthy} ✗ ${failed}${degraded ? ` ⚠ ${degraded}` : ''}`;
      return (await statusText(page)) === expected;
    },
    30_000,
    500,
  );
  log(`status bar: ${expected}`);
  assert.equal(items.length, 4);
  await statusItem(page).click();
  for (const i of items) await treeRow(page, i.name).waitFor({ timeout: 15_000 });
  const row = treeRow(page, 'e2e-broken');
  assert.match((await row.textContent()) ?? '', /inmemory · \w+/);
  await screenshot(page, 'integrations-view');
});

step('"Open Integrations API (Swagger UI)" opens the daemon\'s /docs', async () => {
  const page = state.page;
  const [tab] = await Promise.all([state.context.waitForEvent('page', { timeout: 20_000 }), runCommand(page, 'Stella Ops: Open Integrations API (Swagger UI)')]);
  // Desktop VS Code opens the daemon directly; code-server forwards loopback ports through its /proxy/<port>/.
  // (The extension's daemon URL is the recording proxy's.)
  const wanted = [`${state.proxy.url}/docs`, `${state.csUrl}/proxy/${state.proxy.port}/docs`];
  await waitFor(`a tab on ${wanted.join(' or ')}`, async () => wanted.some((w) => tab.url().startsWith(w)), 15_000, 250);
  log(`Swagger UI tab: ${tab.url()}`);
  await tab.locator('.swagger-ui .opblock', { hasText: '/api/v1/integrations' }).first().waitFor({ timeout: 15_000 }); // the spec loaded
  await tab.waitForLoadState('domcontentloaded', { timeout: 15_000 });
  await screenshot(tab, 'swagger-ui');
  await tab.close();
});

step('Releases and Environments views show the fake Orchestrator data', async () => {
  const page = state.page;
  await runCommand(page, 'Focus on Releases View');
  await treeRow(page, 'myapp v1.5.0').waitFor({ timeout: 20_000 });
  await treeRow(page, 'myapp v1.6.0-rc.1').waitFor();
  await runCommand(page, 'Focus on Environments View');
  await treeRow(page, 'Production').waitFor({ timeout: 20_000 });
  assert.match((await treeRow(page, 'Staging').textContent()) ?? '', /myapp v1\.4\.2/);
  await screenshot(page, 'releases-environments');
});

step('CodeLens in stella.yaml: "Promote v1.5.0 to stage…" triggers a promotion on the Orchestrator', async () => {
  const page = state.page;
  await page.keyboard.press('Control+P');
  const input = page.locator('.quick-input-widget input');
  await input.waitFor({ state: 'visible', timeout: 10_000 });
  await input.fill('stella.yaml');
  await page.locator('.quick-input-list .monaco-list-row', { hasText: 'stella.yaml' }).first().waitFor({ timeout: 15_000 });
  await page.keyboard.press('Enter');
  await page.locator('.monaco-editor .view-lines', { hasText: 'environments:' }).first().waitFor({ timeout: 15_000 });
  const lens = page.locator('.contentWidgets .codelens-decoration a', { hasText: 'Promote v1.5.0 to stage…' }).first();
  await lens.waitFor({ timeout: 30_000 });
  await page.locator('.codelens-decoration a', { hasText: 'deployed v1.4.2 to stage' }).first().waitFor();
  await screenshot(page, 'codelens');
  await lens.click();
  await answerInput(page, 'e2e promotion from a CodeLens', 'Promote myapp v1.5.0 to stage'); // reason
  await answerInput(page, 'CHG-42', 'Change ticket'); // ticket
  const confirm = page.locator('.monaco-dialog-box .monaco-button', { hasText: 'Promote' }).first();
  await confirm.waitFor({ timeout: 10_000 });
  await screenshot(page, 'promote-confirmation');
  await confirm.click();
  const promo = await waitFor(
    'promotion on the fake Orchestrator',
    async () => (await fakeControl('/state')).promotions.find((p) => p.reason === 'e2e promotion from a CodeLens'),
    20_000,
  );
  assert.equal(promo.releaseId, 'rel-myapp-1.5.0');
  assert.equal(promo.targetEnvironmentId, 'env-stage');
  assert.equal(promo.ticket, 'CHG-42');
  await page.locator('.codelens-decoration a', { hasText: 'deployed v1.5.0 to stage' }).first().waitFor({ timeout: 30_000 });
  await screenshot(page, 'promoted');
});

step('run a health check on an integration (result or 501 shown as a notice)', async () => {
  const page = state.page;
  await runCommand(page, 'Stella Ops: Run Health Check');
  await answerInput(page, 'e2e-broken', 'Run a health check on');
  const toast = page.locator('.notifications-toasts .notification-list-item', { hasText: /health checks are not available|e2e-broken: / }).first();
  await toast.waitFor({ timeout: 20_000 });
  log(`health check notice: ${(await toast.textContent())?.trim()}`);
  await screenshot(page, 'health-check');
});

step('live: an integration made unhealthy through the daemon\'s API changes the view and the status bar within 2 s, without polling, with one notification', async () => {
  const page = state.page;
  await waitFor('the extension\'s event stream', () => state.proxy.openStream(), 30_000);
  // New integrations get their first scheduled check within the interval (5 min): check e2e-target now.
  const target = await integrationByName('e2e-target');
  if (target.status !== 'healthy') assert.equal((await daemonApi(`/api/v1/integrations/${target.id}/health-check`, { method: 'POST' })).status, 'healthy');
  await runCommand(page, 'Stella Ops: Show Integrations');
  await waitFor('e2e-target healthy in the view', async () => /inmemory · healthy · followed/.test((await treeRow(page, 'e2e-target').textContent()) ?? ''), 15_000);
  const toasts = page.locator('.notifications-toasts .notification-list-item', { hasText: 'e2e-target is unhealthy' });
  assert.equal(await toasts.count(), 0);

  await daemonApi(`/api/v1/integrations/${target.id}`, { method: 'PUT', body: JSON.stringify({ name: 'e2e-target', config: { behaviour: 'unhealthy' } }) });
  const check = await daemonApi(`/api/v1/integrations/${target.id}/health-check`, { method: 'POST' });
  assert.equal(check.status, 'unhealthy', 'the hub decided: unhealthy');
  const t0 = Date.now();
  await waitFor('the view shows e2e-target unhealthy', async () => /inmemory · unhealthy/.test((await treeRow(page, 'e2e-target').textContent({ timeout: 500 })) ?? ''), 2000, 50);
  const want = await expectedStatusBar();
  await waitFor(`status bar "${want}"`, async () => (await statusText(page)) === want, Math.max(100, 2000 - (Date.now() - t0)), 50);
  const elapsed = Date.now() - t0;
  log(`view and status bar updated ${elapsed} ms after the health check answered (${want})`);
  assert.ok(elapsed <= 2000, `took ${elapsed} ms`);
  assert.deepEqual(state.proxy.st.listReads.filter((t) => t >= t0), [], 'no list read: the change came over the event stream');
  const ev = state.proxy.openStream().events.find((e) => e.integrationId === target.id && e.status === 'unhealthy');
  assert.ok(ev, 'the unhealthy event went through the stream');

  await toasts.first().waitFor({ timeout: 2000 });
  const toast = toasts.first();
  assert.match((await toast.textContent()) ?? '', /e2e-target is unhealthy: provider_degraded/);
  await toast.locator('.monaco-button', { hasText: 'Run health check' }).waitFor({ timeout: 2000 });
  await toast.locator('.monaco-button', { hasText: 'Open in Swagger UI' }).waitFor({ timeout: 2000 });
  await screenshot(page, 'live-unhealthy');
  // One notification: none more over a few seconds (a poll interval, further checks and events).
  let most = 0;
  for (const end = Date.now() + 6000; Date.now() < end; await page.waitForTimeout(250)) most = Math.max(most, await toasts.count());
  assert.equal(most, 1, `notifications about e2e-target: ${most}`);
  // Its action runs the health check on that integration.
  await toast.locator('.monaco-button', { hasText: 'Run health check' }).click();
  await page.locator('.notifications-toasts .notification-list-item', { hasText: /e2e-target: unhealthy/ }).first().waitFor({ timeout: 15_000 });
  await screenshot(page, 'live-health-check-action');
});

step('Deployments view shows the fake Orchestrator\'s deployments', async () => {
  const page = state.page;
  await runCommand(page, 'Focus on Deployments View');
  const promotions = (await fakeControl('/state')).promotions;
  assert.ok(promotions.length >= 2, 'the seeded promotion and the CodeLens one');
  for (const p of promotions) {
    const row = treeRow(page, `${p.releaseName} → ${p.targetEnvironmentName}`);
    await row.waitFor({ timeout: 20_000 });
    await waitFor(`${p.id} shows ${p.status}`, async () => ((await row.textContent()) ?? '').includes(`${p.status.replace(/_/g, ' ')} · ${p.requestedAt.slice(0, 10)}`), 15_000);
  }
  await screenshot(page, 'deployments');
});

step('backends down: status bar and views show offline with the last known data, one notice per backend', async () => {
  const page = state.page;
  await fakeControl('/down', { down: true, mode: 'reset' });
  await stop(state.daemon);
  await runCommand(page, 'Stella Ops: Refresh');
  await waitFor('offline status bar', async () => /^Stella ⚠ offline/.test(await statusText(page)), 40_000, 500);
  await runCommand(page, 'Stella Ops: Show Integrations');
  await treeRow(page, 'e2e-registry').waitFor({ timeout: 10_000 });
  assert.match((await treeRow(page, 'e2e-registry').textContent()) ?? '', /\(stale\)/);
  await page.locator('.monaco-list-row', { hasText: /Offline — showing data from/ }).first().waitFor({ timeout: 10_000 });
  const offlineToasts = page.locator('.notifications-toasts .notification-list-item', { hasText: 'is unreachable' });
  await offlineToasts.first().waitFor({ timeout: 20_000 });
  // Several background refreshes (every 5 s here) later there is still one notice per backend, not one per failure.
  await page.waitForTimeout(12_000);
  const notices = await offlineToasts.count();
  assert.ok(notices <= 2, `expected at most one offline notice per backend, saw ${notices}`);
  await screenshot(page, 'offline');
});

step('backends back: the extension reconnects by itself', async () => {
  const page = state.page;
  await fakeControl('/down', { down: false });
  state.daemon = start('daemon-restarted', ...state.daemonArgs);
  await waitFor('daemon back', () => httpOk(`${state.daemonUrl}/healthz`), 60_000);
  await runCommand(page, 'Stella Ops: Refresh');
  await waitFor('connected again', async () => /^Stella ✓ \d+ ✗ \d+/.test(await statusText(page)), 40_000, 500);
  const st = await fakeControl('/state');
  log(`fake authority counters: ${JSON.stringify(st.counters)}`);
  // Tokens live 20 s here and the run takes minutes: they were refreshed before expiry, never used expired.
  assert.ok(st.counters.refreshes >= 2, `refreshes: ${st.counters.refreshes}`);
  assert.equal(st.counters.expiredRejected, 0, 'no request was made with an expired token');
  const promoteTokens = (await (await fetch(`${state.fakeUrl}/_control/requests`)).json()).filter((r) => r.path === '/token').map((r) => r.grantType);
  assert.ok(promoteTokens.every((g) => g === 'refresh_token' || g === 'urn:ietf:params:oauth:grant-type:device_code'), promoteTokens.join(','));
  await screenshot(page, 'reconnected');
});

step('daemon restarted mid-stream: the extension resumes with Last-Event-ID, receives what it missed, the view catches up', async () => {
  const page = state.page;
  const before = await waitFor('a live event stream', () => state.proxy.openStream(), 60_000);
  const position = state.proxy.lastDelivered();
  log(`stream open (resumed from ${before.lastEventId ?? '-'}); last event delivered: ${position}`);
  assert.ok(position > 0, 'events were delivered before');
  const target = await integrationByName('e2e-target');
  assert.equal(target.status, 'unhealthy');

  // The daemon goes away mid-stream; while the extension is cut off, e2e-target recovers.
  state.proxy.st.block = true;
  await stop(state.daemon);
  await waitFor('the stream dropped', () => !before.open, 10_000);
  state.daemon = start('daemon-restarted-mid-stream', ...state.daemonArgs);
  await waitFor('daemon back', () => httpOk(`${state.daemonUrl}/healthz`), 60_000);
  await daemonApi(`/api/v1/integrations/${target.id}`, { method: 'PUT', body: JSON.stringify({ name: 'e2e-target', config: { behaviour: 'healthy' } }) });
  assert.equal((await daemonApi(`/api/v1/integrations/${target.id}/health-check`, { method: 'POST' })).status, 'healthy');
  const missed = await waitFor('the recovery in the daemon\'s log', async () => {
    const evs = await daemonEventsAfter(position);
    return evs.some((e) => e.integrationId === target.id && e.status === 'healthy') && evs;
  }, 10_000, 500);
  log(`events the extension missed: ${missed.map((e) => `${e.id} ${e.type.split('.').pop()} ${e.status}`).join(', ')}`);
  await screenshot(page, 'cut-off');

  const unblocked = Date.now();
  state.proxy.st.block = false;
  const resumed = await waitFor(
    'the extension to resume the stream',
    () => state.proxy.st.streams.find((r) => r.at >= unblocked && r.status === 200),
    45_000,
    250,
  );
  log(`resumed after ${Date.now() - unblocked} ms with Last-Event-ID ${resumed.lastEventId}`);
  assert.equal(resumed.lastEventId, String(position), 'resumed from the last event it had');
  await waitFor('the missed events delivered', () => missed.every((m) => resumed.ids.includes(m.id)), 10_000, 100);
  assert.deepEqual(resumed.ids.slice(0, missed.length), missed.map((m) => m.id), 'exactly the missed events, in order, first');
  await waitFor('the view shows e2e-target healthy again', async () => /inmemory · healthy/.test((await treeRow(page, 'e2e-target').textContent({ timeout: 500 })) ?? ''), 15_000, 100);
  const want = await expectedStatusBar();
  await waitFor(`status bar "${want}"`, async () => (await statusText(page)) === want, 15_000, 100);
  await screenshot(page, 'resumed');
});
