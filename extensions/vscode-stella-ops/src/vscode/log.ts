import * as vscode from 'vscode';

export type Log = (m: string) => void;

/** The "Stella Ops" output channel, and a log function that writes time-stamped lines to it. */
export function createLog(): { channel: vscode.OutputChannel; log: Log } {
  const channel = vscode.window.createOutputChannel('Stella Ops');
  return { channel, log: (m: string) => channel.appendLine(`[${new Date().toISOString()}] ${m}`) };
}
