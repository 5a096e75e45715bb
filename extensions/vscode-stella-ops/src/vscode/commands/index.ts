import type * as vscode from 'vscode';
import type { CommandDeps } from './deps';
import { integrationsCommands } from './integrations';
import { promoteCommand } from './promote';
import { refreshCommand } from './refresh';
import { sessionCommands } from './session';

export type { CommandDeps } from './deps';

/** The commands contributed in package.json. */
export function registerCommands(deps: CommandDeps): vscode.Disposable[] {
  return [...sessionCommands(deps), refreshCommand(deps), ...integrationsCommands(deps), promoteCommand(deps)];
}
