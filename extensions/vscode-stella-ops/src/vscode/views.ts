import * as vscode from 'vscode';
import type { DataService } from '../core/service';
import { deploymentNodes, environmentNodes, integrationNodes, IntegrationMarks, releaseNodes } from '../core/viewModel';
import { SnapshotTreeProvider } from './trees';

/** The views of the Stella Ops activity bar container: Releases, Environments, Deployments, Integrations. */
export function registerViews(service: DataService, marks?: IntegrationMarks): vscode.Disposable[] {
  const releasesTree = new SnapshotTreeProvider(service, releaseNodes);
  const environmentsTree = new SnapshotTreeProvider(service, environmentNodes);
  const deploymentsTree = new SnapshotTreeProvider(service, deploymentNodes);
  const integrationsTree = new SnapshotTreeProvider(service, (s) => integrationNodes(s, marks));
  return [
    releasesTree,
    environmentsTree,
    deploymentsTree,
    integrationsTree,
    vscode.window.createTreeView('stellaops.releases', { treeDataProvider: releasesTree, showCollapseAll: true }),
    vscode.window.createTreeView('stellaops.environments', { treeDataProvider: environmentsTree }),
    vscode.window.createTreeView('stellaops.deployments', { treeDataProvider: deploymentsTree }),
    vscode.window.createTreeView('stellaops.integrations', { treeDataProvider: integrationsTree }),
  ];
}
