// A small hand-written stand-in for the `vscode` module: just what the adapters under test use.
/* eslint-disable @typescript-eslint/no-explicit-any */
export class EventEmitter<T> {
  private listeners: Array<(e: T) => void> = [];
  fired = 0;
  event = (l: (e: T) => void) => {
    this.listeners.push(l);
    return { dispose: () => (this.listeners = this.listeners.filter((x) => x !== l)) };
  };
  fire(e?: T) {
    this.fired++;
    for (const l of this.listeners) l(e as T);
  }
  dispose() {
    this.listeners = [];
  }
}
export enum TreeItemCollapsibleState {
  None = 0,
  Collapsed = 1,
  Expanded = 2,
}
export class ThemeColor {
  constructor(readonly id: string) {}
}
export class ThemeIcon {
  constructor(readonly id: string, readonly color?: ThemeColor) {}
}
export class MarkdownString {
  constructor(readonly value: string) {}
}
export class TreeItem {
  id?: string;
  description?: string;
  tooltip?: any;
  iconPath?: any;
  contextValue?: string;
  command?: any;
  constructor(readonly label: string, readonly collapsibleState: TreeItemCollapsibleState) {}
}
export class Position {
  constructor(readonly line: number, readonly character: number) {}
}
export class Range {
  readonly start: Position;
  readonly end: Position;
  constructor(a: number, b: number, c: number, d: number) {
    this.start = new Position(a, b);
    this.end = new Position(c, d);
  }
}
export class CodeLens {
  constructor(readonly range: Range, readonly command?: { title: string; command: string; arguments?: any[] }) {}
}
export enum DiagnosticSeverity {
  Error = 0,
  Warning = 1,
  Information = 2,
  Hint = 3,
}
export class Diagnostic {
  source?: string;
  code?: string;
  constructor(readonly range: Range, readonly message: string, readonly severity: DiagnosticSeverity) {}
}
export enum StatusBarAlignment {
  Left = 1,
  Right = 2,
}
export class FakeStatusBarItem {
  text = '';
  tooltip: any;
  command: any;
  name?: string;
  backgroundColor?: ThemeColor;
  accessibilityInformation?: any;
  visible = false;
  show() {
    this.visible = true;
  }
  hide() {
    this.visible = false;
  }
  dispose() {
    this.visible = false;
  }
}
export const created: { statusBarItems: FakeStatusBarItem[]; diagnostics: Map<string, Diagnostic[]> } = { statusBarItems: [], diagnostics: new Map() };
export const window = {
  createStatusBarItem: (_id?: string, _a?: StatusBarAlignment, _p?: number) => {
    const i = new FakeStatusBarItem();
    created.statusBarItems.push(i);
    return i;
  },
};
export const languages = {
  createDiagnosticCollection: (_name: string) => ({
    set: (uri: { toString(): string }, d: Diagnostic[]) => created.diagnostics.set(uri.toString(), d),
    delete: (uri: { toString(): string }) => created.diagnostics.delete(uri.toString()),
    dispose: () => undefined,
  }),
};
export class Uri {
  constructor(readonly path: string) {}
  static file(p: string) {
    return new Uri(p);
  }
  toString() {
    return `file://${this.path}`;
  }
}
/** Minimal TextDocument for providers. */
export function textDocument(path: string, text: string, version = 1) {
  return { uri: Uri.file(path), version, getText: () => text, lineCount: text.split('\n').length };
}
