/** Assembling a PolicySet: file ordering, file name rules, include resolution through an injected reader. */
import { parsePolicyFile, parseServicePolicyFile } from "./parser";
import { ParsedFile, PolicyError, PolicySet, Rule } from "./types";

/** Where policy files live on a Qubes system. */
export const POLICY_DIR = "/etc/qubes/policy.d";

/** Reads included files; paths are relative to the policy directory (absolute ones under it are made relative). */
export interface PolicyReader {
  /** Text of the file, or undefined if there is no such file. */
  readFile(path: string): string | undefined;
  /** Names (not paths) of entries in a directory, or undefined if there is no such directory. */
  listDir?(path: string): string[] | undefined;
}

/** Anything includes can be read from: a reader, a Map or a plain object of path → text. */
export type IncludeSource = PolicyReader | Map<string, string> | Record<string, string>;

/** Byte-wise (C locale) comparison of strings, as `sort` in qrexec orders file names. */
export function compareCLocale(a: string, b: string): number {
  const enc = new TextEncoder();
  const x = enc.encode(a);
  const y = enc.encode(b);
  const n = Math.min(x.length, y.length);
  for (let i = 0; i < n; i++) if (x[i] !== y[i]) return x[i] - y[i];
  return x.length - y.length;
}

const FILENAME_RE = /^[0-9a-z_.-]+$/;

/** qrexec's file selection: `*.policy`, not hidden; returns whether to load it, or why the name is invalid. */
export function policyFileName(name: string): "load" | "skip" | string {
  const base = name.slice(name.lastIndexOf("/") + 1);
  if (!base.endsWith(".policy") || base === ".policy" || base.startsWith(".")) return "skip";
  if (!FILENAME_RE.test(base)) return `invalid policy file name ${JSON.stringify(base)}: only a-z, 0-9, '_', '.', '-' are allowed`;
  return "load";
}

/** Normalize an include path to a key relative to the policy directory. */
export function normalizePath(path: string, base: string = POLICY_DIR): string {
  let p = path;
  if (p.startsWith(base + "/")) p = p.slice(base.length + 1);
  const out: string[] = [];
  for (const seg of p.split("/")) {
    if (seg === "" || seg === ".") continue;
    if (seg === "..") out.pop();
    else out.push(seg);
  }
  return (p.startsWith("/") ? "/" : "") + out.join("/");
}

function toReader(src: IncludeSource | undefined): PolicyReader {
  if (src === undefined) return { readFile: () => undefined, listDir: () => undefined };
  if (typeof (src as PolicyReader).readFile === "function") return src as PolicyReader;
  const map = src instanceof Map ? src : new Map(Object.entries(src as Record<string, string>));
  const entries = new Map<string, string>();
  for (const [k, v] of map) entries.set(normalizePath(k), v);
  return {
    readFile: (p) => entries.get(normalizePath(p)),
    listDir: (p) => {
      const dir = normalizePath(p);
      const prefix = dir === "" ? "" : dir + "/";
      const names = [...entries.keys()].filter((k) => k.startsWith(prefix) && !k.slice(prefix.length).includes("/"));
      return names.length > 0 ? names.map((k) => k.slice(prefix.length)) : undefined;
    },
  };
}

const MAX_DEPTH = 32;

class Loader {
  rules: Rule[] = [];
  errors: PolicyError[] = [];
  files: string[] = [];
  private stack: string[] = [];
  constructor(private reader: PolicyReader) {}

  loadParsed(parsed: ParsedFile): void {
    this.files.push(parsed.file);
    this.errors.push(...parsed.errors);
    this.stack.push(normalizePath(parsed.file));
    for (const s of parsed.statements) {
      if (s.kind === "rule") {
        this.rules.push(s.rule);
        continue;
      }
      const at = { file: s.file, line: s.line };
      if (s.kind === "compat-4.0") {
        continue; // transitional: 4.0-style /etc/qubes-rpc/policy files are not modelled
      }
      if (s.kind === "include-dir") {
        this.includeDir(s.path, at);
        continue;
      }
      const text = this.open(s.path, at);
      if (text === undefined) continue;
      const key = normalizePath(s.path);
      if (s.kind === "include") this.loadParsed(parsePolicyFile(text, key));
      else this.loadParsed(parseServicePolicyFile(text, key, s.service, s.argument));
    }
    this.stack.pop();
  }

  private open(path: string, at: { file: string; line: number }): string | undefined {
    const key = normalizePath(path);
    if (this.stack.includes(key)) {
      this.errors.push({ ...at, message: `circular include of ${JSON.stringify(path)}` });
      return undefined;
    }
    if (this.stack.length >= MAX_DEPTH) {
      this.errors.push({ ...at, message: `includes nested deeper than ${MAX_DEPTH}` });
      return undefined;
    }
    const text = this.reader.readFile(key);
    if (text === undefined) this.errors.push({ ...at, message: `no such policy file: ${JSON.stringify(path)}` });
    return text;
  }

  private includeDir(path: string, at: { file: string; line: number }): void {
    const dir = normalizePath(path);
    const names = this.reader.listDir?.(dir);
    if (names === undefined) {
      this.errors.push({ ...at, message: `not a directory: ${JSON.stringify(path)}` });
      return;
    }
    const selected: string[] = [];
    for (const n of names) {
      const verdict = policyFileName(n);
      if (verdict === "load") selected.push(n);
      else if (verdict !== "skip") this.errors.push({ ...at, message: verdict });
    }
    for (const n of selected.sort(compareCLocale)) {
      const full = dir === "" ? n : `${dir}/${n}`;
      const text = this.open(full, at);
      if (text !== undefined) this.loadParsed(parsePolicyFile(text, full));
    }
  }
}

/** Resolve the includes of one parsed file through a reader, returning its rules in evaluation order. */
export function resolveIncludes(parsed: ParsedFile, includes?: IncludeSource): PolicySet {
  const loader = new Loader(toReader(includes));
  loader.loadParsed(parsed);
  return { rules: loader.rules, errors: loader.errors, files: loader.files };
}

/**
 * Load a policy directory given as files: `*.policy` files (others and hidden ones are skipped,
 * names outside qrexec's charset are errors) are read in C-locale name order, includes resolved.
 */
export function loadPolicySet(files: readonly { name: string; text: string }[], includes?: IncludeSource): PolicySet {
  const loader = new Loader(toReader(includes));
  const nameErrors: PolicyError[] = [];
  const chosen = files.filter((f) => {
    const v = policyFileName(f.name);
    if (v !== "load" && v !== "skip") nameErrors.push({ file: f.name, line: 0, message: v });
    return v === "load";
  });
  const base = (n: string): string => n.slice(n.lastIndexOf("/") + 1);
  chosen.sort((a, b) => compareCLocale(base(a.name), base(b.name)) || compareCLocale(a.name, b.name));
  for (const f of chosen) loader.loadParsed(parsePolicyFile(f.text, f.name));
  return { rules: loader.rules, errors: [...nameErrors, ...loader.errors], files: loader.files };
}
