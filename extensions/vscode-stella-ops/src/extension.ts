import * as vscode from 'vscode';
import * as fs from 'fs';
import * as path from 'path';
import { AuthorityClient, SECRET_KEYS, TokenManager } from './core/auth';
import { IntegrationsClient, OrchestratorClient } from './core/clients';
import { ApiError } from './core/http';
import { DataService, Notice, errMsg } from './core/service';
import { parseStellaYaml } from './core/stellaYaml';
import { environmentNodes, integrationNodes, NodeModel, PromoteArgs, releaseNodes, versionOf } from './core/viewModel';
import type { Integration } from './core/types';
import { StatusBar } from './vscode/statusBar';
import { StellaCodeLensProvider, StellaDiagnostics, StellaDocuments, STELLA_SELECTOR, isStellaFile } from './vscode/stellaYaml';
import { SnapshotTreeProvider } from './vscode/trees';

export interface StellaApi {
  service: DataService;
  tokens: TokenManager;
}

interface Settings {
  serverUrl: string;
  authorityUrl: string;
  integrationsUrl: string;
  clientId: string;
  flow: 'ask' | 'device_code' | 'client_credentials';
  intervalMs: number;
  timeoutMs: number;
}

function readSettings(): Settings {
  const c = vscode.workspace.getConfiguration('stellaops');
  return {
    serverUrl: (c.get<string>('serverUrl') ?? '').trim(),
    authorityUrl: (c.get<string>('authorityUrl') ?? '').trim(),
    integrationsUrl: (c.get<string>('integrationsUrl') ?? '').trim(),
    clientId: (c.get<string>('clientId') ?? 'stella-ide').trim() || 'stella-ide',
    flow: (c.get<string>('auth.flow') ?? 'ask') as Settings['flow'],
    intervalMs: Math.max(5, c.get<number>('refreshIntervalSeconds') ?? 30) * 1000,
    timeoutMs: Math.max(500, c.get<number>('requestTimeoutMs') ?? 10_000),
  };
}

