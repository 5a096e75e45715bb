#!/usr/bin/env node
// Fake Stella Ops Orchestrator + Authority for IDE extension tests.
// Implements extensions/contracts/orchestrator-authority.openapi.yaml. Plain Node (>= 18), no dependencies.
// Usage: node server.mjs [--port 8787] [--seed seed.json] [--token-ttl 120] [--auto-approve-device] [--quiet]
// Loopback only. See ../README.md for the control endpoints.
import http from 'node:http';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';
const SUNSET = 'Fri, 01 May 2026 00:00:00 GMT';

export const DEFAULT_CONFIG = Object.freeze({
  tokenTtlSeconds: 120,
  refreshTokenTtlSeconds: 3600,
  down: false,
  downMode: '503', // '503' | 'reset' | 'hang'
  envelope: 'standard', // 'standard' | 'bare' | 'data-meta'
  latencyMs: 0,
  autoApproveDevice: false,
  deviceIntervalSeconds: 1,
  deviceExpiresSeconds: 300,
  discovery: true,
  tokenEndpoint: 'both', // 'both' | 'canonical-only' | 'legacy-only'
  legacyToken: 'deprecated', // 'deprecated' | 'gone'
  promotionDelayMs: 300,
  failNext: null, // { pathPrefix?: string, status: number, count: number, retryAfter?: number }
});

function parseArgs(argv) {
  const out = { port: 8787, seed: path.join(HERE, 'seed.json'), quiet: false, overrides: {} };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`missing value for ${a}`);
      return argv[++i];
    };
    if (a === '--port') out.port = Number(next());
    else if (a === '--seed') out.seed = path.resolve(next());
    else if (a === '--token-ttl') out.overrides.tokenTtlSeconds = Number(next());
    else if (a === '--auto-approve-device') out.overrides.autoApproveDevice = true;
    else if (a === '--envelope') out.overrides.envelope = next();
    else if (a === '--quiet') out.quiet = true;
    else if (a === '--help' || a === '-h') {
      console.log('node server.mjs [--port N] [--seed file] [--token-ttl S] [--auto-approve-device] [--envelope standard|bare|data-meta] [--quiet]');
      process.exit(0);
    } else throw new Error(`unknown argument ${a}`);
  }
  if (!Number.isInteger(out.port) || out.port < 0 || out.port > 65535) throw new Error('bad --port');
  return out;
}

const rand = (n = 16) => crypto.randomBytes(n).toString('hex');
const clone = (o) => JSON.parse(JSON.stringify(o));
const now = () => Date.now();
const iso = (ms = now()) => new Date(ms).toISOString();

function userCode() {
  const A = 'BCDFGHJKLMNPQRSTVWXZ';
  let s = '';
  for (let i = 0; i < 8; i++) s += A[crypto.randomInt(A.length)];
  return `${s.slice(0, 4)}-${s.slice(4)}`;
}

