import * as vscode from 'vscode';
import { ApiError } from '../../core/http';
import { errMsg } from '../../core/service';
import { withAbort } from '../abort';
import { openUrl } from '../openUrl';
import type { CommandDeps } from './deps';

/** Sign in (Authority token, then the Integrations API key), set the API key, sign out. */
export function sessionCommands({ backends, service, live, log }: CommandDeps): vscode.Disposable[] {
  const { tokens } = backends;

  const askApiKey = async () => {
    const key = await vscode.window.showInputBox({
      title: 'Stella Ops: Integrations API key',
      prompt: `API key for ${backends.settings.integrationsUrl || 'the Integrations daemon'} (kept in the OS secret store)`,
      password: true,
      ignoreFocusOut: true,
    });
    if (!key) return false;
    await backends.setApiKey(key.trim());
    live?.update({ keyChanged: true });
    return true;
  };

  return [
    vscode.commands.registerCommand('stellaops.signIn', async () => {
      if (!backends.authorityUrl() && !backends.settings.integrationsUrl) {
        void vscode.window.showWarningMessage('Stella Ops: set stellaops.serverUrl first.', 'Open settings').then((c) => c && vscode.commands.executeCommand('workbench.action.openSettings', 'stellaops'));
        return;
      }
      if (backends.authorityUrl()) {
        let flow = backends.settings.flow;
        if (flow === 'ask') {
          const pick = await vscode.window.showQuickPick(
            [
              { label: 'Sign in with a browser (device code)', flow: 'device_code' as const },
              { label: 'Client credentials (service account secret)', flow: 'client_credentials' as const },
            ],
            { title: 'Stella Ops: Sign in', ignoreFocusOut: true },
          );
          if (!pick) return;
          flow = pick.flow;
        }
        try {
          if (flow === 'client_credentials') {
            const secret = await vscode.window.showInputBox({ title: `Client secret for ${backends.settings.clientId}`, password: true, ignoreFocusOut: true });
            if (!secret) return;
            await vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title: 'Stella Ops: signing in…', cancellable: true }, (_p, token) =>
              withAbort(token, (signal) => tokens.signInClientCredentials(secret, signal)),
            );
          } else {
            await vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title: 'Stella Ops: waiting for sign-in in the browser…', cancellable: true }, (progress, token) =>
              withAbort(token, (signal) =>
                tokens.signInDeviceCode((p) => {
                  log(`device sign-in: code ${p.userCode} at ${p.verificationUri}`);
                  progress.report({ message: `code ${p.userCode} at ${p.verificationUri}` });
                  // Polling runs meanwhile; the dialog only helps the user get to the verification page.
                  void vscode.window
                    .showInformationMessage(`Sign in to Stella Ops with the code ${p.userCode}`, { modal: true, detail: `Open ${p.verificationUri} and enter the code. The button copies it to the clipboard and opens that page.` }, 'Copy & Open Browser')
                    .then(async (c) => {
                      if (!c) return;
                      await vscode.env.clipboard.writeText(p.userCode);
                      await openUrl(p.verificationUriComplete ?? p.verificationUri, log);
                    });
                }, signal),
              ),
            );
          }
          log('signed in');
          vscode.window.setStatusBarMessage('Stella Ops: signed in', 5000);
        } catch (e) {
          if (e instanceof ApiError && e.kind === 'aborted') return;
          void vscode.window.showErrorMessage(`Stella Ops: sign-in failed: ${errMsg(e)}`);
          return;
        }
      }
      if (backends.settings.integrationsUrl && !backends.hasApiKey) await askApiKey();
      await service.refresh();
    }),

    vscode.commands.registerCommand('stellaops.setIntegrationsApiKey', async () => {
      if (await askApiKey()) await service.refresh();
    }),

    vscode.commands.registerCommand('stellaops.signOut', async () => {
      await tokens.signOut();
      await backends.deleteApiKey();
      live?.update();
      await service.clear('orchestrator');
      await service.clear('integrations');
      await service.refresh();
      vscode.window.setStatusBarMessage('Stella Ops: signed out', 5000);
    }),
  ];
}
