/**
 * Shared helpers for the in-VM services: configuration loading (zod), qrexec environment,
 * name validation, outbound qrexec calls, lock files, small file utilities.
 * Only node stdlib and zod: every service is bundled into one standalone file.
 */
import { spawn } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { z } from "zod";
import { isVmName } from "./names";
import { ConfigError, EXIT, Refusal, REASON_PREFIX, printable } from "./outcome";

export { EXIT, ConfigError, Refusal, REASON_PREFIX, printable, reasonIn } from "./outcome";
export { VM_NAME_RE, isVmName } from "./names";

export const CONFIG_DIR = "/usr/local/etc/qubes-build-infra";
export const SECRETS_DIR = `${CONFIG_DIR}/secrets`;


/** Writes `<service>: <msg>` to stderr. */
export function log(service: string, msg: string): void {
  process.stderr.write(`${service}: ${msg}\n`);
}

/** Path of the service's config: `$QBI_CONFIG` or `/usr/local/etc/qubes-build-infra/<name>.json`. */
export function configPath(name: string): string {
  return process.env.QBI_CONFIG || path.join(CONFIG_DIR, `${name}.json`);
}

/** Loads and validates the JSON config; throws ConfigError with a readable message. */
export function loadConfig<T extends z.ZodTypeAny>(name: string, schema: T): z.infer<T> {
  const file = configPath(name);
  let raw: string;
  try {
    raw = fs.readFileSync(file, "utf8");
  } catch (e) {
    throw new ConfigError(`cannot read config ${file}: ${(e as Error).message}`);
  }
  let data: unknown;
  try {
    data = JSON.parse(raw);
  } catch (e) {
    throw new ConfigError(`config ${file} is not JSON: ${(e as Error).message}`);
  }
  const r = schema.safeParse(data);
  if (!r.success) {
    throw new ConfigError(`config ${file} is invalid: ${r.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`);
  }
  return r.data;
}

/** Path of a secret: `$QBI_SECRET_FILE` or `/usr/local/etc/qubes-build-infra/secrets/<name>`. */
export function secretPath(name: string): string {
  return process.env.QBI_SECRET_FILE || path.join(SECRETS_DIR, name);
}

/** State directory: `$QBI_STATE_DIR` or the given default; created 0700. */
export function stateDir(defaultDir: string): string {
  const dir = process.env.QBI_STATE_DIR || defaultDir;
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  return dir;
}

export function homeDir(): string {
  return process.env.HOME || "/home/user";
}

/** Qubes VM names: a letter, then letters, digits, `_`, `.`, `-`; at most 31 characters. */
export const vmName = z.string().refine(isVmName, "not a valid qube name");

/** Component names (TriggerBuild, webhooks): ≤ 64, `[A-Za-z0-9_-]`, no leading `-`. */
export const COMPONENT_RE = /^[A-Za-z0-9_][A-Za-z0-9_-]{0,63}$/;

/** A 40-hex OpenPGP v4 fingerprint, normalised to upper case. */
export const fingerprint = z
  .string()
  .regex(/^[0-9A-Fa-f]{40}$/, "expected a 40-hex fingerprint")
  .transform((s) => s.toUpperCase());

/** The qrexec environment of an incoming call. */
export interface QrexecEnv {
  remoteDomain: string;
  argument: string;
  fullName: string;
  requestedTarget: string;
}
export function qrexecEnv(): QrexecEnv {
  return {
    remoteDomain: process.env.QREXEC_REMOTE_DOMAIN ?? "",
    argument: process.env.QREXEC_SERVICE_ARGUMENT ?? "",
    fullName: process.env.QREXEC_SERVICE_FULL_NAME ?? "",
    requestedTarget: process.env.QREXEC_REQUESTED_TARGET ?? "",
  };
}

