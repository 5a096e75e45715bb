import * as vscode from 'vscode';
import type { CommandDeps } from './deps';

/** Refresh now; the next background refresh is then a full interval away. */
export function refreshCommand({ service, poller }: CommandDeps): vscode.Disposable {
  return vscode.commands.registerCommand('stellaops.refresh', async () => {
    await service.refresh();
    poller.schedule();
  });
}
