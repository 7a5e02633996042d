/**
 * The running side of the sim: each running VM's "boot" sandbox (its `/rw/config/rc.local` and
 * what it backgrounds, alive until the VM halts) and the network namespaces, made to follow the
 * power states of the saved state. Also how a VM is sandboxed: its host ids, storage and binds.
 */
import { ChildProcess } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { z } from "zod";
import * as m from "./model";
import { protocolError } from "./model";
import { HOST_NAMES, NET_CARD_VM, NetVm, SimNetwork, TOR_GATEWAY_TAG, webFrontOf, WebFront } from "./network";
import { ownVmStorage, spawnBoot, VmSandbox, writeVmEtc } from "./sandbox";
import type { StandinGithub } from "./standin-github";
import { atomicWrite, State, StateDir, Vm } from "./state";

/** `QUBES_SIM_ISOLATION=off`: VMs as host root, no user namespace, no seccomp. Only for proving the escape suite can fail. */
export function isolationEnabled(): boolean {
  const v = process.env.QUBES_SIM_ISOLATION;
  if (v === undefined || v === "" || v === "on") return true;
  if (v === "off") return false;
  throw new Error(`QUBES_SIM_ISOLATION must be on or off, not ${JSON.stringify(v)}`);
}

/** `<state>/sim.json`: the sim's persistent identity (the host ids its VMs own files with). */
const SimIdentity = z.object({ idBase: z.number().int().min(2 ** 31).max(2 ** 32 - 2 ** 26) }).strict();

/** Reads or creates `<state>/sim.json`: a random block of 2^26 host ids above 2^31 per sim. */
export function simIdBase(stateRoot: string): number {
  const f = path.join(stateRoot, "sim.json");
  if (fs.existsSync(f)) {
    const p = SimIdentity.safeParse(JSON.parse(fs.readFileSync(f, "utf8")));
    if (!p.success) throw new Error(`${f}: invalid: ${p.error.message}`);
    return p.data.idBase;
  }
  const idBase = 2 ** 31 + Math.floor(Math.random() * 31) * 2 ** 26;
  fs.mkdirSync(stateRoot, { recursive: true });
  atomicWrite(f, JSON.stringify({ idBase }));
  return idBase;
}

/** A VM has network when it has a netvm or provides network itself (sys-net). */
function hasNetwork(vm: Vm, s: State): boolean {
  return typeof m.get(vm, "netvm", s) === "string" || m.get(vm, "provides_network", s) === true;
}

const running = (vm: Vm): boolean => vm.klass !== "AdminVM" && vm.power !== "Halted";

/** The network's view of the running VMs. */
function runningNetVms(s: State): NetVm[] {
  return Object.values(s.vms)
    .filter(running)
    .map((vm) => {
      const netvm = m.get(vm, "netvm", s);
      const nv = typeof netvm === "string" ? s.vms[netvm] : undefined;
      const tmpl = typeof vm.props.template === "string" ? s.vms[vm.props.template] : undefined;
      const provides = m.get(vm, "provides_network", s) === true;
      const tor = provides && (vm.tags.includes(TOR_GATEWAY_TAG) || tmpl?.tags.includes(TOR_GATEWAY_TAG) === true || tmpl?.features.whonix === "1");
      return { name: vm.name, qid: vm.qid, netvm: nv && nv.power !== "Halted" ? nv.name : null, providesNetwork: provides, torGateway: tor };
    });
}

export interface RuntimeOptions {
  /** The current state (the daemon swaps it on every mutation). */
  state: () => State;
  dir: StateDir;
  github: StandinGithub;
  toolsBin: string;
  isolation: boolean;
  /** Host id of qid 0's uid 0; VM `q` owns host ids idBase + q*65536 .. + 65534. */
  idBase: number;
  /** Called at each boot (Halted to running), before the sandbox is made. */
  onBoot: () => void;
  log: (msg: string) => void;
}

export class VmRuntime {
  /** The boot sandbox of each running VM and its host pid (once bwrap ran its first process). */
  private readonly booted = new Map<string, { child: ChildProcess; pid: Promise<number> }>();
  private network?: SimNetwork;
  private front?: WebFront;

  constructor(private readonly o: RuntimeOptions) {}

  /** `<state>/network.json`: the addresses of this run (tests and scripts reach the VMs by them). */
  get networkFile(): string {
    return path.join(this.o.dir.root, "network.json");
  }

  /** Host id of a VM's uid 0. */
  vmIdBase(vm: Vm): number {
    if (vm.qid >= 1024) throw new Error(`qid ${vm.qid} of ${vm.name}: qubes-sim maps ids for qids below 1024 only`);
    return this.o.idBase + vm.qid * 65536;
  }

  /** How a VM is sandboxed (its storage is created and given to its ids). */
  sandbox(name: string): VmSandbox {
    const s = this.o.state();
    const vm = m.findVm(s, name);
    if (vm.klass === "AdminVM") throw protocolError("expected destination to not be AdminVM");
    if (!this.network) throw new Error("qubes-sim is not serving (no network)");
    this.o.dir.ensureVmDirs(vm.name);
    const idBase = this.vmIdBase(vm);
    const vmDir = this.o.dir.vmDir(vm.name);
    ownVmStorage(vmDir, idBase);
    return {
      vm: vm.name,
      vmDir,
      runDir: this.o.dir.runDir(vm.name),
      etcDir: path.join(this.o.dir.root, "etc", vm.name),
      idBase,
      netns: this.network.nsPath(vm.qid),
      toolsBin: this.o.toolsBin,
      binds: hasNetwork(vm, s) ? this.o.github.binds(vm, idBase) : [],
      isolation: this.o.isolation,
    };
  }

