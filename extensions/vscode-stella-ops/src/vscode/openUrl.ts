import * as vscode from 'vscode';
import type { Log } from './log';

/**
 * Opens a URL in the browser. In remote hosts (code-server, Codespaces) a loopback URL is reached through a
 * port forward: resolve the origin with asExternalUri and keep path and query (forwarding the whole URL
 * drops them in code-server). Elsewhere asExternalUri returns the URL unchanged.
 */
export async function openUrl(url: string, log: Log): Promise<boolean> {
  const u = vscode.Uri.parse(url);
  const external = await vscode.env.asExternalUri(u.with({ path: '/', query: '', fragment: '' }));
  const target = external.with({ path: external.path.replace(/\/*$/, '') + u.path, query: u.query });
  log(`opening ${target.toString(true)}`);
  return vscode.env.openExternal(target);
}
