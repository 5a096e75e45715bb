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
