import * as vscode from 'vscode';
import type { TokenManager } from './core/auth';
import { Backends } from './core/backends';
import type { FollowSettings } from './core/healthTracker';
import { LiveHealth } from './core/liveHealth';
import { Poller } from './core/poller';
import { DataService } from './core/service';
import { TokenRefreshTimer } from './core/tokenRefresh';
import { registerCommands } from './vscode/commands';
import { healthNoticeHandler } from './vscode/healthNotices';
import { createLog } from './vscode/log';
import { noticeHandler } from './vscode/notices';
import { ProjectFile } from './vscode/projectFile';
import { WorkspaceSettings } from './vscode/settings';
import { trackSignedIn } from './vscode/signedInContext';
import { StatusBar } from './vscode/statusBar';
import { isStellaFile, readSchema, registerStellaYaml } from './vscode/stellaYaml';
import { registerViews } from './vscode/views';

export interface StellaApi {
  service: DataService;
  tokens: TokenManager;
  live: LiveHealth;
}

export async function activate(context: vscode.ExtensionContext): Promise<StellaApi> {
  const { channel, log } = createLog();
  context.subscriptions.push(channel);

  const schema = readSchema(context.extensionPath);
  const settings = new WorkspaceSettings();
  const projectFile = new ProjectFile(schema, log);
  const backends = new Backends({ secrets: context.secrets, settings: () => settings.current, project: () => projectFile.current, log });
  await backends.load();

  // Notifications follow the settings and the project file's `integrations:`, read at each update.
  const follow = (): FollowSettings => ({
    follow: settings.current.follow,
    muted: settings.current.notificationsMuted,
    pinned: settings.current.pinned,
    referenced: projectFile.current.integrations ?? [],
  });
  let live: LiveHealth | undefined;
  const service = new DataService({
    orchestrator: () => backends.orchestrator(),
    integrations: () => backends.integrations(),
    isSignedIn: () => backends.tokens.isSignedIn,
    hasApiKey: async () => backends.hasApiKey,
    project: () => projectFile.current.name,
    cache: context.globalState,
    notify: noticeHandler(channel, log),
    log,
    follow,
    onHealthNotification: healthNoticeHandler(log),
    integrationsLive: () => live?.isLive ?? false,
  });
  live = new LiveHealth({
    service,
    baseUrl: () => settings.current.integrationsUrl,
    apiKey: () => backends.apiKey(),
    hasApiKey: () => backends.hasApiKey,
    timeoutMs: () => settings.current.timeoutMs,
    log,
  });
  context.subscriptions.push(live, { dispose: () => service.dispose() });
  const pinned = (i: { id: string; name: string }) => settings.current.pinned.includes(i.id) || settings.current.pinned.includes(i.name);

  context.subscriptions.push(trackSignedIn(backends.tokens), new TokenRefreshTimer(backends.tokens, log));
  context.subscriptions.push(...registerViews(service, { followed: (i) => service.isFollowed(i), pinned }), new StatusBar(service));
  context.subscriptions.push(...registerStellaYaml(schema, service));

  await projectFile.load();
  context.subscriptions.push(...projectFile.watch(() => service.refresh()));

  const poller = new Poller(service, () => settings.current.intervalMs);
  context.subscriptions.push(poller);
  context.subscriptions.push(
    settings.watch(() => {
      void service.refresh();
      poller.schedule();
      live?.update();
    }),
  );

  context.subscriptions.push(...registerCommands({ backends, service, poller, live, log }));

  poller.start();
  live.update();
  log(`activated (server=${backends.serverUrl() || '-'}, integrations=${settings.current.integrationsUrl || '-'})`);
  return { service, tokens: backends.tokens, live };
}

export function deactivate() {
  /* disposables are cleaned up through context.subscriptions */
}

export { isStellaFile };
