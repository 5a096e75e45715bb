// stella.yaml: parse with positions, validate against extensions/schema/stella.schema.json, semantic checks,
// and the model the CodeLens provider renders. The diagnostics follow extensions/fixtures/README.md.
import Ajv, { ErrorObject, ValidateFunction } from 'ajv';
import { Document, LineCounter, Node, Pair, Scalar, isMap, isPair, isScalar, isSeq, parseDocument } from 'yaml';

export type Severity = 'error' | 'warning';

export interface StellaDiagnostic {
  kind: string;
  severity: Severity;
  /** JSON Pointer of the offending value ('' = document root). */
  path: string;
  /** 1-based. */
  line: number;
  column: number;
  endLine: number;
  endColumn: number;
  message: string;
  /** For schema-required: the missing property. */
  property?: string;
}

export interface Located {
  line: number; // 1-based
  column: number; // 1-based
}

export interface EnvEntry extends Located {
  name: string;
  index: number;
}

export interface StellaModel {
  project?: string;
  projectAt?: Located;
  server?: string;
  environments: EnvEntry[];
  promotion?: { from?: string; to?: string; at: Located };
  /** `integrations:`: names or ids of the hub's integrations the project depends on (the ones that are strings). */
  integrations: string[];
  /** The document is an OpenAPI file (upstream keeps one named stella.yaml); not ours. */
  isOpenApi: boolean;
}

export interface ValidationContext {
  /** Environment names known to the Orchestrator; names outside it give environment-not-on-server warnings. */
  serverEnvironments?: string[];
}

export interface ParseResult {
  model: StellaModel;
  diagnostics: StellaDiagnostic[];
}

const validators = new WeakMap<object, ValidateFunction>();
function validatorFor(schema: object): ValidateFunction {
  let v = validators.get(schema);
  if (!v) {
    const ajv = new Ajv({ allErrors: true, strict: false });
    v = ajv.compile(schema);
    validators.set(schema, v);
  }
  return v;
}

type Seg = string | number;

