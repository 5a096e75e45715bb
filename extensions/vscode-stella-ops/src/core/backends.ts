// Where the backends are and how to reach them: the Orchestrator (the project file's `server:`, else the
// setting) with a token from the Authority, and the Integrations daemon with an API key.
import { AuthorityClient, SECRET_KEYS, SecretStore, TokenManager } from './auth';
import { IntegrationsClient, OrchestratorClient } from './clients';
import { ApiError } from './http';
import type { ProjectRef } from './project';
import type { Settings } from './settings';

export interface BackendsDeps {
  secrets: SecretStore;
  /** Read at every use: a change of settings or of the project file applies to the next call. */
  settings: () => Settings;
  project: () => ProjectRef;
  log?: (m: string) => void;
}

/** URLs, credentials (token session, API key, both in the SecretStore) and API clients of the backends. */
export class Backends {
  readonly tokens: TokenManager;
  private authority?: { url: string; client: AuthorityClient };
  private apiKeyCache?: string;

  constructor(private readonly deps: BackendsDeps) {
    this.tokens = new TokenManager(deps.secrets, () => this.authorityClient(), { clientId: () => this.settings.clientId, log: deps.log });
  }

  /** Loads the stored session, then the stored API key. */
  async load(): Promise<void> {
    await this.tokens.load();
    this.apiKeyCache = await this.deps.secrets.get(SECRET_KEYS.integrationsApiKey);
  }

  get settings(): Settings {
    return this.deps.settings();
  }

  serverUrl(): string {
    return this.deps.project().server || this.settings.serverUrl;
  }

  /** The Authority: its own setting, else the Orchestrator's URL. */
  authorityUrl(): string {
    return this.settings.authorityUrl || this.serverUrl();
  }

  /** One AuthorityClient (it caches the discovered endpoints) for as long as the Authority URL stays the same. */
  authorityClient(): AuthorityClient {
    const url = this.authorityUrl();
    if (!url) throw new ApiError('stellaops.serverUrl (or stellaops.authorityUrl) is not set', 'config');
    if (!this.authority || this.authority.url !== url) this.authority = { url, client: new AuthorityClient(url, { timeoutMs: this.settings.timeoutMs, log: this.deps.log }) };
    return this.authority.client;
  }

  /** A client with the current URL and timeout; undefined when no Orchestrator URL is set. */
  orchestrator(): OrchestratorClient | undefined {
    return this.serverUrl() ? new OrchestratorClient(this.serverUrl(), this.tokens, { timeoutMs: this.settings.timeoutMs, retries: 2 }) : undefined;
  }

  /** A client with the current URL and timeout, sending the API key current at each request; undefined when no daemon URL is set. */
  integrations(): IntegrationsClient | undefined {
    return this.settings.integrationsUrl ? new IntegrationsClient(this.settings.integrationsUrl, async () => this.apiKeyCache, { timeoutMs: this.settings.timeoutMs, retries: 2 }) : undefined;
  }

  /** The Integrations API key (from the SecretStore, loaded once). */
  async apiKey(): Promise<string | undefined> {
    return this.apiKeyCache;
  }

  get hasApiKey(): boolean {
    return !!this.apiKeyCache;
  }

  async setApiKey(key: string): Promise<void> {
    this.apiKeyCache = key;
    await this.deps.secrets.store(SECRET_KEYS.integrationsApiKey, key);
  }

  async deleteApiKey(): Promise<void> {
    this.apiKeyCache = undefined;
    await this.deps.secrets.delete(SECRET_KEYS.integrationsApiKey);
  }
}
