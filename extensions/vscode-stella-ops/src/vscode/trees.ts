import * as vscode from 'vscode';
import type { DataService, Snapshot } from '../core/service';
import type { NodeModel } from '../core/viewModel';

export function toTreeItem(n: NodeModel): vscode.TreeItem {
  const item = new vscode.TreeItem(n.label, n.children?.length ? vscode.TreeItemCollapsibleState.Collapsed : vscode.TreeItemCollapsibleState.None);
  item.id = n.id;
  item.description = n.description;
  if (n.tooltip) item.tooltip = new vscode.MarkdownString(n.tooltip);
  if (n.icon) item.iconPath = new vscode.ThemeIcon(n.icon.id, n.icon.color ? new vscode.ThemeColor(n.icon.color) : undefined);
  item.contextValue = n.contextValue;
  if (n.command) item.command = { command: n.command.command, title: n.command.title, arguments: n.command.arguments };
  return item;
}

/** A tree whose content is a pure function of the service snapshot. */
export class SnapshotTreeProvider implements vscode.TreeDataProvider<NodeModel>, vscode.Disposable {
  private readonly emitter = new vscode.EventEmitter<NodeModel | undefined | void>();
  readonly onDidChangeTreeData = this.emitter.event;
  private readonly sub: { dispose(): void };
  private roots: NodeModel[];

  constructor(private readonly service: DataService, private readonly compute: (s: Snapshot) => NodeModel[]) {
    this.roots = compute(service.snapshot);
    this.sub = service.onDidChange((s) => {
      this.roots = compute(s);
      this.emitter.fire();
    });
  }

  getTreeItem(n: NodeModel): vscode.TreeItem {
    return toTreeItem(n);
  }

  getChildren(n?: NodeModel): NodeModel[] {
    return n ? n.children ?? [] : this.roots;
  }

  dispose() {
    this.sub.dispose();
    this.emitter.dispose();
  }
}
