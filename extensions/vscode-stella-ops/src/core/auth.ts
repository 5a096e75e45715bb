// OAuth 2.0 client for the Stella Ops Authority: discovery, client credentials, device code, refresh.
// Tokens live only in the SecretStore given (VS Code SecretStorage in the extension).
import { ApiError, FetchLike, abortableSleep, checkBaseUrl, request } from './http';

export const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';
export const READ_SCOPE = 'orch:read';
export const OPERATE_SCOPE = 'orch:operate';

export interface SecretStore {
  get(key: string): PromiseLike<string | undefined> | Promise<string | undefined>;
  store(key: string, value: string): PromiseLike<void> | Promise<void>;
  delete(key: string): PromiseLike<void> | Promise<void>;
}

export const SECRET_KEYS = {
  session: 'stellaops.session',
  clientSecret: 'stellaops.clientSecret',
  integrationsApiKey: 'stellaops.integrationsApiKey',
} as const;

export type AuthFlow = 'device_code' | 'client_credentials';

export interface Session {
  flow: AuthFlow;
  clientId: string;
  accessToken: string;
  refreshToken?: string;
  scope: string;
  /** Epoch ms when the access token was obtained and when it expires. */
  obtainedAt: number;
  expiresAt: number;
  tokenEndpoint: string;
}

export interface Endpoints {
  tokenEndpoint: string;
  deviceAuthorizationEndpoint?: string;
  revocationEndpoint?: string;
  /** How the token endpoint was found. */
  source: 'discovery' | 'default' | 'legacy';
}

export interface DeviceCodePrompt {
  userCode: string;
  verificationUri: string;
  verificationUriComplete?: string;
  expiresInSeconds: number;
}

export interface AuthorityOptions {
  timeoutMs?: number;
  fetchImpl?: FetchLike;
  now?: () => number;
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  log?: (msg: string) => void;
}

export class AuthorityClient {
  private endpoints?: Endpoints;
  readonly baseUrl: string;
  constructor(baseUrl: string, private readonly opts: AuthorityOptions = {}) {
    this.baseUrl = checkBaseUrl(baseUrl, 'Authority URL');
  }

  private log(m: string) {
    this.opts.log?.(m);
  }

  /** Discovery first; then POST /token; then the legacy /oauth/token (probed lazily by tokenRequest). */
  async discover(signal?: AbortSignal): Promise<Endpoints> {
    if (this.endpoints) return this.endpoints;
    try {
      const r = await request<any>(`${this.baseUrl}/.well-known/openid-configuration`, { timeoutMs: this.opts.timeoutMs, signal, fetchImpl: this.opts.fetchImpl, retries: 1, sleep: this.opts.sleep });
      if (r.body && typeof r.body.token_endpoint === 'string') {
        this.endpoints = {
          tokenEndpoint: r.body.token_endpoint,
          deviceAuthorizationEndpoint: r.body.device_authorization_endpoint,
          revocationEndpoint: r.body.revocation_endpoint,
          source: 'discovery',
        };
        return this.endpoints;
      }
    } catch (e) {
      if (e instanceof ApiError && (e.isUnreachable || e.kind === 'aborted')) throw e;
      this.log(`discovery failed (${(e as Error).message}); using default endpoints`);
    }
    this.endpoints = {
      tokenEndpoint: `${this.baseUrl}/token`,
      deviceAuthorizationEndpoint: `${this.baseUrl}/device_authorization`,
      revocationEndpoint: `${this.baseUrl}/revoke`,
      source: 'default',
    };
    return this.endpoints;
  }

