/**
 * qrexec-policy command line (the only part of qrexec/ that does I/O).
 *
 *   qrexec-policy lint <dir>
 *       Exit 0 when the policy directory is valid, 1 with `file:line:col: message` lines otherwise.
 *   qrexec-policy eval --policy-dir <dir> --system-info <file.json> <service[+arg]> <source> <target>
 *       Prints the verdict as JSON {action, target, user, file, line, reason}.
 *       Exit 0 allow, 1 deny, 2 ask. Usage errors also exit 2 (with a message on stderr).
 *   qrexec-policy graph --policy-dir <dir> --system-info <file.json> [--format dot|svg] [--service S]...
 *       Prints the flow graph as DOT (default) or SVG (rendered by /usr/bin/dot). Exit 0, 2 on usage error.
 */
import * as fs from "fs";
import * as path from "path";
import { spawnSync } from "child_process";
import { flowGraph, toDot } from "./graph";
import { loadPolicySet, normalizePath, PolicyReader } from "./load";
import { evaluate } from "./evaluate";
import { parseSystemInfo } from "./system";
import { PolicyError, PolicySet, SystemInfo } from "./types";

/** Output streams of the CLI (injectable for tests). */
export interface CliIo {
  /** Standard output. */
  out(text: string): void;
  /** Standard error. */
  err(text: string): void;
}

const USAGE = `usage:
  qrexec-policy lint <dir>
  qrexec-policy eval --policy-dir <dir> --system-info <file.json> <service[+arg]> <source> <target>
  qrexec-policy graph --policy-dir <dir> --system-info <file.json> [--format dot|svg] [--service S]...
exit codes: lint 0 ok / 1 errors; eval 0 allow / 1 deny / 2 ask; 2 on usage errors
`;

class UsageError extends Error {}

function fsReader(dir: string): PolicyReader {
  const resolve = (p: string): string => {
    const n = normalizePath(p);
    return n.startsWith("/") ? n : path.join(dir, n);
  };
  return {
    readFile: (p) => {
      try {
        return fs.readFileSync(resolve(p), "utf8");
      } catch {
        return undefined;
      }
    },
    listDir: (p) => {
      try {
        return fs.readdirSync(resolve(p)).filter((n) => fs.statSync(path.join(resolve(p), n)).isFile());
      } catch {
        return undefined;
      }
    },
  };
}

/** Load every `*.policy` file of a directory (with includes) into a PolicySet; file names are paths under dir. */
export function loadPolicyDir(dir: string): PolicySet {
  let names: string[];
  try {
    names = fs.readdirSync(dir).filter((n) => fs.statSync(path.join(dir, n)).isFile());
  } catch (e) {
    throw new UsageError(`cannot read policy directory ${dir}: ${String(e)}`);
  }
  const files = names.map((n) => ({ name: n, text: fs.readFileSync(path.join(dir, n), "utf8") }));
  return loadPolicySet(files, fsReader(dir));
}

function formatError(dir: string, e: PolicyError): string {
  const file = e.file.startsWith("/") ? e.file : path.join(dir, e.file);
  return `${file}:${e.line}:${e.column ?? 1}: ${e.message}`;
}

function options(args: string[]): { opts: Map<string, string[]>; rest: string[] } {
  const opts = new Map<string, string[]>();
  const rest: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a.startsWith("--")) {
      const eq = a.indexOf("=");
      const key = eq > 0 ? a.slice(2, eq) : a.slice(2);
      const value = eq > 0 ? a.slice(eq + 1) : args[++i];
      if (value === undefined) throw new UsageError(`option --${key} needs a value`);
      opts.set(key, [...(opts.get(key) ?? []), value]);
    } else rest.push(a);
  }
  return { opts, rest };
}

function one(opts: Map<string, string[]>, key: string): string {
  const v = opts.get(key);
  if (v === undefined || v.length !== 1) throw new UsageError(`exactly one --${key} is required`);
  return v[0];
}

function loadSystem(file: string): SystemInfo {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (e) {
    throw new UsageError(`cannot read system info ${file}: ${String(e)}`);
  }
  const r = parseSystemInfo(text);
  if (!r.ok) throw new UsageError(`${file}: ${r.message}`);
  return r.value;
}

function lint(args: string[], io: CliIo): number {
  if (args.length !== 1) throw new UsageError("lint takes one directory");
  const set = loadPolicyDir(args[0]);
  for (const e of set.errors) io.out(formatError(args[0], e) + "\n");
  return set.errors.length > 0 ? 1 : 0;
}

function evalCmd(args: string[], io: CliIo): number {
  const { opts, rest } = options(args);
  if (rest.length !== 3) throw new UsageError("eval takes <service[+arg]> <source> <target>");
  const dir = one(opts, "policy-dir");
  const system = loadSystem(one(opts, "system-info"));
  const set = loadPolicyDir(dir);
  for (const e of set.errors) io.err(formatError(dir, e) + "\n");
  const [call, source, target] = rest;
  const plus = call.indexOf("+");
  const service = plus < 0 ? call : call.slice(0, plus);
  const argument = plus < 0 ? "" : call.slice(plus);
  const v = evaluate(set, { service, argument, source, target }, system);
  const file = v.file === undefined ? undefined : v.file.startsWith("/") ? v.file : path.join(dir, v.file);
  const json = {
    action: v.action, target: v.target ?? null, user: v.user ?? null, file: file ?? null, line: v.line ?? null, targets: v.targets, reason: v.reason,
  };
  io.out(JSON.stringify(json) + "\n");
  return v.action === "allow" ? 0 : v.action === "deny" ? 1 : 2;
}

function graphCmd(args: string[], io: CliIo): number {
  const { opts, rest } = options(args);
  if (rest.length !== 0) throw new UsageError(`unexpected arguments: ${rest.join(" ")}`);
  const format = opts.get("format")?.[0] ?? "dot";
  if (format !== "dot" && format !== "svg") throw new UsageError("--format must be dot or svg");
  const dir = one(opts, "policy-dir");
  const system = loadSystem(one(opts, "system-info"));
  const set = loadPolicyDir(dir);
  for (const e of set.errors) io.err(formatError(dir, e) + "\n");
  const dot = toDot(flowGraph(set, system, opts.get("service")));
  if (format === "dot") {
    io.out(dot);
    return 0;
  }
  const r = spawnSync("/usr/bin/dot", ["-Tsvg"], { input: dot, encoding: "utf8" });
  if (r.status !== 0) {
    io.err(`dot failed: ${r.stderr ?? String(r.error)}\n`);
    return 1;
  }
  io.out(r.stdout);
  return 0;
}

/** Run the CLI; returns the exit code. */
export function main(argv: string[], io: CliIo = { out: (t) => process.stdout.write(t), err: (t) => process.stderr.write(t) }): number {
  const [cmd, ...args] = argv;
  try {
    switch (cmd) {
      case "lint":
        return lint(args, io);
      case "eval":
        return evalCmd(args, io);
      case "graph":
        return graphCmd(args, io);
      case "help":
      case "--help":
      case "-h":
        io.out(USAGE);
        return 0;
      default:
        throw new UsageError(cmd === undefined ? "missing command" : `unknown command ${cmd}`);
    }
  } catch (e) {
    if (e instanceof UsageError) {
      io.err(`qrexec-policy: ${e.message}\n${USAGE}`);
      return 2;
    }
    throw e;
  }
}

if (require.main === module) process.exitCode = main(process.argv.slice(2));