function pointer(segs: Seg[]): string {
  return segs.map((s) => '/' + String(s).replace(/~/g, '~0').replace(/\//g, '~1')).join('');
}
function parsePointer(p: string): Seg[] {
  if (!p) return [];
  return p
    .split('/')
    .slice(1)
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((s) => (/^\d+$/.test(s) ? Number(s) : s));
}

interface Found {
  node?: Node | null;
  pair?: Pair;
}

/** Walk the YAML AST along a JSON Pointer; returns the value node and, for mapping entries, its pair. */
function find(doc: Document, segs: Seg[]): Found {
  let cur: unknown = doc.contents;
  let pair: Pair | undefined;
  for (const s of segs) {
    if (isMap(cur)) {
      pair = cur.items.find((p) => isPair(p) && (isScalar(p.key) ? String((p.key as Scalar).value) : String(p.key)) === String(s)) as Pair | undefined;
      if (!pair) return {};
      cur = pair.value;
    } else if (isSeq(cur) && typeof s === 'number') {
      pair = undefined;
      cur = cur.items[s];
      if (cur === undefined) return {};
    } else return {};
  }
  return { node: (cur as Node | null) ?? null, pair };
}

function rangeOf(n: unknown): [number, number] | undefined {
  const r = (n as any)?.range as [number, number, number] | undefined;
  return r ? [r[0], r[1]] : undefined;
}

function isEmptyScalar(n: unknown): boolean {
  return !n || (isScalar(n) && n.value === null && (n.source === '' || n.source === undefined) && rangeOf(n)?.[0] === rangeOf(n)?.[1]);
}

export function parseStellaYaml(text: string, schema: object, ctx: ValidationContext = {}): ParseResult {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true });
  const diags: StellaDiagnostic[] = [];
  const pos = (offset: number) => {
    const p = lc.linePos(offset);
    return { line: p.line, column: p.col };
  };
  const span = (r: [number, number] | undefined) => {
    const a = pos(r?.[0] ?? 0);
    const b = pos(r?.[1] ?? r?.[0] ?? 0);
    return { line: a.line, column: a.column, endLine: b.line, endColumn: Math.max(b.column, a.line === b.line ? a.column + 1 : b.column) };
  };
  const emptyModel: StellaModel = { environments: [], integrations: [], isOpenApi: false };

  if (doc.errors.length) {
    const e = doc.errors[0];
    const r: [number, number] = [e.pos[0], Math.max(e.pos[1], e.pos[0] + 1)];
    diags.push({ kind: 'yaml-syntax', severity: 'error', path: '', ...span(r), message: `YAML syntax error: ${e.message.split('\n')[0]}` });
    return { model: emptyModel, diagnostics: diags };
  }
  const data = doc.toJS({ maxAliasCount: 100 }) ?? null;
  const isOpenApi = !!data && typeof data === 'object' && !Array.isArray(data) && ('openapi' in data || 'swagger' in data);
  if (isOpenApi) return { model: { ...emptyModel, isOpenApi: true }, diagnostics: [] };

  /** Location of the value at `segs`; empty (implicit null) values and missing nodes fall back to the key. */
  const valueSpan = (segs: Seg[], useKey = false) => {
    const f = find(doc, segs);
    if (!useKey && f.node && !isEmptyScalar(f.node)) return span(rangeOf(f.node));
    if (f.pair && f.pair.key) return span(rangeOf(f.pair.key));
    if (f.node) return span(rangeOf(f.node));
    return span(rangeOf(doc.contents) ?? [0, 0]);
  };

  const validate = validatorFor(schema);
  if (!validate(data)) {
    for (const err of validate.errors ?? []) diags.push(schemaDiagnostic(err, valueSpan));
  }

  // Model for CodeLens, built from whatever is well-typed.
  const model: StellaModel = { environments: [], integrations: [], isOpenApi: false };
  if (data && typeof data === 'object' && !Array.isArray(data)) {
    if (typeof data.project === 'string') {
      model.project = data.project;
      const s = valueSpan(['project'], true);
      model.projectAt = { line: s.line, column: s.column };
    }
    if (typeof data.server === 'string') model.server = data.server;
    if (Array.isArray(data.integrations)) model.integrations = data.integrations.filter((x: unknown): x is string => typeof x === 'string' && x.length > 0);
    if (Array.isArray(data.environments)) {
      data.environments.forEach((e: any, i: number) => {
        if (e && typeof e === 'object' && typeof e.name === 'string') {
          const s = valueSpan(['environments', i]);
          model.environments.push({ name: e.name, index: i, line: s.line, column: s.column });
        }
      });
    }
    if (data.promotion && typeof data.promotion === 'object' && !Array.isArray(data.promotion)) {
      const s = valueSpan(['promotion'], true);
      model.promotion = {
        from: typeof data.promotion.from === 'string' ? data.promotion.from : undefined,
        to: typeof data.promotion.to === 'string' ? data.promotion.to : undefined,
        at: { line: s.line, column: s.column },
      };
    }
  }

  // Semantic checks only on schema-valid documents (keeps both clients' outputs identical).
  if (!diags.length) {
    const names = model.environments.map((e) => e.name);
    const seen = new Set<string>();
    model.environments.forEach((e) => {
      if (seen.has(e.name))
        diags.push({ kind: 'duplicate-name', severity: 'error', path: pointer(['environments', e.index, 'name']), ...valueSpan(['environments', e.index, 'name']), message: `environment "${e.name}" is listed more than once` });
      seen.add(e.name);
    });
    const comps: any[] = Array.isArray(data.components) ? data.components : [];
    const seenC = new Set<string>();
    comps.forEach((c, i) => {
      if (seenC.has(c.name)) diags.push({ kind: 'duplicate-name', severity: 'error', path: pointer(['components', i, 'name']), ...valueSpan(['components', i, 'name']), message: `component "${c.name}" is listed more than once` });
      seenC.add(c.name);
    });
    const p = model.promotion;
    for (const k of ['from', 'to'] as const) {
      const v = p?.[k];
      if (v !== undefined && !names.includes(v))
        diags.push({ kind: 'unknown-environment', severity: 'error', path: pointer(['promotion', k]), ...valueSpan(['promotion', k]), message: `promotion.${k}: "${v}" is not one of the environments (${names.join(', ')})` });
    }
    if (p?.from && p?.to && names.includes(p.from) && names.includes(p.to) && names.indexOf(p.from) >= names.indexOf(p.to))
      diags.push({ kind: 'promotion-order', severity: 'warning', path: pointer(['promotion', 'to']), ...valueSpan(['promotion', 'to']), message: `promotion goes from "${p.from}" to "${p.to}", which is not later in the promotion order` });
    if (ctx.serverEnvironments) {
      for (const e of model.environments)
        if (!ctx.serverEnvironments.includes(e.name))
          diags.push({ kind: 'environment-not-on-server', severity: 'warning', path: pointer(['environments', e.index, 'name']), ...valueSpan(['environments', e.index, 'name']), message: `environment "${e.name}" is not known to the Orchestrator` });
    }
  }

  diags.sort((a, b) => a.line - b.line || a.column - b.column || a.kind.localeCompare(b.kind) || a.path.localeCompare(b.path));
  return { model, diagnostics: diags };
}

const KIND: Record<string, string> = {
  required: 'schema-required',
  additionalProperties: 'schema-additional-property',
  type: 'schema-type',
  const: 'schema-const',
  enum: 'schema-enum',
  pattern: 'schema-pattern',
  minimum: 'schema-minimum',
  minItems: 'schema-min-items',
  minLength: 'schema-min-length',
};

function schemaDiagnostic(err: ErrorObject, valueSpan: (segs: Seg[], useKey?: boolean) => { line: number; column: number; endLine: number; endColumn: number }): StellaDiagnostic {
  const segs = parsePointer(err.instancePath);
  const kind = KIND[err.keyword] ?? `schema-${err.keyword}`;
  const where = err.instancePath || '(root)';
  if (err.keyword === 'required') {
    const prop = (err.params as any).missingProperty as string;
    return { kind, severity: 'error', path: err.instancePath, property: prop, ...valueSpan(segs), message: `${where}: missing required property "${prop}"` };
  }
  if (err.keyword === 'additionalProperties') {
    const prop = (err.params as any).additionalProperty as string;
    return { kind, severity: 'error', path: pointer([...segs, prop]), ...valueSpan([...segs, prop], true), message: `${where}: unknown property "${prop}"` };
  }
  return { kind, severity: 'error', path: err.instancePath, ...valueSpan(segs), message: `${where}: ${err.message ?? err.keyword}` };
}

/** The fields of a diagnostic that extensions/fixtures/*.expected.json pins. */
export function contractView(d: StellaDiagnostic) {
  const o: Record<string, unknown> = { kind: d.kind, severity: d.severity, path: d.path, line: d.line, column: d.column };
  if (d.property) o.property = d.property;
  return o;
}