  /** POST a token request; when /token is missing (404/405) and was not discovered, falls back to /oauth/token once. */
  async tokenRequest(form: Record<string, string | undefined>, signal?: AbortSignal): Promise<{ body: any; endpoint: string }> {
    const ep = await this.discover(signal);
    const clean: Record<string, string> = {};
    for (const [k, v] of Object.entries(form)) if (v !== undefined && v !== '') clean[k] = v;
    const post = (url: string) =>
      request<any>(url, {
        method: 'POST',
        headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams(clean).toString(),
        timeoutMs: this.opts.timeoutMs,
        signal,
        fetchImpl: this.opts.fetchImpl,
        retries: 0,
      });
    const noteDeprecation = (r: { headers: Headers }, url: string) => {
      if (r.headers.get('deprecation')) this.log(`token endpoint ${url} is deprecated (Sunset: ${r.headers.get('sunset') ?? 'n/a'})`);
    };
    try {
      const r = await post(ep.tokenEndpoint);
      noteDeprecation(r, ep.tokenEndpoint);
      return { body: r.body, endpoint: ep.tokenEndpoint };
    } catch (e) {
      if (ep.source === 'default' && e instanceof ApiError && e.kind === 'http' && (e.status === 404 || e.status === 405)) {
        const legacy = `${this.baseUrl}/oauth/token`;
        this.log(`${ep.tokenEndpoint} answered ${e.status}; falling back to legacy ${legacy}`);
        this.endpoints = { ...ep, tokenEndpoint: legacy, source: 'legacy' };
        const r = await post(legacy);
        noteDeprecation(r, legacy);
        return { body: r.body, endpoint: legacy };
      }
      throw e;
    }
  }

  async startDeviceAuthorization(clientId: string, scope: string, signal?: AbortSignal): Promise<any> {
    const ep = await this.discover(signal);
    if (!ep.deviceAuthorizationEndpoint) throw new ApiError('the Authority does not offer device authorization', 'config');
    const r = await request<any>(ep.deviceAuthorizationEndpoint, {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ client_id: clientId, scope }).toString(),
      timeoutMs: this.opts.timeoutMs,
      signal,
      fetchImpl: this.opts.fetchImpl,
    });
    return r.body;
  }

  async revoke(token: string, clientId: string): Promise<void> {
    const ep = this.endpoints;
    if (!ep?.revocationEndpoint) return;
    await request(ep.revocationEndpoint, {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ token, client_id: clientId }).toString(),
      timeoutMs: Math.min(this.opts.timeoutMs ?? 5000, 5000),
      fetchImpl: this.opts.fetchImpl,
    });
  }
}

export interface TokenManagerOptions {
  /** OAuth client id for new sign-ins (a function, so a settings change applies without a reload). */
  clientId: string | (() => string);
  /** Refresh when this fraction of the lifetime has passed (0.8 = at 80 %). */
  refreshRatio?: number;
  now?: () => number;
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  /** Upper bound for the device-code polling loop, on top of the server's expires_in. */
  maxDeviceWaitMs?: number;
  log?: (msg: string) => void;
}

type Listener = (signedIn: boolean) => void;

/** Holds the session in the SecretStore, refreshes before expiry (and on 401), clears on sign-out. */
export class TokenManager {
  private session?: Session;
  private loaded = false;
  private refreshing?: Promise<Session>;
  private listeners: Listener[] = [];
  private readonly now: () => number;
  private readonly ratio: number;

  constructor(
    private readonly store: SecretStore,
    private readonly authority: () => AuthorityClient,
    private readonly opts: TokenManagerOptions,
  ) {
    this.now = opts.now ?? Date.now;
    this.ratio = opts.refreshRatio ?? 0.8;
  }

  onDidChange(l: Listener): { dispose(): void } {
    this.listeners.push(l);
    return { dispose: () => (this.listeners = this.listeners.filter((x) => x !== l)) };
  }
  private clientId(): string {
    return typeof this.opts.clientId === 'function' ? this.opts.clientId() : this.opts.clientId;
  }

  private fire() {
    for (const l of this.listeners) l(!!this.session);
  }

