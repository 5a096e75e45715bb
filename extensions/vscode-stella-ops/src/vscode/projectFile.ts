import * as vscode from 'vscode';
import { findProject, ProjectRef } from '../core/project';
import { errMsg } from '../core/service';
import type { Log } from './log';

const PATTERN = '**/stella.{yaml,yml}';

/** The workspace's project file (`project:` filters releases, `server:` overrides the setting). */
export class ProjectFile {
  current: ProjectRef = {};

  constructor(private readonly schema: object, private readonly log: Log) {}

  /** Reads the project file; none found: no project. When reading fails (logged) the previous value is kept. */
  async load(): Promise<void> {
    try {
      const files = await vscode.workspace.findFiles(PATTERN, '**/node_modules/**', 10);
      const found = await findProject(files, async (f) => Buffer.from(await vscode.workspace.fs.readFile(f)).toString('utf8'), this.schema);
      this.current = found?.project ?? {};
      if (found) this.log(`project file ${found.file.fsPath}: project=${found.project.name ?? '-'} server=${found.project.server ?? '(settings)'}`);
    } catch (e) {
      this.log(`reading stella.yaml failed: ${errMsg(e)}`);
    }
  }

  /** Reads the project file again, then calls `reloaded`, whenever a stella.yaml is created, changed or deleted. */
  watch(reloaded: () => unknown): vscode.Disposable[] {
    const watcher = vscode.workspace.createFileSystemWatcher(PATTERN);
    const onChange = () => void this.load().then(() => reloaded());
    return [watcher, watcher.onDidChange(onChange), watcher.onDidCreate(onChange), watcher.onDidDelete(onChange)];
  }
}