export function createFakeServer(options = {}) {
  const seedPath = options.seed ?? path.join(HERE, 'seed.json');
  const seed = JSON.parse(fs.readFileSync(seedPath, 'utf8'));
  const initialOverrides = { ...(options.overrides ?? {}) };
  const quiet = options.quiet ?? true;
  let state;
  const timers = new Set();
  const sockets = new Set();
  const hanging = new Set();

  function reset() {
    for (const t of timers) clearTimeout(t);
    timers.clear();
    state = {
      config: { ...DEFAULT_CONFIG, ...initialOverrides },
      releases: clone(seed.releases),
      environments: clone(seed.environments),
      promotions: clone(seed.promotions ?? []),
      clients: clone(seed.clients),
      accessTokens: new Map(),
      refreshTokens: new Map(),
      deviceCodes: new Map(),
      requests: [],
      promotionSeq: (seed.promotions ?? []).length,
      counters: { tokensIssued: 0, refreshes: 0, expiredRejected: 0 },
    };
  }
  reset();

  const log = (...a) => {
    if (!quiet) console.log('[fake]', ...a);
  };

  function send(res, status, body, headers = {}) {
    const data = body === undefined ? '' : typeof body === 'string' ? body : JSON.stringify(body);
    const h = { 'Cache-Control': 'no-store', ...headers };
    if (body !== undefined && !h['Content-Type']) h['Content-Type'] = 'application/json';
    res.writeHead(status, h);
    res.end(data);
  }
  const meta = (extra = {}) => ({ requestId: rand(8), timestamp: iso(), ...extra });
  function apiError(res, status, code, message, extra = {}, headers = {}) {
    send(res, status, { success: false, error: { code, message, ...extra }, meta: meta() }, headers);
  }
  function sendList(res, items, page = 1, pageSize = 50) {
    const total = items.length;
    const slice = items.slice((page - 1) * pageSize, page * pageSize);
    const env = state.config.envelope;
    if (env === 'bare') return send(res, 200, slice);
    if (env === 'data-meta') return send(res, 200, { data: slice, meta: { page, totalCount: total } });
    const totalPages = Math.max(1, Math.ceil(total / pageSize));
    return send(res, 200, {
      success: true,
      data: slice,
      meta: meta({ pagination: { page, pageSize, totalItems: total, totalPages, hasNext: page < totalPages, hasPrevious: page > 1 } }),
    });
  }
  function sendOne(res, status, item) {
    const env = state.config.envelope;
    if (env === 'bare') return send(res, status, item);
    if (env === 'data-meta') return send(res, status, { data: item, meta: {} });
    return send(res, status, { success: true, data: item, meta: meta() });
  }
  const oauthError = (res, status, error, description, headers = {}) =>
    send(res, status, { error, ...(description ? { error_description: description } : {}) }, headers);

  async function readBody(req) {
    const chunks = [];
    let size = 0;
    for await (const c of req) {
      size += c.length;
      if (size > 1_000_000) throw new Error('body too large');
      chunks.push(c);
    }
    return Buffer.concat(chunks).toString('utf8');
  }
  function parseForm(text) {
    return Object.fromEntries(new URLSearchParams(text));
  }
  function parseJson(text) {
    if (!text) return {};
    return JSON.parse(text);
  }

  function baseUrl(req) {
    return `http://${req.headers.host ?? `127.0.0.1:${server.address()?.port}`}`;
  }

  // ---------------- Authority ----------------
  function issueTokens({ clientId, scope, sub, tenant, withRefresh }) {
    const ttl = state.config.tokenTtlSeconds;
    const at = `fake_at_${rand()}`;
    state.accessTokens.set(at, { clientId, scope, sub, tenant, exp: now() + ttl * 1000 });
    state.counters.tokensIssued++;
    const body = { access_token: at, token_type: 'Bearer', expires_in: ttl, scope };
    if (withRefresh) {
      const rt = `fake_rt_${rand()}`;
      state.refreshTokens.set(rt, { clientId, sub, tenant, exp: now() + state.config.refreshTokenTtlSeconds * 1000 });
      body.refresh_token = rt;
    }
    return body;
  }

  function authenticateClient(req, form) {
    let clientId = form.client_id;
    let secret = form.client_secret;
    const auth = req.headers.authorization;
    if (auth && auth.startsWith('Basic ')) {
      const dec = Buffer.from(auth.slice(6), 'base64').toString('utf8');
      const i = dec.indexOf(':');
      clientId = decodeURIComponent(dec.slice(0, i));
      secret = decodeURIComponent(dec.slice(i + 1));
    }
    const client = state.clients.find((c) => c.clientId === clientId);
    if (!client) return { error: 'invalid_client' };
    if (!client.public && client.clientSecret !== secret) return { error: 'invalid_client' };
    return { client };
  }

  function checkScope(client, form) {
    const requested = (form.scope ?? 'orch:read').split(/\s+/).filter(Boolean);
    for (const s of requested) if (!client.scopes.includes(s)) return { error: 'invalid_scope', description: `scope ${s} not allowed` };
    if (requested.includes('orch:operate') && (!form.operator_reason || !form.operator_ticket))
      return { error: 'invalid_request', description: 'orch:operate requires operator_reason and operator_ticket' };
    return { scope: requested.join(' ') };
  }

  async function handleToken(req, res, legacy) {
    const extra = legacy
      ? { Deprecation: 'true', Sunset: SUNSET, Warning: '299 - "Deprecated endpoint; use /token"', Link: '</token>; rel="successor-version"' }
      : {};
    if (legacy && state.config.legacyToken === 'gone')
      return oauthError(res, 410, 'invalid_request', 'legacy endpoint removed; use /token', extra);
    if (!legacy && state.config.tokenEndpoint === 'legacy-only') return send(res, 404, { error: 'not_found' });
    if (legacy && state.config.tokenEndpoint === 'canonical-only') return send(res, 404, { error: 'not_found' });
    const form = parseForm(await readBody(req));
    req._grant = form.grant_type;
    const { client, error } = authenticateClient(req, form);
    if (error) return oauthError(res, 401, error, 'unknown client or bad secret', extra);
    if (!client.grants.includes(form.grant_type))
      return oauthError(res, 400, 'unsupported_grant_type', `grant ${form.grant_type} not allowed for ${client.clientId}`, extra);
    const sc = checkScope(client, form);
    if (sc.error) return oauthError(res, 400, sc.error, sc.description, extra);
    const tenant = seed.tenant;
    if (form.grant_type === 'client_credentials') {
      return send(res, 200, issueTokens({ clientId: client.clientId, scope: sc.scope, sub: client.clientId, tenant, withRefresh: false }), extra);
    }
    if (form.grant_type === 'refresh_token') {
      const rt = state.refreshTokens.get(form.refresh_token ?? '');
      if (!rt || rt.clientId !== client.clientId || rt.exp < now()) return oauthError(res, 400, 'invalid_grant', 'refresh token unknown, used or expired', extra);
      state.refreshTokens.delete(form.refresh_token); // rotation: single use
      state.counters.refreshes++;
      return send(res, 200, issueTokens({ clientId: client.clientId, scope: sc.scope, sub: rt.sub, tenant: rt.tenant, withRefresh: true }), extra);
    }
    if (form.grant_type === DEVICE_GRANT) {
      const dc = state.deviceCodes.get(form.device_code ?? '');
      if (!dc || dc.clientId !== client.clientId) return oauthError(res, 400, 'invalid_grant', 'unknown device_code', extra);
      if (dc.exp < now()) return oauthError(res, 400, 'expired_token', 'device code expired', extra);
      if (dc.status === 'pending' && state.config.autoApproveDevice) dc.status = 'approved';
      if (dc.status === 'pending') return oauthError(res, 400, 'authorization_pending', 'waiting for the user', extra);
      if (dc.status === 'denied') return oauthError(res, 400, 'access_denied', 'user denied the request', extra);
      if (dc.status === 'used') return oauthError(res, 400, 'invalid_grant', 'device code already used', extra);
      dc.status = 'used';
      return send(res, 200, issueTokens({ clientId: client.clientId, scope: dc.scope, sub: client.deviceUser ?? 'dev', tenant, withRefresh: true }), extra);
    }
    return oauthError(res, 400, 'unsupported_grant_type', undefined, extra);
  }

  async function handleDeviceAuthorization(req, res) {
    const form = parseForm(await readBody(req));
    const client = state.clients.find((c) => c.clientId === form.client_id);
    if (!client || !client.grants.includes(DEVICE_GRANT)) return oauthError(res, 400, 'unauthorized_client', 'client may not use the device flow');
    const requested = (form.scope ?? 'orch:read').split(/\s+/).filter(Boolean);
    for (const s of requested) if (!client.scopes.includes(s) || s === 'orch:operate') return oauthError(res, 400, 'invalid_scope', `scope ${s} not available for device flow`);
    const device_code = `fake_dc_${rand()}`;
    const code = userCode();
    const cfg = state.config;
    state.deviceCodes.set(device_code, { clientId: client.clientId, userCode: code, scope: requested.join(' '), status: 'pending', exp: now() + cfg.deviceExpiresSeconds * 1000 });
    const b = baseUrl(req);
    send(res, 200, {
      device_code,
      user_code: code,
      verification_uri: `${b}/device`,
      verification_uri_complete: `${b}/device?user_code=${encodeURIComponent(code)}`,
      expires_in: cfg.deviceExpiresSeconds,
      interval: cfg.deviceIntervalSeconds,
    });
  }

  function setDeviceStatus(code, status) {
    let n = 0;
    for (const dc of state.deviceCodes.values()) {
      if (dc.status !== 'pending') continue;
      if (code && dc.userCode !== code) continue;
      dc.status = status;
      n++;
    }
    return n;
  }

  // ---------------- Orchestrator ----------------
  function bearer(req, res, needScope) {
    const h = req.headers.authorization ?? '';
    const m = /^Bearer\s+(.+)$/i.exec(h);
    const tok = m ? state.accessTokens.get(m[1].trim()) : undefined;
    if (!tok || tok.exp < now()) {
      if (tok) state.counters.expiredRejected++;
      apiError(res, 401, 'UNAUTHORIZED', tok ? 'access token expired' : 'missing or unknown access token', {}, { 'WWW-Authenticate': `Bearer error="invalid_token"` });
      return null;
    }
    if (!tok.scope.split(' ').includes(needScope)) {
      apiError(res, 403, 'FORBIDDEN', `scope ${needScope} required`);
      return null;
    }
    return tok;
  }

  function envsSorted() {
    return [...state.environments].sort((a, b) => a.orderIndex - b.orderIndex);
  }

  async function createPromotion(req, res, tok) {
    let body;
    try {
      body = parseJson(await readBody(req));
    } catch {
      return apiError(res, 400, 'VALIDATION_ERROR', 'body is not JSON');
    }
    const reason = (body.reason ?? req.headers['x-stella-reason'] ?? '').toString().trim();
    const v = [];
    if (!body.releaseId) v.push({ field: 'releaseId', message: 'required' });
    if (!body.targetEnvironmentId) v.push({ field: 'targetEnvironmentId', message: 'required' });
    if (!reason) v.push({ field: 'reason', message: 'required' });
    if (v.length) return apiError(res, 400, 'VALIDATION_ERROR', 'invalid promotion request', { validationErrors: v });
    const rel = state.releases.find((r) => r.id === body.releaseId);
    const envs = envsSorted();
    const target = envs.find((e) => e.id === body.targetEnvironmentId);
    if (!rel) return apiError(res, 404, 'NOT_FOUND', `release ${body.releaseId} not found`);
    if (!target) return apiError(res, 404, 'NOT_FOUND', `environment ${body.targetEnvironmentId} not found`);
    if (rel.status !== 'ready') return apiError(res, 422, 'PROMOTION_BLOCKED', `release ${rel.name} is ${rel.status}, not ready`);
    if (target.currentRelease?.id === rel.id) return apiError(res, 409, 'CONFLICT', `${rel.name} is already deployed to ${target.name}`);
    const open = state.promotions.find((p) => p.releaseId === rel.id && p.targetEnvironmentId === target.id && ['pending', 'awaiting_approval', 'approved', 'deploying'].includes(p.status));
    if (open) return apiError(res, 409, 'CONFLICT', `promotion ${open.id} is already in progress`);
    const source = envs.filter((e) => e.orderIndex < target.orderIndex).pop() ?? null;
    const p = {
      id: `prm-${String(++state.promotionSeq).padStart(4, '0')}`,
      releaseId: rel.id,
      releaseName: rel.name,
      sourceEnvironmentId: source?.id ?? null,
      sourceEnvironmentName: source?.name ?? null,
      targetEnvironmentId: target.id,
      targetEnvironmentName: target.name,
      status: 'pending',
      requestedBy: tok.sub,
      requestedAt: iso(),
      reason,
      ticket: body.ticket ?? req.headers['x-stella-ticket'] ?? null,
    };
    state.promotions.unshift(p);
    const t = setTimeout(() => {
      timers.delete(t);
      if (p.status !== 'pending') return;
      if ((target.requiredApprovals ?? 0) > 0) p.status = 'awaiting_approval';
      else {
        p.status = 'deployed';
        target.currentRelease = { id: rel.id, name: rel.name, version: rel.version, deployedAt: iso() };
      }
    }, state.config.promotionDelayMs);
    t.unref?.();
    timers.add(t);
    sendOne(res, 201, clone(p));
  }

  async function handleApi(req, res, url) {
    const p = url.pathname;
    const q = url.searchParams;
    const page = Math.max(1, Number(q.get('page') ?? 1) || 1);
    const pageSize = Math.min(200, Math.max(1, Number(q.get('pageSize') ?? 50) || 50));
    if (req.method === 'GET' && p === '/api/v1/releases') {
      if (!bearer(req, res, 'orch:read')) return;
      let items = [...state.releases].sort((a, b) => b.createdAt.localeCompare(a.createdAt));
      if (q.get('project')) items = items.filter((r) => r.project === q.get('project'));
      if (q.get('status')) items = items.filter((r) => r.status === q.get('status'));
      return sendList(res, items, page, pageSize);
    }
    let m = /^\/api\/v1\/releases\/([^/]+)$/.exec(p);
    if (req.method === 'GET' && m) {
      if (!bearer(req, res, 'orch:read')) return;
      const r = state.releases.find((x) => x.id === decodeURIComponent(m[1]));
      return r ? sendOne(res, 200, r) : apiError(res, 404, 'NOT_FOUND', 'release not found');
    }
    if (req.method === 'GET' && p === '/api/v1/environments') {
      if (!bearer(req, res, 'orch:read')) return;
      const withState = q.get('includeState') === 'true';
      const items = envsSorted().map((e) => {
        const c = clone(e);
        if (!withState) delete c.currentRelease;
        return c;
      });
      return sendList(res, items, page, pageSize);
    }
    m = /^\/api\/v1\/environments\/([^/]+)$/.exec(p);
    if (req.method === 'GET' && m) {
      if (!bearer(req, res, 'orch:read')) return;
      const e = state.environments.find((x) => x.id === decodeURIComponent(m[1]) || x.name === decodeURIComponent(m[1]));
      return e ? sendOne(res, 200, e) : apiError(res, 404, 'NOT_FOUND', 'environment not found');
    }
    if (req.method === 'GET' && p === '/api/v1/promotions') {
      if (!bearer(req, res, 'orch:read')) return;
      let items = [...state.promotions];
      for (const k of ['status', 'releaseId']) if (q.get(k)) items = items.filter((x) => x[k] === q.get(k));
      if (q.get('environmentId')) items = items.filter((x) => x.targetEnvironmentId === q.get('environmentId'));
      return sendList(res, items, page, pageSize);
    }
    if (req.method === 'POST' && p === '/api/v1/promotions') {
      const tok = bearer(req, res, 'orch:operate');
      if (!tok) return;
      return createPromotion(req, res, tok);
    }
    m = /^\/api\/v1\/promotions\/([^/]+)$/.exec(p);
    if (req.method === 'GET' && m) {
      if (!bearer(req, res, 'orch:read')) return;
      const x = state.promotions.find((y) => y.id === decodeURIComponent(m[1]));
      return x ? sendOne(res, 200, x) : apiError(res, 404, 'NOT_FOUND', 'promotion not found');
    }
    return apiError(res, 404, 'NOT_FOUND', `no route ${req.method} ${p}`);
  }

  // ---------------- Control ----------------
  async function handleControl(req, res, url) {
    const p = url.pathname.slice('/_control'.length);
    const body = req.method === 'POST' ? parseJson(await readBody(req)) : {};
    if (p === '/health') return send(res, 200, { ok: true, down: state.config.down });
    if (p === '/state' && req.method === 'GET')
      return send(res, 200, {
        config: state.config,
        releases: state.releases,
        environments: envsSorted(),
        promotions: state.promotions,
        counters: state.counters,
        activeAccessTokens: [...state.accessTokens.values()].filter((t) => t.exp > now()).length,
        pendingDeviceCodes: [...state.deviceCodes.values()].filter((d) => d.status === 'pending').map((d) => d.userCode),
      });
    if (p === '/reset' && req.method === 'POST') {
      reset();
      return send(res, 200, { ok: true });
    }
    if (p === '/config' && req.method === 'POST') {
      for (const k of Object.keys(body)) if (!(k in DEFAULT_CONFIG)) return send(res, 400, { error: `unknown config key ${k}` });
      Object.assign(state.config, body);
      if (!state.config.down) releaseHanging();
      return send(res, 200, state.config);
    }
    if (p === '/down' && req.method === 'POST') {
      state.config.down = body.down !== false;
      if (body.mode) state.config.downMode = body.mode;
      if (!state.config.down) releaseHanging();
      return send(res, 200, { down: state.config.down, mode: state.config.downMode });
    }
    if (p === '/device/approve' && req.method === 'POST') return send(res, 200, { approved: setDeviceStatus(body.user_code, 'approved') });
    if (p === '/device/deny' && req.method === 'POST') return send(res, 200, { denied: setDeviceStatus(body.user_code, 'denied') });
    if (p === '/tokens/expire' && req.method === 'POST') {
      for (const t of state.accessTokens.values()) t.exp = now() - 1;
      return send(res, 200, { expired: state.accessTokens.size });
    }
    if (p === '/requests' && req.method === 'GET') {
      const since = Number(url.searchParams.get('since') ?? 0) || 0;
      return send(res, 200, state.requests.filter((r) => r.seq > since));
    }
    if (p === '/requests' && req.method === 'DELETE') {
      state.requests.length = 0;
      return send(res, 200, { ok: true });
    }
    if (p === '/shutdown' && req.method === 'POST') {
      send(res, 200, { ok: true });
      setTimeout(() => close(), 10).unref?.();
      return;
    }
    return send(res, 404, { error: `no control route ${req.method} ${p}` });
  }

  function releaseHanging() {
    for (const r of hanging) r.destroy();
    hanging.clear();
  }

  let seq = 0;
  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const entry = { seq: ++seq, at: iso(), method: req.method, path: url.pathname, query: url.search, auth: req.headers.authorization ? req.headers.authorization.split(' ')[0] : null, status: 0 };
    res.on('finish', () => {
      entry.status = res.statusCode;
      if (req._grant) entry.grantType = req._grant;
      if (!url.pathname.startsWith('/_control')) {
        state.requests.push(entry);
        if (state.requests.length > 1000) state.requests.shift();
      }
      log(req.method, url.pathname, res.statusCode);
    });
    try {
      if (url.pathname.startsWith('/_control/')) return await handleControl(req, res, url);
      const cfg = state.config;
      if (cfg.down) {
        if (cfg.downMode === 'reset') return req.socket.destroy();
        if (cfg.downMode === 'hang') {
          hanging.add(req.socket);
          const t = setTimeout(() => req.socket.destroy(), 30_000);
          t.unref?.();
          return;
        }
        return apiError(res, 503, 'UNAVAILABLE', 'service is down (fake server switch)', {}, { 'Retry-After': '1' });
      }
      if (cfg.latencyMs > 0) await new Promise((r) => setTimeout(r, Math.min(cfg.latencyMs, 30_000)));
      const f = cfg.failNext;
      if (f && f.count > 0 && (!f.pathPrefix || url.pathname.startsWith(f.pathPrefix))) {
        f.count--;
        if (f.count <= 0) cfg.failNext = null;
        const h = f.retryAfter !== undefined ? { 'Retry-After': String(f.retryAfter) } : {};
        return apiError(res, f.status, f.status === 429 ? 'RATE_LIMITED' : 'UNAVAILABLE', 'injected failure', {}, h);
      }
      if (req.method === 'GET' && url.pathname === '/.well-known/openid-configuration') {
        if (!cfg.discovery) return send(res, 404, { error: 'not_found' });
        const b = baseUrl(req);
        return send(res, 200, {
          issuer: b,
          token_endpoint: cfg.tokenEndpoint === 'legacy-only' ? `${b}/oauth/token` : `${b}/token`,
          device_authorization_endpoint: `${b}/device_authorization`,
          revocation_endpoint: `${b}/revoke`,
          grant_types_supported: ['client_credentials', 'refresh_token', DEVICE_GRANT],
          scopes_supported: ['orch:read', 'orch:operate'],
          token_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post', 'none'],
        });
      }
      if (req.method === 'POST' && url.pathname === '/token') return await handleToken(req, res, false);
      if (req.method === 'POST' && url.pathname === '/oauth/token') return await handleToken(req, res, true);
      if (req.method === 'POST' && url.pathname === '/device_authorization') return await handleDeviceAuthorization(req, res);
      if (req.method === 'POST' && url.pathname === '/revoke') {
        const form = parseForm(await readBody(req));
        state.accessTokens.delete(form.token);
        state.refreshTokens.delete(form.token);
        return send(res, 200, {});
      }
      if (url.pathname === '/device') {
        if (req.method === 'POST') {
          const form = parseForm(await readBody(req));
          const n = setDeviceStatus(form.user_code, form.action === 'deny' ? 'denied' : 'approved');
          return send(res, n ? 200 : 404, `<p>${n ? 'Done. You can close this page.' : 'Unknown code.'}</p>`, { 'Content-Type': 'text/html' });
        }
        const code = (url.searchParams.get('user_code') ?? '').replace(/[^A-Z-]/g, '');
        return send(res, 200, `<!doctype html><title>Stella device login</title><form method="post"><input name="user_code" value="${code}"><button name="action" value="approve">Approve</button><button name="action" value="deny">Deny</button></form>`, { 'Content-Type': 'text/html' });
      }
      if (url.pathname.startsWith('/api/v1/')) return await handleApi(req, res, url);
      return send(res, 404, { error: 'not_found' });
    } catch (e) {
      if (!res.headersSent) apiError(res, 500, 'INTERNAL', String(e?.message ?? e));
    }
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });

  function listen(port = 0, host = '127.0.0.1') {
    if (!['127.0.0.1', 'localhost', '::1'].includes(host)) throw new Error('fake server binds to loopback only');
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => resolve(server.address().port));
    });
  }
  function close() {
    for (const t of timers) clearTimeout(t);
    releaseHanging();
    for (const s of sockets) s.destroy();
    return new Promise((r) => server.close(() => r()));
  }
  return { server, listen, close, reset, get state() { return state; } };
}

const isMain = process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (isMain) {
  let args;
  try {
    args = parseArgs(process.argv.slice(2));
  } catch (e) {
    console.error(String(e.message));
    process.exit(2);
  }
  const fake = createFakeServer({ seed: args.seed, overrides: args.overrides, quiet: args.quiet });
  const port = await fake.listen(args.port);
  console.log(`stella-fake-server listening on http://127.0.0.1:${port}`);
  const stop = () => fake.close().then(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}
