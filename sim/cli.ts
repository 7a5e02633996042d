/**
 * qubes-sim command line.
 *
 *   qubes-sim serve [--socket S] [--state D]   run the daemon (defaults: <project>/.qubes-sim/qubesd.sock, .../state)
 *   qubes-sim ls    [--socket S] [--state D]   list VMs (from the daemon, or the state dir when none runs)
 *   qubes-sim show <vm> [--socket S] [--state D]   properties, features, tags, volumes of a VM
 *   qubes-sim reset [--state D]                  delete the state (the daemon must not be running)
 *   qubes-sim journal [--tail N] [--follow] [--json] [--state D]   the qrexec broker's journal
 *   qubes-sim network [--state D]                 the running sim's addresses (<state>/network.json)
 *   qubes-sim trigger-build <component> [--repo owner/name] [--url URL] [--state D]
 *                                                 a signed GitHub push webhook to the site's receiver
 *   qubes-sim standin-builders [--state D]         the stand-in builder repositories in <state>/github (sim/standin/)
 * Exit codes: 0 ok, 1 error, 2 usage.
 */
import * as fs from "fs";
import * as net from "net";
import * as path from "path";
import { createAdminClient } from "../admin/client";
import * as m from "./model";
import { formatJournal, JournalEntry, readJournal } from "./broker";
import { SimDaemon } from "./server";
import { createStandinGithub, maintainerKeyring } from "./standin-builders";
import { triggerBuild } from "./webhook";
import { State, StateDir } from "./state";

const PROJECT = path.resolve(__dirname, "..");
export const DEFAULT_SOCKET = path.join(PROJECT, ".qubes-sim", "qubesd.sock");
export const DEFAULT_STATE = path.join(PROJECT, ".qubes-sim", "state");

const USAGE = `usage: qubes-sim serve|ls|show <vm>|reset|journal [--tail N] [--follow] [--json]|network|trigger-build <component>|standin-builders [--socket PATH] [--state DIR]\n`;

class UsageError extends Error {}

interface Args {
  cmd: string;
  rest: string[];
  socket: string;
  state: string;
  opts: Record<string, string>;
  flags: Set<string>;
}

function parseArgs(argv: string[]): Args {
  const rest: string[] = [];
  let socket = process.env.QUBES_SIM_SOCKET ? path.resolve(process.env.QUBES_SIM_SOCKET) : DEFAULT_SOCKET;
  let state = process.env.QUBES_SIM_STATE ? path.resolve(process.env.QUBES_SIM_STATE) : DEFAULT_STATE;
  const opts: Record<string, string> = {};
  const flags = new Set<string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (["--socket", "--state", "--tail", "--repo", "--url"].includes(a)) {
      const v = argv[++i];
      if (v === undefined) throw new UsageError(`${a} needs a value`);
      if (a === "--socket") socket = path.resolve(v);
      else if (a === "--state") state = path.resolve(v);
      else opts[a.slice(2)] = v;
    } else if (a === "--follow" || a === "--json") flags.add(a.slice(2));
    else if (a.startsWith("--")) throw new UsageError(`unknown option ${a}`);
    else rest.push(a);
  }
  const cmd = rest.shift();
  if (!cmd) throw new UsageError("missing command");
  return { cmd, rest, socket, state, opts, flags };
}

/** The broker's journal; with follow, keeps printing new entries until interrupted. */
async function journal(a: Args): Promise<void> {
  const file = path.join(a.state, "qrexec-journal.jsonl");
  const tail = a.opts.tail !== undefined ? Number(a.opts.tail) : undefined;
  if (tail !== undefined && (!Number.isInteger(tail) || tail < 0)) throw new UsageError("--tail needs a number");
  const show = (e: JournalEntry) => process.stdout.write((a.flags.has("json") ? JSON.stringify(e) : formatJournal(e)) + "\n");
  let entries = readJournal(file);
  let seen = entries.length;
  if (tail !== undefined) entries = entries.slice(Math.max(0, entries.length - tail));
  entries.forEach(show);
  if (!a.flags.has("follow")) return;
  for (;;) {
    await new Promise((r) => setTimeout(r, 300));
    const all = readJournal(file);
    all.slice(seen).forEach(show);
    seen = all.length;
  }
}

function alive(socket: string): Promise<boolean> {
  return new Promise((r) => {
    if (!fs.existsSync(socket)) return r(false);
    const c = net.createConnection(socket);
    c.on("connect", () => {
      c.destroy();
      r(true);
    });
    c.on("error", () => r(false));
  });
}

function table(rows: string[][]): string {
  const w = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(w[i])).join("  ").trimEnd()).join("\n") + "\n";
}

