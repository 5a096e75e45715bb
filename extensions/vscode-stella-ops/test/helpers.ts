import * as path from 'path';
import { pathToFileURL } from 'url';
import * as http from 'http';
import type { SecretStore } from '../src/core/auth';

export const EXT_ROOT = path.resolve(__dirname, '..', '..');
export const REPO_EXT = path.resolve(EXT_ROOT, '..');
export const SCHEMA = require(path.join(REPO_EXT, 'schema', 'stella.schema.json'));

// TypeScript (module commonjs) would turn import() into require(); keep a real dynamic import for the .mjs fake.
const dynImport = new Function('p', 'return import(p)') as (p: string) => Promise<any>;

export interface Fake {
  url: string;
  port: number;
  close(): Promise<void>;
  control(p: string, body?: unknown, method?: string): Promise<any>;
  state: any;
}

export async function startFake(overrides: Record<string, unknown> = {}): Promise<Fake> {
  const mod = await dynImport(pathToFileURL(path.join(REPO_EXT, 'contracts', 'fake-server', 'server.mjs')).href);
  const f = mod.createFakeServer({ overrides, quiet: true });
  const port: number = await f.listen(0);
  const url = `http://127.0.0.1:${port}`;
  return {
    url,
    port,
    close: () => f.close(),
    get state() {
      return f.state;
    },
    control: async (p: string, body?: unknown, method?: string) => {
      const r = await fetch(`${url}/_control${p}`, { method: method ?? (body === undefined ? 'GET' : 'POST'), body: body === undefined ? undefined : JSON.stringify(body), headers: { 'Content-Type': 'application/json' } });
      return r.json();
    },
  };
}

export class MemorySecrets implements SecretStore {
  readonly map = new Map<string, string>();
  async get(k: string) {
    return this.map.get(k);
  }
  async store(k: string, v: string) {
    this.map.set(k, v);
  }
  async delete(k: string) {
    this.map.delete(k);
  }
}

export class MemoryCache {
  readonly map = new Map<string, unknown>();
  get<T>(k: string): T | undefined {
    return this.map.get(k) as T | undefined;
  }
  async update(k: string, v: unknown) {
    this.map.set(k, JSON.parse(JSON.stringify(v)));
  }
}

/** A tiny stand-in for the Integrations daemon's HTTP API, with scripted responses. */
export async function startStubServer(handler: (req: http.IncomingMessage, res: http.ServerResponse, body: string) => void): Promise<{ url: string; close(): Promise<void>; requests: Array<{ method?: string; url?: string; auth?: string }> }> {
  const requests: Array<{ method?: string; url?: string; auth?: string }> = [];
  const sockets = new Set<import('net').Socket>();
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      requests.push({ method: req.method, url: req.url, auth: req.headers.authorization });
      handler(req, res, body);
    });
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as import('net').AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

export const noSleep = async (_ms: number, signal?: AbortSignal) => {
  if (signal?.aborted) throw new Error('aborted');
};

/**
 * A stand-in for the hub on loopback: the integration list, and GET /api/v1/events with an event log,
 * replay after Last-Event-ID (or ?after=), live pushes, dropped connections and scripted answers.
 */
export async function startStubHub(opts: { key?: string } = {}) {
  const key = opts.key ?? 'k1';
  const state = {
    items: [] as any[],
    log: [] as Array<{ seq: number; ce: any }>,
    /** Answer the next event requests with this status (and headers) instead of a stream, `count` times. */
    refuse: undefined as undefined | { status: number; headers?: Record<string, string>; body?: string; count: number },
    /** Destroy the socket of the next `count` event requests before answering. */
    resetNext: 0,
    /** Stream open but sends nothing (no keep-alive): for the idle timeout. */
    silent: false,
    eventRequests: [] as Array<{ at: number; lastEventId?: string; after?: string }>,
    listRequests: 0,
  };
  const streams = new Set<import('http').ServerResponse>();
  const frame = (e: { seq: number; ce: any }) => `id: ${e.seq}\ndata: ${JSON.stringify(e.ce)}\n\n`;
  const srv = await startStubServer((req, res) => {
    const u = new URL(req.url ?? '/', 'http://x');
    if (req.headers.authorization !== `Bearer ${key}`) {
      res.writeHead(401, { 'Content-Type': 'application/problem+json' });
      res.end(JSON.stringify({ title: 'Unauthorized', status: 401, detail: 'bad key' }));
      return;
    }
    if (u.pathname === '/api/v1/integrations') {
      state.listRequests++;
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ items: state.items, nextCursor: null }));
      return;
    }
    if (u.pathname === '/api/v1/events') {
      const lastEventId = req.headers['last-event-id'] as string | undefined;
      state.eventRequests.push({ at: Date.now(), lastEventId, after: u.searchParams.get('after') ?? undefined });
      if (state.resetNext > 0) {
        state.resetNext--;
        req.socket.destroy();
        return;
      }
      if (state.refuse && state.refuse.count > 0) {
        state.refuse.count--;
        res.writeHead(state.refuse.status, { 'Content-Type': 'application/problem+json', ...(state.refuse.headers ?? {}) });
        res.end(state.refuse.body ?? JSON.stringify({ title: 'refused', status: state.refuse.status, detail: `scripted ${state.refuse.status}` }));
        return;
      }
      const from = lastEventId ?? u.searchParams.get('after');
      if (from !== null && from !== undefined && !/^\d+$/.test(from)) {
        res.writeHead(422, { 'Content-Type': 'application/problem+json' });
        res.end(JSON.stringify({ title: 'Unprocessable Entity', status: 422, detail: 'Last-Event-ID: not an event id from this stream' }));
        return;
      }
      res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
      res.flushHeaders();
      if (from !== null && from !== undefined) for (const e of state.log) if (e.seq > Number(from)) res.write(frame(e));
      if (!state.silent) streams.add(res);
      res.on('close', () => streams.delete(res));
      return;
    }
    res.writeHead(404);
    res.end();
  });
  return {
    ...srv,
    state,
    /** Appends an event to the log and pushes it to every open stream. */
    emit(ce: any): number {
      const e = { seq: (state.log.at(-1)?.seq ?? 0) + 1, ce };
      state.log.push(e);
      for (const s of streams) s.write(frame(e));
      return e.seq;
    },
    /** Kills every open stream's connection (a network drop, not a clean end). */
    dropStreams() {
      for (const s of streams) s.socket?.destroy();
      streams.clear();
    },
    /** Ends every open stream cleanly (the hub's stream_max_seconds, or a shutdown). */
    endStreams() {
      for (const s of streams) s.end();
      streams.clear();
    },
    get openStreams() {
      return streams.size;
    },
  };
}

let ceCounter = 0;
/** A CloudEvent as the hub sends it. */
export function healthEvent(integrationId: string, status: string, extra: Record<string, unknown> = {}, type = 'dev.stellaops.integration.health.changed') {
  const t = new Date().toISOString();
  return {
    specversion: '1.0',
    id: `ce-${process.pid}-${++ceCounter}`,
    source: `/tenants/acme/integrations/${integrationId}`,
    type,
    subject: integrationId,
    time: t,
    datacontenttype: 'application/json',
    tenant: 'acme',
    data: { integrationId, integrationType: 'inmemory', tenant: 'acme', status, reason: null, checkedAt: t, ...extra },
  };
}

/** Waits until `f()` is truthy (polling every 10 ms), at most `ms`. */
export async function until<T>(what: string, f: () => T | undefined | false, ms = 3000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
