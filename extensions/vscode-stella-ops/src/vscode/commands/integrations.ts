import * as vscode from 'vscode';
import { ApiError } from '../../core/http';
import { errMsg } from '../../core/service';
import type { Integration } from '../../core/types';
import type { NodeModel } from '../../core/viewModel';
import { withAbort } from '../abort';
import { openUrl } from '../openUrl';
import type { CommandDeps } from './deps';

/** `stellaops.integrations.pinned` with `name` added or removed (names or ids; both forms of the integration are removed). */
export function pinnedAfter(pinned: string[], i: { id: string; name: string }, pin: boolean): string[] {
  const rest = pinned.filter((p) => p !== i.id && p !== i.name);
  return pin ? [...rest, i.name] : rest;
}

/** The integration a command was invoked on: a tree node, an integration id (from a notification), or none. */
function integrationOf(arg: unknown, items: Integration[]): Integration | undefined {
  if (typeof arg === 'string') return items.find((i) => i.id === arg);
  const id = (arg as NodeModel | undefined)?.id;
  if (typeof id === 'string' && id.startsWith('integration:')) return items.find((i) => i.id === id.slice('integration:'.length));
  return undefined;
}

/** The Integrations daemon: show its view, open its Swagger UI, run a health check on one integration, pin one. */
export function integrationsCommands({ backends, service, log }: CommandDeps): vscode.Disposable[] {
  const setPinned = async (arg: unknown, pin: boolean) => {
    const i = integrationOf(arg, service.snapshot.integrations.data ?? []);
    if (!i) return;
    const next = pinnedAfter(backends.settings.pinned, i, pin);
    await vscode.workspace.getConfiguration('stellaops').update('integrations.pinned', next, vscode.ConfigurationTarget.Global);
    log(`${pin ? 'pinned' : 'unpinned'} ${i.name}`);
  };
  return [
    vscode.commands.registerCommand('stellaops.showIntegrations', async () => {
      await vscode.commands.executeCommand('stellaops.integrations.focus');
    }),

    vscode.commands.registerCommand('stellaops.openSwaggerUi', async () => {
      const c = backends.integrations();
      if (!c) {
        void vscode.window.showWarningMessage('Stella Ops: set stellaops.integrationsUrl first.');
        return;
      }
      await openUrl(c.swaggerUrl(), log);
    }),

    vscode.commands.registerCommand('stellaops.pinIntegration', (arg?: NodeModel) => setPinned(arg, true)),
    vscode.commands.registerCommand('stellaops.unpinIntegration', (arg?: NodeModel) => setPinned(arg, false)),

    vscode.commands.registerCommand('stellaops.runHealthCheck', async (arg?: NodeModel | string) => {
      const c = backends.integrations();
      if (!c) return void vscode.window.showWarningMessage('Stella Ops: set stellaops.integrationsUrl first.');
      const items = service.snapshot.integrations.data ?? [];
      let integ: Integration | undefined = integrationOf(arg, items);
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
        service.applyCheckResult(target.id, { status: r.status, reason: r.reason, message: r.message, checkedAt: r.checkedAt ?? new Date().toISOString() });
        void vscode.window.showInformationMessage(`Stella Ops: ${target.name}: ${r.status}${r.reason ? ` (${r.reason})` : ''}${r.latencyMs != null ? ` in ${r.latencyMs} ms` : ''}`);
        void service.refresh();
      } catch (e) {
        if (e instanceof ApiError && e.kind === 'aborted') return;
        void vscode.window.showErrorMessage(`Stella Ops: health check failed: ${errMsg(e)}`);
      }
    }),
  ];
}
