// The `stellaops.*` settings as the extension uses them: trimmed, defaulted and bounded.

export type SignInFlow = 'ask' | 'device_code' | 'client_credentials';

export interface Settings {
  serverUrl: string;
  authorityUrl: string;
  integrationsUrl: string;
  clientId: string;
  flow: SignInFlow;
  intervalMs: number;
  timeoutMs: number;
}

/** Reads settings through `get` (a VS Code WorkspaceConfiguration of the `stellaops` section, keys without the prefix). */
export function settingsFrom(c: { get<T>(key: string): T | undefined }): Settings {
  return {
    serverUrl: (c.get<string>('serverUrl') ?? '').trim(),
    authorityUrl: (c.get<string>('authorityUrl') ?? '').trim(),
    integrationsUrl: (c.get<string>('integrationsUrl') ?? '').trim(),
    clientId: (c.get<string>('clientId') ?? 'stella-ide').trim() || 'stella-ide',
    flow: (c.get<string>('auth.flow') ?? 'ask') as SignInFlow,
    intervalMs: Math.max(5, c.get<number>('refreshIntervalSeconds') ?? 30) * 1000,
    timeoutMs: Math.max(500, c.get<number>('requestTimeoutMs') ?? 10_000),
  };
}
