import * as vscode from 'vscode';
import { ApiError } from '../../core/http';
import { errMsg } from '../../core/service';
import { NodeModel, PromoteArgs, versionOf } from '../../core/viewModel';
import { withAbort } from '../abort';
import type { CommandDeps } from './deps';

/**
 * Promote Release…: from a CodeLens (release and target given), a Releases view item (target asked) or the palette
 * (both asked). Reason and ticket are asked and confirmed; the promotion is sent with an elevated token.
 */
export function promoteCommand({ backends, service, log }: CommandDeps): vscode.Disposable {
  const { tokens } = backends;
  return vscode.commands.registerCommand('stellaops.promoteRelease', async (arg?: PromoteArgs | NodeModel) => {
    const orch = backends.orchestrator();
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
}
