// The `stellaops.*` settings as the extension uses them: trimmed, defaulted and bounded.

import type { FollowMode } from './healthTracker';

export type SignInFlow = 'ask' | 'device_code' | 'client_credentials';

export interface Settings {
  serverUrl: string;
  authorityUrl: string;
  integrationsUrl: string;
  clientId: string;
  flow: SignInFlow;
  intervalMs: number;
  timeoutMs: number;
  /** Integration notifications: off when muted. */
  notificationsMuted: boolean;
  /** Which integrations notify: `referenced` (stella.yaml `integrations:` and pinned), `pinned`, `all`. */
  follow: FollowMode;
  /** Pinned integrations, by name or id. */
  pinned: string[];
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
    notificationsMuted: c.get<boolean>('notifications.muted') === true,
    follow: FOLLOW_MODES.includes(c.get<FollowMode>('notifications.follow') as FollowMode) ? (c.get<FollowMode>('notifications.follow') as FollowMode) : 'referenced',
    pinned: (c.get<unknown[]>('integrations.pinned') ?? []).filter((x): x is string => typeof x === 'string' && x.trim() !== '').map((x) => x.trim()),
  };
}

const FOLLOW_MODES: FollowMode[] = ['referenced', 'pinned', 'all'];
