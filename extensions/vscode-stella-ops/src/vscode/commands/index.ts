import type * as vscode from 'vscode';
import type { Backends } from '../../core/backends';
import type { Poller } from '../../core/poller';
import type { DataService } from '../../core/service';
import type { Log } from '../log';
import { integrationsCommands } from './integrations';
import { promoteCommand } from './promote';
import { refreshCommand } from './refresh';
import { sessionCommands } from './session';

export interface CommandDeps {
  backends: Backends;
  service: DataService;
  poller: Poller;
  log: Log;
}

/** The commands contributed in package.json. */
export function registerCommands(deps: CommandDeps): vscode.Disposable[] {
  return [...sessionCommands(deps), refreshCommand(deps), ...integrationsCommands(deps), promoteCommand(deps)];
}
