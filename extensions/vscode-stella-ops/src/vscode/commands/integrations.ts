import * as vscode from 'vscode';
import { ApiError } from '../../core/http';
import { errMsg } from '../../core/service';
import type { Integration } from '../../core/types';
import type { NodeModel } from '../../core/viewModel';
import { withAbort } from '../abort';
import { openUrl } from '../openUrl';
import type { CommandDeps } from './deps';

/** The Integrations daemon: show its view, open its Swagger UI, run a health check on one integration. */
export function integrationsCommands({ backends, service, log }: CommandDeps): vscode.Disposable[] {
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

    vscode.commands.registerCommand('stellaops.runHealthCheck', async (arg?: NodeModel) => {
      const c = backends.integrations();
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
    }),
  ];
}
