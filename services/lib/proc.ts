/**
 * Subprocesses and qrexec: the environment of an incoming call, bounded runs of programs (argv,
 * never a shell), outbound qrexec calls, and finding a program before relying on it.
 */
import { spawn } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { ConfigError } from "./outcome";

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
