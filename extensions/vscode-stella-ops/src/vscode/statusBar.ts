import * as vscode from 'vscode';
import type { DataService } from '../core/service';
import { liveText, statusBarModel, StatusBarModel } from '../core/viewModel';

/** Status bar widget: signed-out / connected ("Stella ✓ 12 ✗ 1") / offline; click opens the Integrations view. */
export class StatusBar implements vscode.Disposable {
  readonly item: vscode.StatusBarItem;
  private readonly sub: { dispose(): void };
  model: StatusBarModel;
  private live = '';

  constructor(service: DataService) {
    this.item = vscode.window.createStatusBarItem('stellaops.status', vscode.StatusBarAlignment.Left, 50);
    this.item.name = 'Stella Ops';
    this.item.command = 'stellaops.showIntegrations';
    this.model = statusBarModel(service.snapshot);
    this.live = liveText(service.snapshot.live);
    this.render();
    this.sub = service.onDidChange((s) => {
      this.model = statusBarModel(s);
      this.live = s.integrationsConn === 'connected' ? liveText(s.live) : '';
      this.render();
    });
    this.item.show();
  }

  private render() {
    this.item.text = this.model.text;
    this.item.tooltip = this.model.tooltip;
    this.item.backgroundColor = this.model.state === 'offline' || this.model.state === 'error' ? new vscode.ThemeColor('statusBarItem.warningBackground') : undefined;
    this.item.accessibilityInformation = { label: `${this.model.text} (${this.model.state}${this.live ? `; integrations ${this.live.replace(/ — .*/, '')}` : ''})` };
  }

  dispose() {
    this.sub.dispose();
    this.item.dispose();
  }
}
