/**
 * A QubesAdmin whose `run` executes the command on this machine (bash, the test's own user), for
 * unit tests of providers that work through shell scripts in a VM (BuilderCheckout, SshKey) with
 * real git, gpg and ssh-keygen. dom0's list (internal.GetSystemInfo) names `vms`, each a running
 * AppVM, so that the providers' check "is the VM still there" passes; every other Admin call is
 * refused: those providers make none.
 */
import { spawn } from "child_process";
import type { QubesAdmin, RunResult, SystemInfo } from "../../admin/api";

export function hostAdmin(env: Record<string, string> = {}, vms: string[] = []): QubesAdmin & { runs: string[] } {
  const runs: string[] = [];
  const run = (vm: string, command: string, opts?: { user?: string; input?: Buffer | string }): Promise<RunResult> =>
    new Promise((resolve, reject) => {
      runs.push(vm);
      const child = spawn("bash", ["-c", command], { env: { ...process.env, ...env }, stdio: ["pipe", "pipe", "pipe"] });
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
  return new Proxy({ runs, run, systemInfo } as unknown as QubesAdmin & { runs: string[] }, {
    get(target, prop) {
      if (prop in target) return (target as unknown as Record<PropertyKey, unknown>)[prop];
      if (prop === "then") return undefined;
      return () => Promise.reject(new Error(`hostAdmin: ${String(prop)} is not available in this test`));
    },
  });
}