  async load(): Promise<Session | undefined> {
    if (!this.loaded) {
      this.loaded = true;
      const raw = await this.store.get(SECRET_KEYS.session);
      if (raw) {
        try {
          this.session = JSON.parse(raw) as Session;
        } catch {
          await this.store.delete(SECRET_KEYS.session);
        }
      }
    }
    return this.session;
  }

  get isSignedIn(): boolean {
    return !!this.session;
  }
  get current(): Session | undefined {
    return this.session;
  }

  /** When the next proactive refresh is due (epoch ms), or undefined. */
  refreshDueAt(s = this.session): number | undefined {
    if (!s) return undefined;
    return s.obtainedAt + (s.expiresAt - s.obtainedAt) * this.ratio;
  }

  private async save(s: Session) {
    this.session = s;
    this.loaded = true;
    await this.store.store(SECRET_KEYS.session, JSON.stringify(s));
    this.fire();
  }

  private toSession(flow: AuthFlow, body: any, endpoint: string, prev?: Session): Session {
    if (!body || typeof body.access_token !== 'string') throw new ApiError('token response without access_token', 'parse');
    const t = this.now();
    const expiresIn = Number(body.expires_in) > 0 ? Number(body.expires_in) : 300;
    return {
      flow,
      clientId: this.clientId(),
      accessToken: body.access_token,
      refreshToken: body.refresh_token ?? prev?.refreshToken,
      scope: body.scope ?? prev?.scope ?? READ_SCOPE,
      obtainedAt: t,
      expiresAt: t + expiresIn * 1000,
      tokenEndpoint: endpoint,
    };
  }

  async signInClientCredentials(clientSecret: string, signal?: AbortSignal): Promise<Session> {
    const { body, endpoint } = await this.authority().tokenRequest(
      { grant_type: 'client_credentials', client_id: this.clientId(), client_secret: clientSecret, scope: READ_SCOPE },
      signal,
    );
    await this.store.store(SECRET_KEYS.clientSecret, clientSecret);
    const s = this.toSession('client_credentials', body, endpoint);
    await this.save(s);
    return s;
  }

  /** RFC 8628: request a code, show it via onPrompt, poll the token endpoint until approved, denied, expired or cancelled. */
  async signInDeviceCode(onPrompt: (p: DeviceCodePrompt) => void, signal?: AbortSignal): Promise<Session> {
    const a = this.authority();
    const d = await a.startDeviceAuthorization(this.clientId(), READ_SCOPE, signal);
    if (!d?.device_code || !d?.user_code) throw new ApiError('invalid device authorization response', 'parse');
    const expiresIn = Number(d.expires_in) > 0 ? Number(d.expires_in) : 300;
    onPrompt({ userCode: d.user_code, verificationUri: d.verification_uri, verificationUriComplete: d.verification_uri_complete, expiresInSeconds: expiresIn });
    let interval = Math.max(1, Number(d.interval) || 5) * 1000;
    const sleep = this.opts.sleep ?? abortableSleep;
    const deadline = this.now() + Math.min(expiresIn * 1000, this.opts.maxDeviceWaitMs ?? 15 * 60_000);
    while (this.now() < deadline) {
      await sleep(interval, signal);
      try {
        const { body, endpoint } = await a.tokenRequest({ grant_type: DEVICE_GRANT, device_code: d.device_code, client_id: this.clientId() }, signal);
        const s = this.toSession('device_code', body, endpoint);
        await this.save(s);
        return s;
      } catch (e) {
        if (!(e instanceof ApiError)) throw e;
        if (e.code === 'authorization_pending') continue;
        if (e.code === 'slow_down') {
          interval += 5000;
          continue;
        }
        if (e.isUnreachable) continue; // transient; the deadline bounds the loop
        if (e.code === 'access_denied') throw new ApiError('sign-in was denied', 'http', e.status, e.code);
        if (e.code === 'expired_token') throw new ApiError('the device code expired; sign in again', 'http', e.status, e.code);
        throw e;
      }
    }
    throw new ApiError('device sign-in timed out', 'timeout');
  }

