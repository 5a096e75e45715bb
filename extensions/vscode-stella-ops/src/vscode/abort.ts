import * as vscode from 'vscode';

/** Runs `f` with an AbortSignal that follows `token` (the Cancel button of a progress notification). */
export function withAbort<T>(token: vscode.CancellationToken, f: (s: AbortSignal) => Promise<T>): Promise<T> {
  const ctl = new AbortController();
  const sub = token.onCancellationRequested(() => ctl.abort());
  return f(ctl.signal).finally(() => sub.dispose());
}
