/**
 * `qubes-build-infra`, the site's command line:
 *
 * - `import-pillar <file.sls|dir>...`: prints stack config YAML for Pulumi.<stack>.yaml from the Salt
 *   formula's pillar (several files merged, or a pillar directory with its init.top), then the
 *   findings of the full config checks and the commands that store the secrets.
 * - `admin [--stack NAME] <method> <dest> [arg] [payload]`: one Admin API call to the Qubes machine of
 *   a stack (its `qubes-build-infra:admin`, or QBI_ADMIN): the recovery commands the providers print
 *   (e.g. tagging a VM an interrupted run created) work the same against dom0 and qubes-sim.
 * - `settle [--stack NAME]`: what a killed `pulumi up` leaves, settled so that the next `up`
 *   converges: a half-written metadata file of a file backend is removed, a lock held by a pulumi process of this machine that no longer runs is removed
 *   (`pulumi cancel`), and the state's pending operations are dropped (`pulumi stack export` /
 *   `import`). Dropping them is safe because every creation is idempotent: the next `up` creates
 *   those resources again, taking over what the killed run made (see providers/qubesVm.ts).
 */
import { execFileSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { parse, stringify } from "yaml";
import { z } from "zod";
import { ADMIN_CONFIG_KEY, resolveAdminConnection } from "../providers/connection";
import { importPillarFiles } from "./pillar";

const ROOT = path.resolve(__dirname, "..");
const USAGE = [
  "usage: qubes-build-infra import-pillar <build-infra.sls | pillar dir>...",
  "       qubes-build-infra admin [--stack NAME] <method> <dest> [arg] [payload]",
  "       qubes-build-infra settle [--stack NAME]",
].join("\n");

/** `--stack NAME` in front of the other arguments (default: the local stack). */
function stackArg(args: string[]): [string, string[]] {
  return args[0] === "--stack" ? [args[1] ?? "", args.slice(2)] : ["local", args];
}

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
};

/** Lock files of the stack in a file backend (`file://DIR`): DIR/.pulumi/locks/[organization/<project>/]<stack>/*.json. */
function lockFiles(stack: string): string[] {
  const dir = fileBackendDir();
  if (dir === null) return [];
  const project = (parse(fs.readFileSync(path.join(ROOT, "Pulumi.yaml"), "utf8")) as { name: string }).name;
  const base = path.join(dir, ".pulumi", "locks");
  return [path.join(base, "organization", project, stack), path.join(base, stack)]
    .filter((d) => fs.existsSync(d))
    .flatMap((d) => fs.readdirSync(d).filter((f) => f.endsWith(".json")).map((f) => path.join(d, f)));
}

/** The directory of a file backend (`file://DIR[?...]`), or null for any other backend. */
function fileBackendDir(): string | null {
  const url = process.env.PULUMI_BACKEND_URL ?? "";
  return url.startsWith("file://") ? url.slice("file://".length).replace(/\?.*$/, "") : null;
}

/**
 * Metadata files (`<state file>.attrs`) of a file backend that are not JSON. A backend opened
 * without `metadata=skip` (bin/pulumi adds it; state made before, or a URL of one's own, may lack
 * it) rewrites them in place, so a run killed then leaves one empty and every command on the stack
 * fails with "failed to load checkpoint: EOF". Pulumi reads nothing from them: removing one is safe.
 */
function brokenMetadataFiles(): string[] {
  const dir = fileBackendDir();
  if (dir === null) return [];
  const walk = (d: string): string[] => (fs.existsSync(d) ? fs.readdirSync(d, { withFileTypes: true })
    .flatMap((e) => (e.isDirectory() ? walk(path.join(d, e.name)) : e.name.endsWith(".attrs") ? [path.join(d, e.name)] : [])) : []);
  // The state, the locks and the backend's own meta file; not the update history, which grows with
  // every run (settle runs before each `make up`) and which no command but `stack history` reads.
  const root = path.join(dir, ".pulumi");
  const candidates = [...walk(path.join(root, "stacks")), ...walk(path.join(root, "locks")), path.join(root, "meta.yaml.attrs")].filter((f) => fs.existsSync(f));
  return candidates.filter((f) => {
    try {
      const v: unknown = JSON.parse(fs.readFileSync(f, "utf8"));
      return typeof v !== "object" || v === null;
    } catch {
      return true;
    }
  });
}

