/**
 * Helpers for the service tests: bundles the services once per test file, runs the bundled
 * programs as subprocesses with qrexec-like environments, a fake `qrexec-client-vm`, and
 * throwaway gpg keys.
 */
import { ChildProcess, spawn, spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { buildServices } from "../../services/build";

export function tempDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `qbi-svc-${prefix}-`));
}

/** Bundles every service into a temp dir; returns the dir. */
export async function buildDist(): Promise<string> {
  const dir = tempDir("dist");
  await buildServices(dir);
  return dir;
}

export interface Result {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  /** stdout as bytes (binary output). */
  stdoutBytes: Buffer;
  stderr: string;
}

export interface RunOpts {
  env?: Record<string, string>;
  input?: string | Buffer;
  args?: string[];
  timeoutMs?: number;
}

/** Starts a bundled program with `node`, without waiting. */
export function start(js: string, opts: RunOpts = {}): ChildProcess {
  const child = spawn(process.execPath, [js, ...(opts.args ?? [])], {
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ...opts.env },
    stdio: ["pipe", "pipe", "pipe"],
  });
  return child;
}

/** Starts an executable (e.g. a fake qrexec route script), without waiting. */
export function startProgram(file: string, opts: RunOpts = {}): ChildProcess {
  return spawn(file, opts.args ?? [], { env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ...opts.env }, stdio: ["pipe", "pipe", "pipe"] });
}

/** Runs an executable to completion with `input` on stdin. */
export function runProgram(file: string, opts: RunOpts = {}): Promise<Result> {
  const child = startProgram(file, opts);
  child.stdin?.on("error", () => undefined);
  child.stdin?.end(opts.input ?? "");
  return collect(child, opts.timeoutMs);
}

export function collect(child: ChildProcess, timeoutMs = 60000): Promise<Result> {
  return new Promise((resolve, reject) => {
    const out: Buffer[] = [];
    let stderr = "";
    child.stdout?.on("data", (d: Buffer) => out.push(d));
    child.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`timed out; stderr: ${stderr}`));
    }, timeoutMs);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      const stdoutBytes = Buffer.concat(out);
      resolve({ code, signal, stdout: stdoutBytes.toString(), stdoutBytes, stderr });
    });
  });
}

/** Runs a bundled program to completion with `input` on stdin. */
export function runJs(js: string, opts: RunOpts = {}): Promise<Result> {
  const child = start(js, opts);
  child.stdin?.on("error", () => undefined);
  child.stdin?.end(opts.input ?? "");
  return collect(child, opts.timeoutMs);
}

/**
 * A fake `qrexec-client-vm` in `<dir>/bin`. Each call is recorded as `<dir>/calls/<n>.json`
 * (`{target, service, stdin}`). If `<dir>/route/<service name>` exists it is executed instead,
 * as the called service: QREXEC_SERVICE_ARGUMENT set, QREXEC_REMOTE_DOMAIN = $QBI_FAKE_CALLER.
 * `$QBI_FAKE_EXIT` sets the exit code of recorded calls.
 */
export function fakeQrexec(dir: string): { bin: string; calls: () => { target: string; service: string; stdin: string }[]; routeDir: string } {
  const bin = path.join(dir, "bin");
  const calls = path.join(dir, "calls");
  const routeDir = path.join(dir, "route");
  for (const d of [bin, calls, routeDir]) fs.mkdirSync(d, { recursive: true });
  const script = `#!/bin/bash
[ "$1" = "--" ] && shift
target="$1"; full="$2"
svc="\${full%%+*}"; arg=""
case "$full" in *+*) arg="\${full#*+}";; esac
if [ -x "${routeDir}/$svc" ]; then
  QREXEC_SERVICE_ARGUMENT="$arg" QREXEC_REMOTE_DOMAIN="$QBI_FAKE_CALLER" QREXEC_SERVICE_FULL_NAME="$full" QREXEC_REQUESTED_TARGET="$target" exec "${routeDir}/$svc"
fi
n="$(date +%s%N)-$$"
stdin="$(cat | base64 -w0)"
printf '{"target":"%s","service":"%s","stdin":"%s"}' "$target" "$full" "$stdin" > "${calls}/$n.tmp"
mv "${calls}/$n.tmp" "${calls}/$n.json"
exit \${QBI_FAKE_EXIT:-0}
`;
  fs.writeFileSync(path.join(bin, "qrexec-client-vm"), script, { mode: 0o755 });
  return {
    bin,
    routeDir,
    calls: () =>
      fs
        .readdirSync(calls)
        .filter((f) => f.endsWith(".json"))
        .sort()
        .map((f) => {
          const c = JSON.parse(fs.readFileSync(path.join(calls, f), "utf8")) as { target: string; service: string; stdin: string };
          return { ...c, stdin: Buffer.from(c.stdin, "base64").toString("latin1") };
        }),
  };
}

/** Makes an ed25519 signing key without passphrase in `home`; returns its fingerprint. */
export function makeKey(home: string, uid: string): string {
  fs.mkdirSync(home, { recursive: true, mode: 0o700 });
  const env = { ...process.env, GNUPGHOME: home };
  const r = spawnSync("gpg", ["--batch", "--passphrase", "", "--quick-gen-key", uid, "ed25519", "sign", "never"], { env });
  if (r.status !== 0) throw new Error(`gpg key generation failed: ${r.stderr}`);
  const list = spawnSync("gpg", ["--batch", "--with-colons", "--list-secret-keys", uid], { env }).stdout.toString();
  const fpr = /^fpr:::::::::([0-9A-F]{40}):/m.exec(list);
  if (!fpr) throw new Error("no fingerprint");
  return fpr[1];
}

export function gpg(home: string, args: string[], input?: string | Buffer): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync("gpg", ["--batch", ...args], { env: { ...process.env, GNUPGHOME: home }, input });
  return { code: r.status, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

export function sh(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; input?: string } = {}): string {
  const r = spawnSync(cmd, args, { cwd: opts.cwd, env: { ...process.env, ...opts.env }, input: opts.input, maxBuffer: 512 * 1024 * 1024 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} failed: ${r.stderr}`);
  return r.stdout.toString();
}

export async function waitFor<T>(fn: () => T | undefined | null | false, timeoutMs = 10000, what = "condition"): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export function writeJson(file: string, data: unknown): string {
  fs.writeFileSync(file, JSON.stringify(data, null, 2));
  return file;
}
