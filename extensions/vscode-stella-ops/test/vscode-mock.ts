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
/** What the code under test showed, ran and opened; `answers.warning` is the button the user "clicks" in a warning. */
export const calls = { warnings: [] as Array<{ message: string; items: string[] }>, statusBarMessages: [] as string[], executed: [] as Array<{ command: string; args: any[] }>, opened: [] as Uri[] };
export const answers: { warning?: string } = {};
export function resetCalls() {
  calls.warnings = [];
  calls.statusBarMessages = [];
  calls.executed = [];
  calls.opened = [];
  answers.warning = undefined;
}
export const window = {
  createStatusBarItem: (_id?: string, _a?: StatusBarAlignment, _p?: number) => {
    const i = new FakeStatusBarItem();
    created.statusBarItems.push(i);
    return i;
  },
  showWarningMessage: (message: string, ...items: string[]) => {
    calls.warnings.push({ message, items });
    return Promise.resolve(answers.warning);
  },
  setStatusBarMessage: (text: string, _ms?: number) => {
    calls.statusBarMessages.push(text);
    return { dispose: () => undefined };
  },
};
export const commands = {
  executeCommand: (command: string, ...args: any[]) => {
    calls.executed.push({ command, args });
    return Promise.resolve(undefined);
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
  constructor(readonly path: string, readonly scheme = 'file', readonly authority = '', readonly query = '', readonly fragment = '') {}
  static file(p: string) {
    return new Uri(p);
  }
  static parse(s: string) {
    const u = new URL(s);
    return new Uri(u.pathname, u.protocol.slice(0, -1), u.host, u.search.slice(1), u.hash.slice(1));
  }
  with(c: { path?: string; query?: string; fragment?: string }) {
    return new Uri(c.path ?? this.path, this.scheme, this.authority, c.query ?? this.query, c.fragment ?? this.fragment);
  }
  toString(_skipEncoding?: boolean) {
    return `${this.scheme}://${this.authority}${this.path}${this.query ? `?${this.query}` : ''}${this.fragment ? `#${this.fragment}` : ''}`;
  }
}
/** `asExternalUri` is the host's port forward: unchanged unless a test replaces it. */
export const env = {
  asExternalUri: async (u: Uri) => u,
  openExternal: async (u: Uri) => {
    calls.opened.push(u);
    return true;
  },
};
/** Minimal TextDocument for providers. */
export function textDocument(path: string, text: string, version = 1) {
  return { uri: Uri.file(path), version, getText: () => text, lineCount: text.split('\n').length };
}
