import * as vscode from 'vscode';
import type { CommandDeps } from './deps';

/** Refresh now, the integration list included (the event stream, if down, is retried); the next background refresh is then a full interval away. */
export function refreshCommand({ service, poller, live }: CommandDeps): vscode.Disposable {
  return vscode.commands.registerCommand('stellaops.refresh', async () => {
    live?.update();
    await service.refresh(undefined, { integrations: true });
    poller.schedule();
  });
}
