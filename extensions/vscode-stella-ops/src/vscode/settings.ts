import * as vscode from 'vscode';
import { Settings, settingsFrom } from '../core/settings';

export function readSettings(): Settings {
  return settingsFrom(vscode.workspace.getConfiguration('stellaops'));
}

/** The `stellaops.*` settings as last read; `watch` keeps them current. */
export class WorkspaceSettings {
  current: Settings = readSettings();

  /** Re-reads the settings, then calls `changed`, whenever a `stellaops.*` setting changes. */
  watch(changed: () => void): vscode.Disposable {
    return vscode.workspace.onDidChangeConfiguration((e) => {
      if (!e.affectsConfiguration('stellaops')) return;
      this.current = readSettings();
      changed();
    });
  }
}