  /** When the daemon starts serving: VMs get namespaces and boots from now on. */
  startNetwork(): void {
    this.network = new SimNetwork((msg) => this.o.log(msg));
  }

  /** Boot or halt the sandboxes of VMs whose power state changed; the network follows. */
  powerChanged(): void {
    const s = this.o.state();
    for (const vm of Object.values(s.vms)) if (!running(vm) && this.booted.has(vm.name)) this.halt(vm.name);
    for (const name of [...this.booted.keys()]) if (!s.vms[name]) this.halt(name);
    this.syncNetwork();
    for (const vm of Object.values(s.vms)) if (running(vm) && !this.booted.has(vm.name)) this.boot(vm.name);
  }

  /** Host pid of the running VM's first process (to enter its namespaces). */
  vmPid(name: string): Promise<number> {
    const b = this.booted.get(name);
    return b ? b.pid : Promise.reject(new Error(`${name} is not running`));
  }

  haltAll(): void {
    for (const name of [...this.booted.keys()]) this.halt(name);
  }

  closeNetwork(): void {
    this.network?.close();
    this.network = undefined;
    fs.rmSync(this.networkFile, { force: true });
  }

  /** Namespaces and rules for the running VMs; sys-net's webhook front is read from its storage. */
  private syncNetwork(): void {
    if (!this.network) return;
    const s = this.o.state();
    const card = s.vms[NET_CARD_VM];
    this.front = card && card.power !== "Halted" ? webFrontOf(path.join(this.o.dir.vmDir(NET_CARD_VM), "rw"), (msg) => this.o.log(msg)) : undefined;
    try {
      this.network.sync(runningNetVms(s), this.front);
    } catch (e) {
      this.o.log(`network: ${(e as Error).message}`);
    }
    this.writeNetworkInfo();
  }

  private writeNetworkInfo(): void {
    if (!this.network) return;
    const u = this.network.uplink;
    const info = {
      ...u,
      hosts: { [HOST_NAMES.internet]: u.internet, [HOST_NAMES.github]: u.github },
      webhookFront: this.front ? { url: `http://${u.sysNet}:${this.front.port}`, ...this.front } : null,
    };
    const text = JSON.stringify(info, null, 2) + "\n";
    if (fs.existsSync(this.networkFile) && fs.readFileSync(this.networkFile, "utf8") === text) return;
    atomicWrite(this.networkFile, text);
  }

  /** Runs /rw/config/rc.local (when present) in a sandbox that lives until the VM halts. */
  private boot(name: string): void {
    this.o.onBoot();
    const sb = this.sandbox(name);
    const u = this.network!.uplink;
    writeVmEtc(sb, { [HOST_NAMES.internet]: u.internet, [HOST_NAMES.github]: u.github }, this.o.github.repos());
    const logFile = path.join(sb.vmDir, "console.log");
    const out = fs.openSync(logFile, "a", 0o644);
    const script =
      "echo qubes-sim: booted; if [ -f /rw/config/rc.local ]; then echo \"rc.local: starting $(date -u +%FT%TZ)\"; " +
      "/bin/sh /rw/config/rc.local; echo \"rc.local: exit $?\"; fi; exec sleep infinity";
    const child = spawnBoot(sb, ["/bin/sh", "-c", script]);
    child.stdin?.end();
    const pid = new Promise<number>((resolve, reject) => {
      // Ready when bwrap told the pid and the sandbox's first process runs (mounts are done).
      let info = "";
      let out = "";
      let pidSeen: number | undefined;
      let ready = false;
      const check = () => {
        if (pidSeen !== undefined && ready) resolve(pidSeen);
      };
      const fd3 = child.stdio[3] as NodeJS.ReadableStream | null;
      fd3?.on("data", (d: Buffer) => {
        info += d.toString();
        const mm = /"child-pid":\s*(\d+)/.exec(info);
        if (mm) pidSeen = Number(mm[1]);
        check();
      });
      child.stdout?.on("data", (d: Buffer) => {
        if (ready) return;
        out += d.toString();
        ready = out.includes("qubes-sim: booted");
        check();
      });
      fd3?.on("error", () => undefined);
      child.on("close", () => reject(new Error(`${name} halted`)));
    });
    pid.catch(() => undefined);
    child.stdout?.on("data", (d: Buffer) => fs.writeSync(out, d));
    child.stderr?.on("data", (d: Buffer) => fs.writeSync(out, d));
    child.on("error", (e) => this.o.log(`boot of ${name} failed: ${e.message}`));
    child.on("close", () => {
      fs.closeSync(out);
      if (this.booted.get(name)?.child === child) this.booted.delete(name);
    });
    this.booted.set(name, { child, pid });
  }

  private halt(name: string): void {
    const b = this.booted.get(name);
    this.booted.delete(name);
    b?.child.kill("SIGKILL");
  }
}