/** With QBI_TRACE=1, one stderr line per timed step (where a signature's round trip goes). */
export function trace(label: string, since: number): void {
  if (process.env.QBI_TRACE === "1") process.stderr.write(`trace: ${label}: ${Date.now() - since} ms\n`);
}


export interface CallResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs a program with optional stdin data, collecting (bounded) output.
 * `timeoutMs` kills it with SIGKILL.
 */
export function run(
  argv: string[],
  opts: { input?: string | Buffer; env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number; maxOutput?: number } = {},
): Promise<CallResult> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0], argv.slice(1), { env: opts.env ?? process.env, cwd: opts.cwd, stdio: ["pipe", "pipe", "pipe"] });
    const max = opts.maxOutput ?? 4 * 1024 * 1024;
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => {
      if (out.length < max) out += d.toString("utf8");
    });
    child.stderr.on("data", (d: Buffer) => {
      if (err.length < max) err += d.toString("utf8");
    });
    let timer: NodeJS.Timeout | undefined;
    if (opts.timeoutMs) timer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs);
    child.on("error", (e) => {
      if (timer) clearTimeout(timer);
      reject(e);
    });
    child.on("close", (code, signal) => {
      if (timer) clearTimeout(timer);
      if (process.env.QBI_TRACE === "1") process.stderr.write(`trace: ${argv.slice(0, 6).join(" ").slice(0, 120)}: ${Date.now() - started} ms\n`);
      resolve({ code: code ?? (signal ? 128 : 1), stdout: out, stderr: err });
    });
    child.stdin.on("error", () => undefined);
    child.stdin.end(opts.input ?? "");
  });
}

/** `qrexec-client-vm <target> <service>[+arg]` (from PATH) with `input` on stdin. */
export function qrexecCall(target: string, service: string, arg: string | undefined, input: string | Buffer, timeoutMs = 120000): Promise<CallResult> {
  const name = arg ? `${service}+${arg}` : service;
  return run(["qrexec-client-vm", "--", target, name], { input, timeoutMs });
}

