import * as vscode from 'vscode';
import type { DataService } from '../core/service';
import { environmentNodes, integrationNodes, releaseNodes } from '../core/viewModel';
import { SnapshotTreeProvider } from './trees';

/** The views of the Stella Ops activity bar container: Releases, Environments, Integrations. */
export function registerViews(service: DataService): vscode.Disposable[] {
  const releasesTree = new SnapshotTreeProvider(service, releaseNodes);
  const environmentsTree = new SnapshotTreeProvider(service, environmentNodes);
  const integrationsTree = new SnapshotTreeProvider(service, integrationNodes);
  return [
    releasesTree,
    environmentsTree,
    integrationsTree,
    vscode.window.createTreeView('stellaops.releases', { treeDataProvider: releasesTree, showCollapseAll: true }),
    vscode.window.createTreeView('stellaops.environments', { treeDataProvider: environmentsTree }),
    vscode.window.createTreeView('stellaops.integrations', { treeDataProvider: integrationsTree }),
  ];
}