export async function activate(context: vscode.ExtensionContext): Promise<StellaApi> {
  const out = vscode.window.createOutputChannel('Stella Ops');
  const log = (m: string) => out.appendLine(`[${new Date().toISOString()}] ${m}`);
  context.subscriptions.push(out);

  const schema = JSON.parse(fs.readFileSync(path.join(context.extensionPath, 'schema', 'stella.schema.json'), 'utf8'));
  let settings = readSettings();
  let project: { name?: string; server?: string } = {};

  const serverUrl = () => project.server || settings.serverUrl;
  const authorityUrl = () => settings.authorityUrl || serverUrl();

  let authority: { url: string; client: AuthorityClient } | undefined;
  const getAuthority = () => {
    const url = authorityUrl();
    if (!url) throw new ApiError('stellaops.serverUrl (or stellaops.authorityUrl) is not set', 'config');
    if (!authority || authority.url !== url) authority = { url, client: new AuthorityClient(url, { timeoutMs: settings.timeoutMs, log }) };
    return authority.client;
  };
  const tokens = new TokenManager(context.secrets, getAuthority, { clientId: () => settings.clientId, log });
  await tokens.load();

  let apiKeyCache: string | undefined = await context.secrets.get(SECRET_KEYS.integrationsApiKey);
  const orchestrator = () => (serverUrl() ? new OrchestratorClient(serverUrl(), tokens, { timeoutMs: settings.timeoutMs, retries: 2 }) : undefined);
  const integrations = () => (settings.integrationsUrl ? new IntegrationsClient(settings.integrationsUrl, async () => apiKeyCache, { timeoutMs: settings.timeoutMs, retries: 2 }) : undefined);

  // One unobtrusive notice per transition (and at most one a minute per backend), never an error storm.
  const lastNotice = new Map<string, number>();
  const notify = (n: Notice) => {
    const name = n.backend === 'orchestrator' ? 'Orchestrator' : 'Integrations daemon';
    log(`${name}: ${n.kind} — ${n.message}`);
    if (n.kind === 'online') {
      vscode.window.setStatusBarMessage(`Stella Ops: ${name} reachable again`, 5000);
      return;
    }
    const key = `${n.backend}:${n.kind}`;
    const now = Date.now();
    if (now - (lastNotice.get(key) ?? 0) < 60_000) return;
    lastNotice.set(key, now);
    const text = n.kind === 'offline' ? `Stella Ops: ${name} is unreachable; showing the last known data and retrying in the background.` : `Stella Ops: ${name}: ${n.message}`;
    void vscode.window.showWarningMessage(text, 'Retry now', 'Show log').then((choice) => {
      if (choice === 'Retry now') void vscode.commands.executeCommand('stellaops.refresh');
      if (choice === 'Show log') out.show(true);
    });
  };

  const service = new DataService({
    orchestrator,
    integrations,
    isSignedIn: () => tokens.isSignedIn,
    hasApiKey: async () => !!apiKeyCache,
    project: () => project.name,
    cache: context.globalState,
    notify,
    log,
  });

  const setSignedInContext = () => void vscode.commands.executeCommand('setContext', 'stellaops.signedIn', tokens.isSignedIn);
  setSignedInContext();

  // Proactive refresh at 80 % of the token lifetime.
  let refreshTimer: NodeJS.Timeout | undefined;
  const scheduleTokenRefresh = () => {
    if (refreshTimer) clearTimeout(refreshTimer);
    refreshTimer = undefined;
    const due = tokens.refreshDueAt();
    if (due === undefined) return;
    refreshTimer = setTimeout(() => {
      tokens.refresh().catch((e) => log(`background token refresh failed: ${errMsg(e)}`));
    }, Math.max(1000, due - Date.now()));
    refreshTimer.unref?.();
  };
  context.subscriptions.push(
    tokens.onDidChange(() => {
      setSignedInContext();
      scheduleTokenRefresh();
    }),
    { dispose: () => refreshTimer && clearTimeout(refreshTimer) },
  );
  scheduleTokenRefresh();

  // Views.
  const releasesTree = new SnapshotTreeProvider(service, releaseNodes);
  const environmentsTree = new SnapshotTreeProvider(service, environmentNodes);
  const integrationsTree = new SnapshotTreeProvider(service, integrationNodes);
  context.subscriptions.push(
    releasesTree,
    environmentsTree,
    integrationsTree,
    vscode.window.createTreeView('stellaops.releases', { treeDataProvider: releasesTree, showCollapseAll: true }),
    vscode.window.createTreeView('stellaops.environments', { treeDataProvider: environmentsTree }),
    vscode.window.createTreeView('stellaops.integrations', { treeDataProvider: integrationsTree }),
  );
  const statusBar = new StatusBar(service);
  context.subscriptions.push(statusBar);

  // stella.yaml: CodeLens + diagnostics.
  const docs = new StellaDocuments(schema, service);
  const lenses = new StellaCodeLensProvider(docs, service);
  const diagnostics = new StellaDiagnostics(docs);
  context.subscriptions.push(lenses, diagnostics, vscode.languages.registerCodeLensProvider(STELLA_SELECTOR, lenses));
  const refreshDiagnostics = () => vscode.workspace.textDocuments.forEach((d) => diagnostics.update(d));
  context.subscriptions.push(
    vscode.workspace.onDidOpenTextDocument((d) => diagnostics.update(d)),
    vscode.workspace.onDidChangeTextDocument((e) => diagnostics.update(e.document)),
    vscode.workspace.onDidCloseTextDocument((d) => {
      diagnostics.clear(d);
      docs.forget(d);
    }),
    service.onDidChange(() => refreshDiagnostics()),
  );
  refreshDiagnostics();

  // Project file: `project:` filters releases, `server:` overrides the setting.
  const loadProject = async () => {
    try {
      const files = await vscode.workspace.findFiles('**/stella.{yaml,yml}', '**/node_modules/**', 10);
      for (const f of files.sort((a, b) => a.path.length - b.path.length)) {
        const text = Buffer.from(await vscode.workspace.fs.readFile(f)).toString('utf8');
        const { model } = parseStellaYaml(text, schema);
        if (model.isOpenApi) continue;
        project = { name: model.project, server: model.server };
        log(`project file ${f.fsPath}: project=${model.project ?? '-'} server=${model.server ?? '(settings)'}`);
        return;
      }
      project = {};
    } catch (e) {
      log(`reading stella.yaml failed: ${errMsg(e)}`);
    }
  };
  await loadProject();
  const watcher = vscode.workspace.createFileSystemWatcher('**/stella.{yaml,yml}');
  const onProjectChange = () => void loadProject().then(() => service.refresh());
  context.subscriptions.push(watcher, watcher.onDidChange(onProjectChange), watcher.onDidCreate(onProjectChange), watcher.onDidDelete(onProjectChange));

  // Background refresh with backoff while offline; bounded by the configured interval and a 5 min cap.
  let pollTimer: NodeJS.Timeout | undefined;
  let disposed = false;
  const schedulePoll = () => {
    if (disposed) return;
    if (pollTimer) clearTimeout(pollTimer);
    pollTimer = setTimeout(() => {
      service.refresh().finally(schedulePoll);
    }, service.nextDelayMs(settings.intervalMs));
  };
  context.subscriptions.push({
    dispose: () => {
      disposed = true;
      if (pollTimer) clearTimeout(pollTimer);
    },
  });

  context.subscriptions.push(
    vscode.workspace.onDidChangeConfiguration((e) => {
      if (!e.affectsConfiguration('stellaops')) return;
      settings = readSettings();
      void service.refresh();
      schedulePoll();
    }),
  );

  const withAbort = <T>(token: vscode.CancellationToken, f: (s: AbortSignal) => Promise<T>) => {
    const ctl = new AbortController();
    const sub = token.onCancellationRequested(() => ctl.abort());
    return f(ctl.signal).finally(() => sub.dispose());
  };

  const askApiKey = async () => {
    const key = await vscode.window.showInputBox({
      title: 'Stella Ops: Integrations API key',
      prompt: `API key for ${settings.integrationsUrl || 'the Integrations daemon'} (kept in the OS secret store)`,
      password: true,
      ignoreFocusOut: true,
    });
    if (!key) return false;
    apiKeyCache = key.trim();
    await context.secrets.store(SECRET_KEYS.integrationsApiKey, apiKeyCache);
    return true;
  };

  /**
   * Opens a URL in the browser. In remote hosts (code-server, Codespaces) a loopback URL is reached through a
   * port forward: resolve the origin with asExternalUri and keep path and query (forwarding the whole URL
   * drops them in code-server). Elsewhere asExternalUri returns the URL unchanged.
   */
  const openUrl = async (url: string) => {
    const u = vscode.Uri.parse(url);
    const external = await vscode.env.asExternalUri(u.with({ path: '/', query: '', fragment: '' }));
    const target = external.with({ path: external.path.replace(/\/*$/, '') + u.path, query: u.query });
    log(`opening ${target.toString(true)}`);
    return vscode.env.openExternal(target);
  };

  const register = (id: string, f: (...a: any[]) => unknown) => context.subscriptions.push(vscode.commands.registerCommand(id, f));

  register('stellaops.signIn', async () => {
    if (!authorityUrl() && !settings.integrationsUrl) {
      void vscode.window.showWarningMessage('Stella Ops: set stellaops.serverUrl first.', 'Open settings').then((c) => c && vscode.commands.executeCommand('workbench.action.openSettings', 'stellaops'));
      return;
    }
    if (authorityUrl()) {
      let flow = settings.flow;
      if (flow === 'ask') {
        const pick = await vscode.window.showQuickPick(
          [
            { label: 'Sign in with a browser (device code)', flow: 'device_code' as const },
            { label: 'Client credentials (service account secret)', flow: 'client_credentials' as const },
          ],
          { title: 'Stella Ops: Sign in', ignoreFocusOut: true },
        );
        if (!pick) return;
        flow = pick.flow;
      }
      try {
        if (flow === 'client_credentials') {
          const secret = await vscode.window.showInputBox({ title: `Client secret for ${settings.clientId}`, password: true, ignoreFocusOut: true });
          if (!secret) return;
          await vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title: 'Stella Ops: signing in…', cancellable: true }, (_p, token) =>
            withAbort(token, (signal) => tokens.signInClientCredentials(secret, signal)),
          );
        } else {
          await vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title: 'Stella Ops: waiting for sign-in in the browser…', cancellable: true }, (progress, token) =>
            withAbort(token, (signal) =>
              tokens.signInDeviceCode((p) => {
                log(`device sign-in: code ${p.userCode} at ${p.verificationUri}`);
                progress.report({ message: `code ${p.userCode} at ${p.verificationUri}` });
                // Polling runs meanwhile; the dialog only helps the user get to the verification page.
                void vscode.window
                  .showInformationMessage(`Sign in to Stella Ops with the code ${p.userCode}`, { modal: true, detail: `Open ${p.verificationUri} and enter the code. The button copies it to the clipboard and opens that page.` }, 'Copy & Open Browser')
                  .then(async (c) => {
                    if (!c) return;
                    await vscode.env.clipboard.writeText(p.userCode);
                    await openUrl(p.verificationUriComplete ?? p.verificationUri);
                  });
              }, signal),
            ),
          );
        }
        log('signed in');
        vscode.window.setStatusBarMessage('Stella Ops: signed in', 5000);
      } catch (e) {
        if (e instanceof ApiError && e.kind === 'aborted') return;
        void vscode.window.showErrorMessage(`Stella Ops: sign-in failed: ${errMsg(e)}`);
        return;
      }
    }
    if (settings.integrationsUrl && !apiKeyCache) await askApiKey();
    await service.refresh();
  });

  register('stellaops.setIntegrationsApiKey', async () => {
    if (await askApiKey()) await service.refresh();
  });

  register('stellaops.signOut', async () => {
    await tokens.signOut();
    apiKeyCache = undefined;
    await context.secrets.delete(SECRET_KEYS.integrationsApiKey);
    await service.clear('orchestrator');
    await service.clear('integrations');
    await service.refresh();
    vscode.window.setStatusBarMessage('Stella Ops: signed out', 5000);
  });

  register('stellaops.refresh', async () => {
    await service.refresh();
    schedulePoll();
  });

  register('stellaops.showIntegrations', async () => {
    await vscode.commands.executeCommand('stellaops.integrations.focus');
  });

  register('stellaops.openSwaggerUi', async () => {
    const c = integrations();
    if (!c) {
      void vscode.window.showWarningMessage('Stella Ops: set stellaops.integrationsUrl first.');
      return;
    }
    await openUrl(c.swaggerUrl());
  });

  register('stellaops.promoteRelease', async (arg?: PromoteArgs | NodeModel) => {
    const orch = orchestrator();
    if (!orch) return void vscode.window.showWarningMessage('Stella Ops: set stellaops.serverUrl first.');
    if (!tokens.isSignedIn) return void vscode.window.showWarningMessage('Stella Ops: sign in first.', 'Sign in').then((c) => c && vscode.commands.executeCommand('stellaops.signIn'));
    const snap = service.snapshot;
    let target: PromoteArgs | undefined = arg && 'releaseId' in arg ? arg : undefined;
    if (!target) {
      let releaseId = arg && 'id' in arg && arg.id.startsWith('release:') ? arg.id.slice('release:'.length) : undefined;
      if (!releaseId) {
        const pick = await vscode.window.showQuickPick(
          (snap.releases.data ?? []).filter((r) => r.status === 'ready').map((r) => ({ label: r.name, description: r.createdAt.slice(0, 10), id: r.id })),
          { title: 'Promote which release?' },
        );
        releaseId = pick?.id;
      }
      const rel = snap.releases.data?.find((r) => r.id === releaseId);
      if (!rel) return;
      const env = await vscode.window.showQuickPick(
        (snap.environments.data ?? []).filter((e) => e.currentRelease?.id !== rel.id).map((e) => ({ label: e.name, description: e.currentRelease ? `now ${e.currentRelease.name}` : 'nothing deployed', id: e.id })),
        { title: `Promote ${rel.name} to…` },
      );
      if (!env) return;
      target = { releaseId: rel.id, releaseName: rel.name, targetEnvironmentId: env.id, targetEnvironmentName: env.label };
    }
    const reason = await vscode.window.showInputBox({
      title: `Promote ${target.releaseName} to ${target.targetEnvironmentName}`,
      prompt: 'Reason (recorded with the promotion)',
      ignoreFocusOut: true,
      validateInput: (v) => (v.trim() ? undefined : 'A reason is required'),
    });
    if (!reason) return;
    const ticket = (await vscode.window.showInputBox({ title: 'Change ticket (optional)', placeHolder: 'e.g. CHG-1234', ignoreFocusOut: true })) ?? undefined;
    if (ticket === undefined) return;
    const ok = await vscode.window.showWarningMessage(
      `Promote ${target.releaseName} to ${target.targetEnvironmentName}?`,
      { modal: true, detail: `Reason: ${reason}${ticket ? `\nTicket: ${ticket}` : ''}` },
      'Promote',
    );
    if (ok !== 'Promote') return;
    try {
      const p = await vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title: `Stella Ops: promoting ${target.releaseName}…`, cancellable: true }, (_p, token) =>
        withAbort(token, async (signal) => {
          const elevated = await tokens.elevate(reason.trim(), ticket.trim() || 'none', signal);
          return orch.createPromotion({ releaseId: target!.releaseId, targetEnvironmentId: target!.targetEnvironmentId, reason: reason.trim(), ticket: ticket.trim() || undefined }, elevated, signal);
        }),
      );
      log(`promotion ${p.id}: ${p.releaseName} → ${p.targetEnvironmentName} (${p.status})`);
      // Drop orch:operate again: the session goes back to a read-only token.
      tokens.refresh().catch((e) => log(`token refresh after promotion failed: ${errMsg(e)}`));
      void vscode.window.showInformationMessage(`Stella Ops: promotion ${p.id} requested: ${versionOf(p.releaseName)} → ${p.targetEnvironmentName} (${p.status})`);
      await service.refresh();
      const t = setTimeout(() => void service.refresh(), 1500);
      t.unref?.();
    } catch (e) {
      if (e instanceof ApiError && e.kind === 'aborted') return;
      void vscode.window.showErrorMessage(`Stella Ops: promotion failed: ${errMsg(e)}`);
    }
  });

  register('stellaops.runHealthCheck', async (arg?: NodeModel) => {
    const c = integrations();
    if (!c) return void vscode.window.showWarningMessage('Stella Ops: set stellaops.integrationsUrl first.');
    let integ: Integration | undefined;
    const items = service.snapshot.integrations.data ?? [];
    if (arg && typeof arg.id === 'string' && arg.id.startsWith('integration:')) integ = items.find((i) => i.id === arg.id.slice('integration:'.length));
    if (!integ) {
      const pick = await vscode.window.showQuickPick(items.map((i) => ({ label: i.name, description: `${i.type} · ${i.status}`, id: i.id })), { title: 'Run a health check on…' });
      integ = items.find((i) => i.id === pick?.id);
    }
    if (!integ) return;
    const target = integ;
    try {
      const outcome = await vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title: `Stella Ops: checking ${target.name}…`, cancellable: true }, (_p, token) =>
        withAbort(token, (signal) => c.runHealthCheck(target.id, signal)),
      );
      if (outcome.kind === 'not-implemented') {
        void vscode.window.showInformationMessage(`Stella Ops: health checks are not available on this daemon yet (${outcome.message}).`);
        return;
      }
      const r = outcome.result;
      service.patchIntegration(target.id, { status: r.status as Integration['status'], statusReason: r.reason ?? r.message ?? null, lastCheckedAt: r.checkedAt ?? new Date().toISOString() });
      void vscode.window.showInformationMessage(`Stella Ops: ${target.name}: ${r.status}${r.reason ? ` (${r.reason})` : ''}${r.latencyMs != null ? ` in ${r.latencyMs} ms` : ''}`);
      void service.refresh();
    } catch (e) {
      if (e instanceof ApiError && e.kind === 'aborted') return;
      void vscode.window.showErrorMessage(`Stella Ops: health check failed: ${errMsg(e)}`);
    }
  });

  // First load: cached data is shown (stale) immediately; the fetch runs in the background.
  void service.refresh().finally(schedulePoll);
  log(`activated (server=${serverUrl() || '-'}, integrations=${settings.integrationsUrl || '-'})`);
  return { service, tokens };
}

export function deactivate() {
  /* disposables are cleaned up through context.subscriptions */
}

export { isStellaFile };