/** Writes a file atomically (temp file in the same directory, fsync, rename). */
export function writeFileAtomic(file: string, data: string, mode = 0o600): void {
  const tmp = `${file}.tmp-${process.pid}-${Date.now()}`;
  const fd = fs.openSync(tmp, "w", mode);
  try {
    fs.writeSync(fd, data);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
}

/** Appends one JSON line (O_APPEND, fsync): the services' append-only journals. */
export function appendJsonLine(file: string, record: Record<string, unknown>): void {
  const fd = fs.openSync(file, "a", 0o600);
  try {
    fs.writeSync(fd, `${JSON.stringify({ time: new Date().toISOString(), ...record })}\n`);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** True while a process with that pid exists (EPERM: it exists, owned by someone else). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * An O_EXCL lock file holding the owner's pid. A lock whose pid is gone is stale and is taken
 * over (rename-free: unlink then retry the exclusive create). Waits up to `timeoutMs`.
 * Returns the release function.
 */
export async function acquireLock(file: string, timeoutMs = 600000): Promise<() => void> {
  const deadline = Date.now() + timeoutMs;
  let delay = 20;
  for (;;) {
    try {
      const fd = fs.openSync(file, "wx", 0o600);
      fs.writeSync(fd, `${process.pid}\n`);
      fs.closeSync(fd);
      return () => {
        try {
          if (fs.readFileSync(file, "utf8").trim() === String(process.pid)) fs.unlinkSync(file);
        } catch {
          /* already gone */
        }
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
    }
    let owner = NaN;
    try {
      owner = parseInt(fs.readFileSync(file, "utf8").trim(), 10);
    } catch {
      continue; // vanished between create and read: retry at once
    }
    if (Number.isInteger(owner) && owner > 0 && !pidAlive(owner)) {
      try {
        fs.unlinkSync(file);
      } catch {
        /* someone else took it over */
      }
      continue;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for lock ${file} (held by pid ${owner})`);
    await sleep(delay);
    delay = Math.min(delay * 2, 500);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Reads all of stdin up to `max` bytes; `overflow` tells whether more was sent. */
export async function readStdinLimited(max: number): Promise<{ data: Buffer; overflow: boolean }> {
  const chunks: Buffer[] = [];
  let size = 0;
  let overflow = false;
  for await (const chunk of process.stdin as AsyncIterable<Buffer>) {
    if (size + chunk.length > max) {
      chunks.push(chunk.subarray(0, max - size));
      size = max;
      overflow = true;
      break;
    }
    chunks.push(chunk);
    size += chunk.length;
  }
  return { data: Buffer.concat(chunks), overflow };
}

/** Reads `builders.list`: `r<release>=<dir>` (v1) or `r<release>=<builder dir>=<conf>` (v2). */
export interface BuilderLine {
  release: string;
  /** v1: the builder dir; v2: the artifacts dir (dirname of conf). */
  dir: string;
  builderDir: string;
  conf: string;
  version: 1 | 2;
}
export function readBuildersList(file: string): BuilderLine[] {
  const out: BuilderLine[] = [];
  for (const raw of fs.readFileSync(file, "utf8").split("\n")) {
    const line = raw.trim();
    if (!line || line.startsWith("#")) continue;
    const m = /^r([0-9]+(?:\.[0-9]+)*)=(\/[^=\s]+)(?:=(\/[^=\s]+))?$/.exec(line);
    if (!m) throw new ConfigError(`bad builders.list line: ${printable(line)}`);
    if (m[3]) out.push({ release: m[1], builderDir: m[2], conf: m[3], dir: path.dirname(m[3]), version: 2 });
    else out.push({ release: m[1], builderDir: m[2], conf: "", dir: m[2], version: 1 });
  }
  return out;
}

/** Fills `{name}` placeholders in an argv template; unknown placeholders are an error. */
export function fillTemplate(argv: string[], values: Record<string, string>): string[] {
  return argv.map((a) =>
    a.replace(/\{([A-Za-z0-9_]+)\}/g, (_m, k: string) => {
      const v = values[k];
      if (v === undefined) throw new ConfigError(`unknown placeholder {${k}} in command template`);
      return v;
    }),
  );
}


/** Writes the reason line on stdout (then exits once it is flushed). */
export function reasonOnStdout(service: string, what: string, code: number): void {
  process.stdout.write(`${REASON_PREFIX}${service}: ${printable(what, 600)}\n`, () => process.exit(code));
}

/**
 * Runs a service main: maps Refusal → exit 1, ConfigError → exit 2, anything else → exit 3,
 * with one line on stderr (and, with `reasonOnStdout`, one `qbi-reason:` line on stdout).
 */
export function runMain(service: string, main: () => Promise<number>, opts: { reasonOnStdout?: boolean } = {}): void {
  const end = (what: string, code: number) => {
    log(service, what);
    if (opts.reasonOnStdout) reasonOnStdout(service, what, code);
    else process.exit(code);
  };
  main().then(
    (code) => process.exit(code),
    (e: unknown) => {
      if (e instanceof Refusal) end(`refused: ${e.message}`, EXIT.REFUSED);
      else if (e instanceof ConfigError) end(`configuration error: ${e.message}`, EXIT.CONFIG);
      else end(`failed: ${e instanceof Error ? e.message : String(e)}`, EXIT.FAILED);
    },
  );
}


/** Resolves a program name on PATH (or checks an absolute path); throws ConfigError if absent. */
export function requireProgram(name: string): string {
  const candidates = name.includes("/") ? [name] : (process.env.PATH ?? "").split(":").filter(Boolean).map((d) => path.join(d, name));
  for (const c of candidates) {
    try {
      fs.accessSync(c, fs.constants.X_OK);
      return c;
    } catch {
      /* next */
    }
  }
  throw new ConfigError(`program ${name} not found`);
}