  /** A valid access token, refreshed first when the refresh point (80 % of the lifetime) has passed. */
  async getAccessToken(signal?: AbortSignal): Promise<string | undefined> {
    const s = await this.load();
    if (!s) return undefined;
    if (this.now() >= (this.refreshDueAt(s) ?? 0)) {
      try {
        return (await this.refresh(signal)).accessToken;
      } catch (e) {
        // Authority unreachable but the token is still valid: keep using it (offline tolerance).
        const cur = this.session;
        if (e instanceof ApiError && e.isUnreachable && cur && this.now() < cur.expiresAt) {
          this.opts.log?.(`token refresh failed (${e.message}); using the current token until it expires`);
          return cur.accessToken;
        }
        throw e;
      }
    }
    return s.accessToken;
  }

  /** Refresh now (single flight). Device sessions use refresh_token; client-credential sessions ask again. */
  refresh(signal?: AbortSignal, scope = READ_SCOPE, extra: Record<string, string> = {}): Promise<Session> {
    if (this.refreshing && scope === READ_SCOPE && !Object.keys(extra).length) return this.refreshing;
    const p = this.doRefresh(signal, scope, extra).finally(() => {
      if (this.refreshing === p) this.refreshing = undefined;
    });
    if (scope === READ_SCOPE && !Object.keys(extra).length) this.refreshing = p;
    return p;
  }

  private async doRefresh(signal: AbortSignal | undefined, scope: string, extra: Record<string, string>): Promise<Session> {
    const s = await this.load();
    if (!s) throw new ApiError('not signed in', 'config');
    try {
      let res: { body: any; endpoint: string };
      if (s.flow === 'client_credentials') {
        const secret = await this.store.get(SECRET_KEYS.clientSecret);
        if (!secret) throw new ApiError('client secret missing; sign in again', 'http', 401, 'invalid_client');
        res = await this.authority().tokenRequest({ grant_type: 'client_credentials', client_id: s.clientId, client_secret: secret, scope, ...extra }, signal);
      } else {
        if (!s.refreshToken) throw new ApiError('no refresh token; sign in again', 'http', 400, 'invalid_grant');
        res = await this.authority().tokenRequest({ grant_type: 'refresh_token', refresh_token: s.refreshToken, client_id: s.clientId, scope, ...extra }, signal);
      }
      const ns = this.toSession(s.flow, res.body, res.endpoint, s);
      await this.save(ns);
      return ns;
    } catch (e) {
      // A rejected grant means the session is over: clear it rather than retrying forever.
      if (e instanceof ApiError && e.kind === 'http' && ['invalid_grant', 'invalid_client', 'unauthorized_client'].includes(e.code ?? '')) {
        this.opts.log?.(`refresh rejected (${e.code}); signing out`);
        await this.clear();
      }
      throw e;
    }
  }

  /** A token carrying orch:operate for one promotion (upstream requires operator_reason and operator_ticket). */
  async elevate(reason: string, ticket: string, signal?: AbortSignal): Promise<string> {
    const s = await this.refresh(signal, `${READ_SCOPE} ${OPERATE_SCOPE}`, { operator_reason: reason, operator_ticket: ticket });
    return s.accessToken;
  }

  private async clear() {
    this.session = undefined;
    this.loaded = true;
    await this.store.delete(SECRET_KEYS.session);
    await this.store.delete(SECRET_KEYS.clientSecret);
    this.fire();
  }

  /** Best-effort revocation, then removal of every stored credential of this session. */
  async signOut(): Promise<void> {
    const s = await this.load();
    if (s) {
      try {
        if (s.refreshToken) await this.authority().revoke(s.refreshToken, s.clientId);
        await this.authority().revoke(s.accessToken, s.clientId);
      } catch (e) {
        this.opts.log?.(`revocation failed: ${(e as Error).message}`);
      }
    }
    await this.clear();
  }
}
