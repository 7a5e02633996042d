/**
 * A QubesAdmin whose `run` executes the command on this machine (bash, the test's own user), for
 * unit tests of providers that work through shell scripts in a VM (BuilderCheckout, SshKey) with
 * real git, gpg and ssh-keygen. dom0's list (internal.GetSystemInfo) names `vms`, each a running
 * AppVM, so that the providers' check "is the VM still there" passes. readFile, writeFile and
 * removeFile run the Admin client's own scripts (admin/vmfiles.ts) the same way. `prefix` runs
 * every command under another program (e.g. bwrap, so that /usr/local is a scratch directory).
 * Every other Admin call is refused: those providers make none.
 */
import { spawn } from "child_process";
import type { QubesAdmin, RunResult, SystemInfo, WriteFileOptions } from "../../admin/api";
import { NOT_FOUND_EXIT, readFileScript, removeFileScript, writeFileScript } from "../../admin/vmfiles";

export function hostAdmin(env: Record<string, string> = {}, vms: string[] = [], prefix: string[] = []): QubesAdmin & { runs: string[]; commands: string[] } {
  const runs: string[] = [];
  const commands: string[] = [];
  const run = (vm: string, command: string, opts?: { user?: string; input?: Buffer | string }): Promise<RunResult> =>
    new Promise((resolve, reject) => {
      runs.push(vm);
      commands.push(command);
      const argv = [...prefix, "bash", "-c", command];
      const child = spawn(argv[0], argv.slice(1), { env: { ...process.env, ...env }, stdio: ["pipe", "pipe", "pipe"] });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      child.stdout.on("data", (d: Buffer) => out.push(d));
      child.stderr.on("data", (d: Buffer) => err.push(d));
      child.on("error", reject);
      child.on("close", (code) => resolve({ exitCode: code ?? 1, stdout: Buffer.concat(out), stderr: Buffer.concat(err) }));
      child.stdin.on("error", () => undefined);
      child.stdin.end(opts?.input ?? "");
    });
  const systemInfo = async (): Promise<SystemInfo> => ({
    domains: Object.fromEntries(vms.map((name) => [name, {
      name, type: "AppVM", tags: [], default_dispvm: null, template_for_dispvms: false, power_state: "Running",
      label: "red", icon: null, guivm: null, uuid: `00000000-0000-4000-8000-${name.length.toString().padStart(12, "0")}`,
    }])),
  });
  const fail = (op: string, r: RunResult) => new Error(`hostAdmin ${op}: exit ${r.exitCode}: ${r.stderr.toString().trim()}`);
  const readFile = async (vm: string, path: string): Promise<Buffer | null> => {
    const r = await run(vm, readFileScript(path));
    if (r.exitCode === NOT_FOUND_EXIT) return null;
    if (r.exitCode !== 0) throw fail("readFile", r);
    return r.stdout;
  };
  const writeFile = async (vm: string, path: string, content: Buffer | string, o: WriteFileOptions): Promise<void> => {
    const r = await run(vm, writeFileScript(path, o.mode, o.owner ?? "root"), { input: content });
    if (r.exitCode !== 0) throw fail("writeFile", r);
  };
  const removeFile = async (vm: string, path: string): Promise<void> => {
    const r = await run(vm, removeFileScript(path));
    if (r.exitCode !== 0) throw fail("removeFile", r);
  };
  return new Proxy({ runs, commands, run, systemInfo, readFile, writeFile, removeFile } as unknown as QubesAdmin & { runs: string[]; commands: string[] }, {
    get(target, prop) {
      if (prop in target) return (target as unknown as Record<PropertyKey, unknown>)[prop];
      if (prop === "then") return undefined;
      return () => Promise.reject(new Error(`hostAdmin: ${String(prop)} is not available in this test`));
    },
  });
}
