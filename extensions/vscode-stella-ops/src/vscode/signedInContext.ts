import * as vscode from 'vscode';
import type { TokenManager } from '../core/auth';

/** Keeps the `stellaops.signedIn` context key (used by the menus' `when` clauses) in step with the session. */
export function trackSignedIn(tokens: TokenManager): { dispose(): void } {
  const set = () => void vscode.commands.executeCommand('setContext', 'stellaops.signedIn', tokens.isSignedIn);
  set();
  return tokens.onDidChange(set);
}
