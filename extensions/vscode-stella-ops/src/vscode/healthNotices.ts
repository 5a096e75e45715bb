import * as vscode from 'vscode';
import type { HealthNotification } from '../core/healthTracker';
import type { Log } from './log';

/** The text of a health notification (the core decides whether and when; this only words it). */
export function healthNoticeText(n: HealthNotification): string {
  if (n.kind === 'incident') {
    const what = n.title ? `${n.title}: ` : '';
    return `Stella Ops: incident — ${what}${n.names.join(', ')} affected${n.reason ? ` (${n.reason})` : ''}.`;
  }
  const detail = n.message && n.message !== n.reason ? ` — ${n.message}` : '';
  return `Stella Ops: ${n.name} is ${n.status === 'error' ? 'in error' : n.status}${n.reason ? `: ${n.reason}` : ''}${detail}`;
}

export const RUN_CHECK = 'Run health check';
export const OPEN_SWAGGER = 'Open in Swagger UI';
export const SHOW_INTEGRATIONS = 'Show Integrations';

/**
 * Shows the tracker's notifications: one per integration per status change (into unhealthy/error), one per
 * incident; with "Run health check" / "Open in Swagger UI" actions.
 */
export function healthNoticeHandler(log: Log): (n: HealthNotification) => void {
  return (n) => {
    const text = healthNoticeText(n);
    log(text);
    const actions = n.kind === 'integration' ? [RUN_CHECK, OPEN_SWAGGER] : [SHOW_INTEGRATIONS, OPEN_SWAGGER];
    void vscode.window.showWarningMessage(text, ...actions).then((choice) => {
      if (choice === RUN_CHECK && n.kind === 'integration') void vscode.commands.executeCommand('stellaops.runHealthCheck', n.integrationId);
      else if (choice === OPEN_SWAGGER) void vscode.commands.executeCommand('stellaops.openSwaggerUi');
      else if (choice === SHOW_INTEGRATIONS) void vscode.commands.executeCommand('stellaops.showIntegrations');
    });
  };
}
