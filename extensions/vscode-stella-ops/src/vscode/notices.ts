import * as vscode from 'vscode';
import type { Notice } from '../core/service';
import type { Log } from './log';

/**
 * Shows the DataService's notices: one unobtrusive notice per transition (and at most one a minute per backend),
 * never an error storm. Back online is a status bar message only.
 */
export function noticeHandler(channel: vscode.OutputChannel, log: Log): (n: Notice) => void {
  const lastNotice = new Map<string, number>();
  return (n: Notice) => {
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
      if (choice === 'Show log') channel.show(true);
    });
  };
}
