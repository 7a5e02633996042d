/**
 * `qubes-build-infra`, the site's command line:
 *
 * - `import-pillar <file.sls|dir>...`: prints stack config YAML for Pulumi.<stack>.yaml from the Salt
 *   formula's pillar (several files merged, or a pillar directory with its init.top), then the
 *   findings of the full config checks and the commands that store the secrets.
 * - `admin [--stack NAME] <method> <dest> [arg] [payload]`: one Admin API call to the Qubes machine of
 *   a stack (its `qubes-build-infra:admin`, or QBI_ADMIN): the recovery commands the providers print
 *   (e.g. tagging a VM an interrupted run created) work the same against dom0 and qubes-sim.
 */
import * as fs from "fs";
import * as path from "path";
import { parse, stringify } from "yaml";
import { ADMIN_CONFIG_KEY, resolveAdminConnection } from "../providers/connection";
import { importPillarFiles } from "./pillar";

const ROOT = path.resolve(__dirname, "..");
const USAGE = [
  "usage: qubes-build-infra import-pillar <build-infra.sls | pillar dir>...",
  "       qubes-build-infra admin [--stack NAME] <method> <dest> [arg] [payload]",
].join("\n");

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

async function admin(args: string[]): Promise<number> {
  let stack = "local";
  if (args[0] === "--stack") {
    stack = args[1] ?? "";
    args = args.slice(2);
  }
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