async function ls(socket: string, stateDir: string): Promise<string> {
  const rows = [["NAME", "STATE", "CLASS", "LABEL", "TEMPLATE", "NETVM"]];
  if (await alive(socket)) {
    const c = createAdminClient({ transport: "sim", socket });
    for (const e of await c.vmList()) {
      const p = await c.propertyGetAll(e.name);
      rows.push([e.name, e.state, e.klass, p.label?.value ?? "-", p.template?.value || "-", p.netvm?.value || "-"]);
    }
    return table(rows);
  }
  const s = new StateDir(stateDir).load();
  if (!s) throw new Error(`no daemon on ${socket} and no state in ${stateDir}`);
  for (const vm of Object.values(s.vms).sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const g = (p: string) => (m.PROPS[p].classes && !m.PROPS[p].classes?.includes(vm.klass) ? "-" : m.fmt(m.get(vm, p, s)) || "-");
    rows.push([vm.name, vm.power, vm.klass, g("label"), g("template"), g("netvm")]);
  }
  return table(rows);
}

async function show(vmName: string, socket: string, stateDir: string): Promise<string> {
  let props: Record<string, string>;
  let features: Record<string, string> = {};
  let tags: string[];
  let volumes: Record<string, string>;
  if (await alive(socket)) {
    const c = createAdminClient({ transport: "sim", socket });
    const all = await c.propertyGetAll(vmName);
    props = Object.fromEntries(Object.entries(all).map(([k, v]) => [k, `${v.value}${v.isDefault ? "  (default)" : ""}`]));
    for (const f of await c.featureList(vmName)) features[f] = await c.featureGet(vmName, f);
    tags = await c.tagList(vmName);
    volumes = {};
    for (const v of await c.volumeList(vmName)) volumes[v] = (await c.volumeInfo(vmName, v)).size ?? "?";
  } else {
    const s: State | undefined = new StateDir(stateDir).load();
    if (!s) throw new Error(`no daemon on ${socket} and no state in ${stateDir}`);
    const vm = m.findVm(s, vmName);
    props = Object.fromEntries(m.propNames(vm).map((p) => [p, `${m.fmt(m.get(vm, p, s))}${m.isDefault(vm, p) ? "  (default)" : ""}`]));
    features = vm.features;
    tags = vm.tags;
    volumes = Object.fromEntries(Object.entries(vm.volumes).map(([k, v]) => [k, v.size]));
  }
  let out = `${vmName}\nproperties:\n`;
  for (const [k, v] of Object.entries(props)) out += `  ${k} = ${v}\n`;
  out += "features:\n" + Object.entries(features).map(([k, v]) => `  ${k} = ${v}\n`).join("");
  out += `tags: ${tags.join(" ")}\nvolumes:\n` + Object.entries(volumes).map(([k, v]) => `  ${k} size=${v}\n`).join("");
  return out;
}

async function serve(socket: string, stateDir: string): Promise<void> {
  const d = new SimDaemon({ stateDir });
  await d.listen(socket);
  process.stderr.write(`qubes-sim: serving ${socket} (state ${stateDir})\n`);
  const stop = () => {
    void d.close().then(() => process.exit(0));
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

export async function main(argv: string[]): Promise<number> {
  let a;
  try {
    a = parseArgs(argv);
  } catch (e) {
    process.stderr.write(`qubes-sim: ${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  try {
    switch (a.cmd) {
      case "serve":
        await serve(a.socket, a.state);
        return -1;
      case "ls":
        process.stdout.write(await ls(a.socket, a.state));
        return 0;
      case "show":
        if (a.rest.length !== 1) throw new UsageError("show needs one VM name");
        process.stdout.write(await show(a.rest[0], a.socket, a.state));
        return 0;
      case "journal":
        await journal(a);
        return 0;
      case "network": {
        const f = path.join(a.state, "network.json");
        if (!fs.existsSync(f)) throw new Error(`${f} does not exist: is qubes-sim serving ${a.state}?`);
        process.stdout.write(fs.readFileSync(f, "utf8"));
        return 0;
      }
      case "trigger-build": {
        if (a.rest.length !== 1) throw new UsageError("trigger-build needs one component name");
        const r = await triggerBuild({ stateDir: a.state, component: a.rest[0], repo: a.opts.repo, url: a.opts.url });
        process.stdout.write(`${r.status} ${r.body.trim()}\n`);
        return r.status === 202 ? 0 : 1;
      }
      case "standin-builders": {
        // What the local stack pins: the repositories, their commits and the test maintainer.
        const repos = createStandinGithub(path.join(a.state, "github"));
        const key = maintainerKeyring();
        key.done();
        const out = {
          maintainer: key.fingerprint,
          repos: Object.fromEntries(Object.values(repos).map((r) => [r.name, { url: r.url, commit: r.commit, tag: r.tag }])),
        };
        process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
        return 0;
      }
      case "reset":
        if (await alive(a.socket)) throw new Error(`a daemon is serving ${a.socket}: stop it first`);
        fs.rmSync(a.state, { recursive: true, force: true });
        process.stdout.write(`removed ${a.state}\n`);
        return 0;
      default:
        throw new UsageError(`unknown command ${a.cmd}`);
    }
  } catch (e) {
    process.stderr.write(`qubes-sim: ${e instanceof Error ? e.message : String(e)}\n`);
    if (e instanceof UsageError) process.stderr.write(USAGE);
    return e instanceof UsageError ? 2 : 1;
  }
}

if (require.main === module) {
  void main(process.argv.slice(2)).then((code) => {
    if (code >= 0) process.exit(code);
  });
}
