import * as vscode from 'vscode';
import * as fs from 'fs';
import * as path from 'path';
import type { DataService } from '../core/service';
import { parseStellaYaml, ParseResult } from '../core/stellaYaml';
import { codeLenses } from '../core/viewModel';

/** The stella.yaml schema packaged with the extension (copied from extensions/schema by the build). */
export function readSchema(extensionPath: string): object {
  return JSON.parse(fs.readFileSync(path.join(extensionPath, 'schema', 'stella.schema.json'), 'utf8'));
}

export const STELLA_SELECTOR: vscode.DocumentSelector = [{ pattern: '**/stella.yaml' }, { pattern: '**/stella.yml' }];

export function isStellaFile(doc: vscode.TextDocument): boolean {
  return /(^|[\\/])stella\.ya?ml$/.test(doc.uri.path);
}

/** Parses each stella.yaml once per version. */
export class StellaDocuments {
  private cache = new Map<string, { version: number; envKey: string; result: ParseResult }>();
  constructor(private readonly schema: object, private readonly service: DataService) {}

  parse(doc: vscode.TextDocument): ParseResult {
    const envs = this.service.snapshot.environments.data?.map((e) => e.name);
    const envKey = envs ? envs.join(',') : '';
    const key = doc.uri.toString();
    const hit = this.cache.get(key);
    if (hit && hit.version === doc.version && hit.envKey === envKey) return hit.result;
    const result = parseStellaYaml(doc.getText(), this.schema, envs ? { serverEnvironments: envs } : {});
    this.cache.set(key, { version: doc.version, envKey, result });
    return result;
  }

  forget(doc: vscode.TextDocument) {
    this.cache.delete(doc.uri.toString());
  }
}

export class StellaCodeLensProvider implements vscode.CodeLensProvider, vscode.Disposable {
  private readonly emitter = new vscode.EventEmitter<void>();
  readonly onDidChangeCodeLenses = this.emitter.event;
  private readonly sub: { dispose(): void };

  constructor(private readonly docs: StellaDocuments, private readonly service: DataService) {
    this.sub = service.onDidChange(() => this.emitter.fire());
  }

  provideCodeLenses(doc: vscode.TextDocument): vscode.CodeLens[] {
    if (!isStellaFile(doc)) return [];
    const { model } = this.docs.parse(doc);
    return codeLenses(model, this.service.snapshot).map((l) => {
      const line = Math.max(0, Math.min(doc.lineCount - 1, l.line - 1));
      return new vscode.CodeLens(new vscode.Range(line, 0, line, 0), { title: l.title, command: l.command, arguments: l.arguments });
    });
  }

  dispose() {
    this.sub.dispose();
    this.emitter.dispose();
  }
}

/** Diagnostics from the shared schema and the semantic checks (same contract as the JetBrains annotator). */
export class StellaDiagnostics implements vscode.Disposable {
  readonly collection = vscode.languages.createDiagnosticCollection('stellaops');
  constructor(private readonly docs: StellaDocuments) {}

  update(doc: vscode.TextDocument) {
    if (!isStellaFile(doc)) return;
    const { diagnostics } = this.docs.parse(doc);
    this.collection.set(
      doc.uri,
      diagnostics.map((d) => {
        const range = new vscode.Range(d.line - 1, d.column - 1, d.endLine - 1, d.endColumn - 1);
        const diag = new vscode.Diagnostic(range, d.message, d.severity === 'error' ? vscode.DiagnosticSeverity.Error : vscode.DiagnosticSeverity.Warning);
        diag.source = 'stella';
        diag.code = d.kind;
        return diag;
      }),
    );
  }

  clear(doc: vscode.TextDocument) {
    this.collection.delete(doc.uri);
  }

  dispose() {
    this.collection.dispose();
  }
}

/** CodeLens and diagnostics for stella.yaml; diagnostics follow edits, open and closed files, and new server data. */
export function registerStellaYaml(schema: object, service: DataService): vscode.Disposable[] {
  const docs = new StellaDocuments(schema, service);
  const lenses = new StellaCodeLensProvider(docs, service);
  const diagnostics = new StellaDiagnostics(docs);
  const refreshDiagnostics = () => vscode.workspace.textDocuments.forEach((d) => diagnostics.update(d));
  const subs = [
    lenses,
    diagnostics,
    vscode.languages.registerCodeLensProvider(STELLA_SELECTOR, lenses),
    vscode.workspace.onDidOpenTextDocument((d) => diagnostics.update(d)),
    vscode.workspace.onDidChangeTextDocument((e) => diagnostics.update(e.document)),
    vscode.workspace.onDidCloseTextDocument((d) => {
      diagnostics.clear(d);
      docs.forget(d);
    }),
    service.onDidChange(() => refreshDiagnostics()),
  ];
  refreshDiagnostics();
  return subs;
}