function settle(args: string[]): number {
  const [stack] = stackArg(args);
  const broken = brokenMetadataFiles();
  for (const f of broken) {
    fs.rmSync(f);
    process.stderr.write(`removed ${f}: a metadata file a killed run left half-written (the state beside it is whole)\n`);
  }
  const pulumi = (...a: string[]) => execFileSync("pulumi", [...a, "--stack", stack], { cwd: ROOT, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], maxBuffer: 1 << 30 });
  const Lock = z.object({ pid: z.number(), hostname: z.string() });
  const locks = lockFiles(stack).map((f) => ({ f, lock: Lock.safeParse(JSON.parse(fs.readFileSync(f, "utf8"))) }));
  const running = locks.filter((l) => !l.lock.success || l.lock.data.hostname !== os.hostname() || alive(l.lock.data.pid));
  if (running.length > 0) {
    const who = running.map((l) => (l.lock.success ? `pid ${l.lock.data.pid} on ${l.lock.data.hostname}` : l.f)).join(", ");
    process.stderr.write(`stack ${stack} is locked by a pulumi that may still run (${who}): wait for it to end; if it is gone, pulumi cancel --stack ${stack}\n`);
    return 1;
  }
  if (locks.length > 0) {
    pulumi("cancel", "--yes");
    process.stderr.write(`removed the lock left by a killed run (pid ${locks.map((l) => (l.lock.success ? l.lock.data.pid : "?")).join(", ")}, no longer running)\n`);
  }
  const exported = JSON.parse(pulumi("stack", "export")) as { deployment?: { pending_operations?: { type: string; resource: { urn: string } }[] } };
  const pending = exported.deployment?.pending_operations ?? [];
  if (pending.length > 0) {
    delete exported.deployment!.pending_operations;
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "qbi-settle-")), "state.json");
    try {
      fs.writeFileSync(file, JSON.stringify(exported), { mode: 0o600 });
      pulumi("stack", "import", "--file", file);
    } finally {
      fs.rmSync(path.dirname(file), { recursive: true, force: true });
    }
    for (const op of pending) process.stderr.write(`dropped the pending operation ${op.type} ${op.resource.urn}: the next up does it again (creation is idempotent)\n`);
  }
  if (broken.length === 0 && locks.length === 0 && pending.length === 0) process.stderr.write(`stack ${stack}: nothing to settle\n`);
  return 0;
}

function importPillar(args: string[]): number {
  if (args.length === 0) {
    process.stderr.write(`${USAGE}\n`);
    return 2;
  }
  const r = importPillarFiles(args, (f) => fs.readFileSync(f, "utf8"), (d) => fs.readdirSync(d), (f) => fs.statSync(f).isDirectory());
  process.stdout.write(stringify({ config: r.config }));
  for (const n of r.notes) process.stderr.write(`note: ${n}\n`);
  for (const s of r.secrets) process.stderr.write(`secret: ${s}\n`);
  if (r.findings.length > 0) {
    process.stderr.write(`still to fix before pulumi preview (the full config checks):\n${r.findings.join("\n")}\n`);
    return 1;
  }
  return 0;
}

async function admin(all: string[]): Promise<number> {
  const [stack, args] = stackArg(all);
  const [method, dest, arg = "", payload] = args;
  if (!method || !dest || !/^admin\.[A-Za-z0-9_.]+$/.test(method)) {
    process.stderr.write(`${USAGE}\n`);
    return 2;
  }
  let configured: unknown;
  const file = path.join(ROOT, `Pulumi.${stack}.yaml`);
  if (fs.existsSync(file)) configured = (parse(fs.readFileSync(file, "utf8")) as { config?: Record<string, unknown> } | null)?.config?.[ADMIN_CONFIG_KEY];
  const found = resolveAdminConnection(configured, process.env, ROOT);
  if (!found) {
    process.stderr.write(`no Admin API connection: ${file} has no ${ADMIN_CONFIG_KEY} and QBI_ADMIN is not set\n`);
    return 1;
  }
  const { createAdminClient } = await import("../admin/client");
  const data = await createAdminClient(found.conn).call(method, dest, arg, payload);
  process.stdout.write(data);
  return 0;
}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  try {
    if (cmd === "import-pillar") return importPillar(rest);
    if (cmd === "admin") return await admin(rest);
    if (cmd === "settle") return settle(rest);
    process.stderr.write(`${USAGE}\n`);
    return 2;
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\n`);
    return 1;
  }
}

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
