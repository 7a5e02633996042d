/**
 * qubes-sim's daemon: the qubesd wire protocol (admin/wire.ts) on a Unix socket, dispatching to
 * the model (sim/model.ts). Every request is handled synchronously on the one event loop, so
 * mutations are serialized; a mutation is written durably (StateDir.save) before its reply.
 * Only `sim.vm.Run` is asynchronous (the command runs outside the state, after the VM started).
 * Each VM's qrexec socket is served by the broker (sim/broker.ts); a VM that starts runs its
 * `/rw/config/rc.local` in a long-lived sandbox (its "boot"), killed when the VM halts.
 */
import { ChildProcess, execFileSync } from "child_process";
import * as fs from "fs";
import * as net from "net";
import * as path from "path";
import { z } from "zod";
import { decodeRequestHeader, encodeError, encodeOk, escapeValue, FramingError, MAX_HEADER, QUBESD_MAX_REQUEST, WireRequest } from "../admin/wire";
import * as m from "./model";
import { SimError, protocolError } from "./model";
import { PolicyDir } from "./policy";
import { QrexecBroker } from "./broker";
import { HOST_NAMES, NET_CARD_VM, NetVm, SimNetwork, TOR_GATEWAY_TAG, webFrontOf, WebFront } from "./network";
import { chownTree, GITHUB_MOUNT, ownVmStorage, runInVm, spawnBoot, USER_UID, VmSandbox, VmUser, writeVmEtc } from "./sandbox";
import { atomicWrite, State, StateDir, Vm } from "./state";

/** Largest request for sim.vm.Run (file contents travel in it). */
export const SIM_MAX_REQUEST = 256 * 1024 * 1024;

const RunPayload = z.object({ user: z.string().regex(/^[a-z_][a-z0-9_-]*$/), command: z.string(), stdinBase64: z.string() });

/** `<state>/github-access.json`: who may push to which repository of the stand-in GitHub. */
const GithubAccess = z.record(z.string().regex(/^[A-Za-z0-9_.-]+\.git$/), z.object({ writers: z.array(z.string().regex(/^(@tag:)?[A-Za-z0-9_.-]+$/)) }).strict());
type GithubAccess = z.infer<typeof GithubAccess>;
/** By default only the logs VMs (the site tags them) hold the logs repository's deploy key. */
export const DEFAULT_GITHUB_ACCESS: GithubAccess = { "build-logs.git": { writers: ["@tag:qbi-role-logs"] } };

/** `<state>/sim.json`: the sim's persistent identity (the host ids its VMs own files with). */
const SimIdentity = z.object({ idBase: z.number().int().min(2 ** 31).max(2 ** 32 - 2 ** 26) }).strict();

/** `QUBES_SIM_ISOLATION=off`: VMs as host root, no user namespace, no seccomp. Only for proving the escape suite can fail. */
export function isolationEnabled(): boolean {
  const v = process.env.QUBES_SIM_ISOLATION;
  if (v === undefined || v === "" || v === "on") return true;
  if (v === "off") return false;
  throw new Error(`QUBES_SIM_ISOLATION must be on or off, not ${JSON.stringify(v)}`);
}

type Handler = (req: WireRequest) => string;

export interface SimOptions {
  stateDir: string;
  toolsBin?: string;
  log?: (msg: string) => void;
}

export class SimDaemon {
  readonly dir: StateDir;
  state: State;
  readonly policy: PolicyDir;
  readonly stats = new Map<string, number>();
  /** Calls that change Qubes' state (Admin writes and policy writes), by method, since the last reset. */
  readonly writes = new Map<string, number>();
  /** VMs booted (Halted to running), whatever started them, since the last reset. */
  private starts = 0;
  private server?: net.Server;
  readonly broker: QrexecBroker;
  /** The "boot" sandbox of each running VM (rc.local and what it backgrounds). */
  private readonly booted = new Map<string, { child: ChildProcess; pid: Promise<number> }>();
  private readonly toolsBin: string;
  private readonly log: (msg: string) => void;
  readonly isolation: boolean;
  /** Host id of qid 0's uid 0; VM `q` owns host ids idBase + q*65536 .. + 65534. */
  readonly idBase: number;
  private network?: SimNetwork;
  private front?: WebFront;
  private readonly handlers: Record<string, { fn: Handler; mutates: boolean }>;

  constructor(opts: SimOptions) {
    this.dir = new StateDir(path.resolve(opts.stateDir));
    this.toolsBin = opts.toolsBin ?? process.env.QUBES_SIM_TOOLS_BIN ?? path.join(__dirname, "..", ".tools", "bin");
    this.log = opts.log ?? ((msg) => process.stderr.write(`qubes-sim: ${msg}\n`));
    this.isolation = isolationEnabled();
    this.idBase = this.identity();
    const loaded = this.dir.load();
    this.state = loaded ?? m.defaultWorld();
    if (!loaded) this.dir.save(this.state);
    for (const name of Object.keys(this.state.vms)) if (name !== "dom0") this.dir.ensureVmDirs(name);
    this.policy = new PolicyDir(this.dir.policyDir);
    this.handlers = this.buildHandlers();
    this.ensureGithub();
    this.broker = new QrexecBroker(
      {
        policyDir: this.dir.policyDir,
        journalFile: this.journalFile,
        systemInfo: () => this.systemInfo() as never,
        dispatch: (req) => this.dispatch(req),
        ensureRunning: (vm) => this.ensureRunning(vm),
        sandbox: (vm) => this.sandbox(vm),
        vmPid: (vm) => this.vmPid(vm),
        log: (msg) => this.log(msg),
      },
      (vm) => this.dir.runDir(vm),
    );
  }

  /** Reads or creates `<state>/sim.json`: a random block of 2^26 host ids above 2^31 per sim. */
  private identity(): number {
    const f = path.join(this.dir.root, "sim.json");
    if (fs.existsSync(f)) {
      const p = SimIdentity.safeParse(JSON.parse(fs.readFileSync(f, "utf8")));
      if (!p.success) throw new Error(`${f}: invalid: ${p.error.message}`);
      return p.data.idBase;
    }
    const idBase = 2 ** 31 + Math.floor(Math.random() * 31) * 2 ** 26;
    fs.mkdirSync(this.dir.root, { recursive: true });
    atomicWrite(f, JSON.stringify({ idBase }));
    return idBase;
  }

  /** Host id of a VM's uid 0. */
  vmIdBase(vm: Vm): number {
    if (vm.qid >= 1024) throw new Error(`qid ${vm.qid} of ${vm.name}: qubes-sim maps ids for qids below 1024 only`);
    return this.idBase + vm.qid * 65536;
  }

  /** `<state>/qrexec-journal.jsonl`: every qrexec call and its verdict. */
  get journalFile(): string {
    return path.join(this.dir.root, "qrexec-journal.jsonl");
  }

  /** `<state>/github`: the stand-in GitHub, bound at /srv/qubes-sim-github in VMs with network. */
  get githubDir(): string {
    return path.join(this.dir.root, "github");
  }

  /** `<state>/github-access.json`: which VMs may push to which repository. */
  get githubAccessFile(): string {
    return path.join(this.dir.root, "github-access.json");
  }

  /**
   * Creates the stand-in GitHub with its bare `build-logs.git` (branch main) and the access file
   * (DEFAULT_GITHUB_ACCESS) when missing. Repositories are group/world-writable files: who may
   * write is decided by the mount (read-write only in the VMs the access file names).
   */
  private ensureGithub(): void {
    if (!fs.existsSync(this.githubAccessFile)) atomicWrite(this.githubAccessFile, JSON.stringify(DEFAULT_GITHUB_ACCESS, null, 2) + "\n");
    this.githubAccess();
    const repo = path.join(this.githubDir, "build-logs.git");
    if (fs.existsSync(path.join(repo, "HEAD"))) return;
    fs.mkdirSync(repo, { recursive: true });
    execFileSync("git", ["init", "-q", "--bare", "--shared=0666", "-b", "main", repo], { stdio: ["ignore", "ignore", "pipe"] });
  }

  private githubAccess(): GithubAccess {
    const f = this.githubAccessFile;
    let raw: unknown;
    try {
      raw = JSON.parse(fs.readFileSync(f, "utf8"));
    } catch (e) {
      throw new Error(`${f}: ${(e as Error).message}`);
    }
    const p = GithubAccess.safeParse(raw);
    if (!p.success) throw new Error(`${f}: expected {"<repo>.git": {"writers": ["<vm>" | "@tag:<tag>", ...]}}: ${p.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`);
    return p.data;
  }

  /** The stand-in GitHub's repositories, as paths in a VM. */
  private githubRepos(): string[] {
    return fs.existsSync(this.githubDir) ? fs.readdirSync(this.githubDir).filter((r) => r.endsWith(".git")).sort().map((r) => `${GITHUB_MOUNT}/${r}`) : [];
  }

  /** Repositories of the stand-in GitHub a VM may push to. */
  githubWritable(vm: Vm): string[] {
    let access: GithubAccess;
    try {
      access = this.githubAccess();
    } catch (e) {
      this.log(`${(e as Error).message}: every repository is read-only`);
      return [];
    }
    const match = (w: string) => (w.startsWith("@tag:") ? vm.tags.includes(w.slice(5)) : w === vm.name);
    return Object.entries(access)
      .filter(([repo, a]) => a.writers.some(match) && fs.existsSync(path.join(this.githubDir, repo)))
      .map(([repo]) => repo);
  }

  /** A VM has network when it has a netvm or provides network itself (sys-net). */
  private hasNetwork(vm: Vm): boolean {
    return typeof m.get(vm, "netvm", this.state) === "string" || m.get(vm, "provides_network", this.state) === true;
  }

  /** How a VM is sandboxed (its storage is created and given to its ids). */
  sandbox(name: string): VmSandbox {
    const vm = m.findVm(this.state, name);
    if (vm.klass === "AdminVM") throw protocolError("expected destination to not be AdminVM");
    if (!this.network) throw new Error("qubes-sim is not serving (no network)");
    this.dir.ensureVmDirs(vm.name);
    const idBase = this.vmIdBase(vm);
    const vmDir = this.dir.vmDir(vm.name);
    ownVmStorage(vmDir, idBase);
    const binds: VmSandbox["binds"] = [];
    if (this.hasNetwork(vm) && fs.existsSync(this.githubDir)) {
      binds.push({ src: this.githubDir, dst: GITHUB_MOUNT, rw: false });
      for (const repo of this.githubWritable(vm)) {
        const src = path.join(this.githubDir, repo);
        binds.push({ src, dst: `${GITHUB_MOUNT}/${repo}`, rw: true });
        // git refuses a repository its user does not own (a file:// push runs receive-pack in it,
        // and programs may ignore /etc/gitconfig's safe.directory): the writer's user owns it.
        const uid = idBase + USER_UID;
        if (fs.statSync(src).uid !== uid) chownTree(src, uid);
      }
    }
    return {
      vm: vm.name,
      vmDir,
      runDir: this.dir.runDir(vm.name),
      etcDir: path.join(this.dir.root, "etc", vm.name),
      idBase,
      netns: this.network.nsPath(vm.qid),
      toolsBin: this.toolsBin,
      binds,
      isolation: this.isolation,
    };
  }

  /** Start a VM (and its netvm chain) if halted, as qrexec does for a call's target. */
  ensureRunning(name: string): void {
    const vm = m.findVm(this.state, name);
    if (vm.klass === "AdminVM") throw protocolError("expected destination to not be AdminVM");
    if (vm.power === "Running") return;
    const reply = this.mutate({ method: "admin.vm.Start", arg: "", source: "dom0", dest: name, payload: Buffer.alloc(0) }, (r) => {
      m.startVm(this.state, this.qube(r));
      return "";
    });
    if (reply[0] !== 0x30) throw new SimErrorReply(reply);
  }

  /** The network's view of the running VMs. */
  private runningNetVms(): NetVm[] {
    const s = this.state;
    return Object.values(s.vms)
      .filter((vm) => vm.klass !== "AdminVM" && vm.power !== "Halted")
      .map((vm) => {
        const netvm = m.get(vm, "netvm", s);
        const nv = typeof netvm === "string" ? s.vms[netvm] : undefined;
        const tmpl = typeof vm.props.template === "string" ? s.vms[vm.props.template] : undefined;
        const provides = m.get(vm, "provides_network", s) === true;
        const tor = provides && (vm.tags.includes(TOR_GATEWAY_TAG) || tmpl?.tags.includes(TOR_GATEWAY_TAG) === true || tmpl?.features.whonix === "1");
        return { name: vm.name, qid: vm.qid, netvm: nv && nv.power !== "Halted" ? nv.name : null, providesNetwork: provides, torGateway: tor };
      });
  }

  /** Boot or halt the sandboxes of VMs whose power state changed; the network follows. */
  private powerChanged(): void {
    const running = (vm: Vm) => vm.klass !== "AdminVM" && vm.power !== "Halted";
    for (const vm of Object.values(this.state.vms)) if (!running(vm) && this.booted.has(vm.name)) this.halt(vm.name);
    for (const name of [...this.booted.keys()]) if (!this.state.vms[name]) this.halt(name);
    this.syncNetwork();
    for (const vm of Object.values(this.state.vms)) if (running(vm) && !this.booted.has(vm.name)) this.boot(vm.name);
  }

  /** Namespaces and rules for the running VMs; sys-net's webhook front is read from its storage. */
  private syncNetwork(): void {
    if (!this.network) return;
    const card = this.state.vms[NET_CARD_VM];
    this.front = card && card.power !== "Halted" ? webFrontOf(path.join(this.dir.vmDir(NET_CARD_VM), "rw"), (msg) => this.log(msg)) : undefined;
    try {
      this.network.sync(this.runningNetVms(), this.front);
    } catch (e) {
      this.log(`network: ${(e as Error).message}`);
    }
    this.writeNetworkInfo();
  }

  /** `<state>/network.json`: the addresses of this run (tests and scripts reach the VMs by them). */
  get networkFile(): string {
    return path.join(this.dir.root, "network.json");
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
    this.starts++;
    const sb = this.sandbox(name);
    const u = this.network!.uplink;
    writeVmEtc(sb, { [HOST_NAMES.internet]: u.internet, [HOST_NAMES.github]: u.github }, this.githubRepos());
    const logFile = path.join(sb.vmDir, "console.log");
    const out = fs.openSync(logFile, "a", 0o644);
    const script = "echo qubes-sim: booted; if [ -f /rw/config/rc.local ]; then echo \"rc.local: starting $(date -u +%FT%TZ)\"; /bin/sh /rw/config/rc.local; echo \"rc.local: exit $?\"; fi; exec sleep infinity";
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
    child.on("error", (e) => this.log(`boot of ${name} failed: ${e.message}`));
    child.on("close", () => {
      fs.closeSync(out);
      if (this.booted.get(name)?.child === child) this.booted.delete(name);
    });
    this.booted.set(name, { child, pid });
  }

  /** Host pid of the running VM's first process (to enter its namespaces). */
  vmPid(name: string): Promise<number> {
    const b = this.booted.get(name);
    return b ? b.pid : Promise.reject(new Error(`${name} is not running`));
  }

  private halt(name: string): void {
    const b = this.booted.get(name);
    this.booted.delete(name);
    b?.child.kill("SIGKILL");
  }

  /** Listen on the socket (a stale socket file is replaced; a live one is an error). */
  async listen(socket: string): Promise<void> {
    fs.mkdirSync(path.dirname(socket), { recursive: true });
    if (fs.existsSync(socket)) {
      const alive = await new Promise<boolean>((r) => {
        const c = net.createConnection(socket);
        c.on("connect", () => {
          c.destroy();
          r(true);
        });
        c.on("error", () => r(false));
      });
      if (alive) throw new Error(`socket already in use: ${socket}`);
      fs.unlinkSync(socket);
    }
    this.server = net.createServer({ allowHalfOpen: true }, (c) => this.connection(c));
    await new Promise<void>((resolve, reject) => {
      this.server?.once("error", reject);
      this.server?.listen(socket, () => resolve());
    });
    fs.chmodSync(socket, 0o660);
    this.network = new SimNetwork((msg) => this.log(msg));
    for (const name of Object.keys(this.state.vms)) if (name !== "dom0") await this.broker.serve(name);
    this.powerChanged();
  }

  async close(): Promise<void> {
    for (const name of [...this.booted.keys()]) this.halt(name);
    await this.broker.close();
    this.network?.close();
    this.network = undefined;
    fs.rmSync(this.networkFile, { force: true });
    const s = this.server;
    if (!s) return;
    const addr = s.address();
    await new Promise<void>((r) => s.close(() => r()));
    if (typeof addr === "string") fs.rmSync(addr, { force: true });
  }

  private connection(c: net.Socket): void {
    const chunks: Buffer[] = [];
    let size = 0;
    let header: Omit<WireRequest, "payload"> | undefined;
    let headerLen = -1;
    let error: SimError | undefined;
    let limit = QUBESD_MAX_REQUEST;
    c.on("error", () => undefined);
    c.on("data", (d: Buffer) => {
      if (error) return;
      size += d.length;
      if (size > limit) {
        error = protocolError(`request too long (more than ${limit} bytes)`);
        chunks.length = 0;
        return;
      }
      chunks.push(d);
      if (headerLen < 0) {
        const all = Buffer.concat(chunks);
        const nul = all.indexOf(0);
        if (nul < 0) {
          if (all.length > MAX_HEADER) error = protocolError("framing error: header too long");
          return;
        }
        headerLen = nul;
        try {
          header = decodeRequestHeader(all.subarray(0, nul));
          if (header.method === "sim.vm.Run") limit = SIM_MAX_REQUEST;
        } catch (e) {
          error = protocolError(`framing error: ${(e as Error).message}`);
        }
      }
    });
    c.on("end", () => {
      void this.respond(c, chunks, size, headerLen, header, error);
    });
  }

  private async respond(c: net.Socket, chunks: Buffer[], size: number, headerLen: number, header: Omit<WireRequest, "payload"> | undefined, error: SimError | undefined): Promise<void> {
    let reply: Buffer;
    if (!error && (headerLen < 0 || !header)) error = protocolError(size === 0 ? "framing error: empty request" : "framing error: no NUL after the header");
    if (error || !header) {
      reply = encodeError(error?.type ?? "ProtocolError", error?.message ?? "framing error");
    } else {
      const req: WireRequest = { ...header, payload: Buffer.concat(chunks).subarray(headerLen + 1) };
      reply = await this.dispatch(req);
    }
    if (!c.destroyed) c.end(reply);
  }

  /** Handle one decoded request; never throws. */
  async dispatch(req: WireRequest): Promise<Buffer> {
    if (req.method !== "sim.Stats" && req.method !== "sim.Stats.Reset") this.stats.set(req.method, (this.stats.get(req.method) ?? 0) + 1);
    if (this.isWrite(req.method)) this.writes.set(req.method, (this.writes.get(req.method) ?? 0) + 1);
    try {
      if (req.method === "sim.vm.Run") return encodeOk(await this.run(req));
      const h = Object.prototype.hasOwnProperty.call(this.handlers, req.method) ? this.handlers[req.method] : undefined;
      if (!h) {
        if (req.method.startsWith("admin.vm.Create.")) return this.mutate(req, (r) => this.create(r));
        throw protocolError(`no such method: '${req.method}'`);
      }
      if (req.method.startsWith("policy.")) return encodeOk(h.fn(req));
      return h.mutates ? this.mutate(req, h.fn) : encodeOk(h.fn(req));
    } catch (e) {
      return this.errorReply(req, e);
    }
  }

  /** Whether a method changes state (counted whether or not it succeeds: a caller that tries to write is a writer). */
  private isWrite(method: string): boolean {
    if (method.startsWith("admin.vm.Create.") || method === "policy.Replace" || method === "policy.Remove") return true;
    const h = Object.prototype.hasOwnProperty.call(this.handlers, method) ? this.handlers[method] : undefined;
    return h?.mutates === true;
  }

  private errorReply(req: WireRequest, e: unknown): Buffer {
    if (e instanceof SimError) return encodeError(e.type, e.message);
    this.log(`internal error in ${req.method}+${req.arg} (${req.source} -> ${req.dest}): ${(e as Error)?.stack ?? String(e)}`);
    return encodeError("QubesException", `qubes-sim internal error in ${req.method}: ${(e as Error)?.message ?? String(e)}`);
  }

  /** Run a mutation on a copy of the state; on success save durably, then swap it in. */
  private mutate(req: WireRequest, fn: Handler): Buffer {
    const before = this.state;
    this.state = structuredClone(before);
    try {
      const out = fn(req);
      this.dir.save(this.state);
      this.vmsChanged(before);
      return encodeOk(out);
    } catch (e) {
      this.state = before;
      return this.errorReply(req, e);
    }
  }

  /** After a saved mutation: serve qrexec sockets of new VMs, drop removed ones, boot/halt. */
  private vmsChanged(before: State): void {
    for (const name of Object.keys(this.state.vms)) if (name !== "dom0" && !before.vms[name] && this.server) void this.broker.serve(name);
    for (const name of Object.keys(before.vms)) if (!this.state.vms[name]) void this.broker.drop(name);
    if (this.server) this.powerChanged();
  }

  private vm(req: WireRequest): Vm {
    return m.findVm(this.state, req.dest);
  }

  private qube(req: WireRequest): Vm {
    const vm = this.vm(req);
    if (vm.klass === "AdminVM") throw protocolError("expected destination to not be AdminVM");
    return vm;
  }

  private toDom0(req: WireRequest): void {
    const vm = this.vm(req);
    if (vm.klass !== "AdminVM") throw protocolError("expected destination to be AdminVM");
  }

  private noArg(req: WireRequest): void {
    if (req.arg) throw protocolError("unexpected argument");
  }
  private wantArg(req: WireRequest): void {
    if (!req.arg) throw protocolError("expected an argument");
  }
  private noPayload(req: WireRequest): void {
    if (req.payload.length) throw protocolError("unexpected payload");
  }

  private ascii(req: WireRequest): string {
    const t = req.payload.toString("latin1");
    if (!/^[\x20-\x7e]*$/.test(t)) throw protocolError("payload must be printable ASCII");
    return t;
  }

  private create(req: WireRequest): string {
    this.toDom0(req);
    const vm = m.createVm(this.state, req.method.slice("admin.vm.Create.".length), req.arg, this.ascii(req), req.source);
    this.dir.ensureVmDirs(vm.name);
    return "";
  }

  private buildHandlers(): Record<string, { fn: Handler; mutates: boolean }> {
    const s = () => this.state;
    const ro = (fn: Handler) => ({ fn, mutates: false });
    const rw = (fn: Handler) => ({ fn, mutates: true });
    const list = (xs: string[]) => xs.map((x) => x + "\n").join("");
    return {
      "admin.vm.List": ro((r) => {
        this.noArg(r);
        this.noPayload(r);
        const d = this.vm(r);
        const vms = d.klass === "AdminVM" ? Object.values(s().vms) : [d];
        return vms
          .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
          .map((v) => `${v.name} class=${v.klass} state=${v.power}\n`)
          .join("");
      }),
      "admin.vm.Remove": rw((r) => {
        this.noArg(r);
        this.noPayload(r);
        const vm = this.vm(r);
        m.removeVm(s(), vm);
        fs.rmSync(this.dir.vmDir(vm.name), { recursive: true, force: true });
        fs.rmSync(this.dir.runDir(vm.name), { recursive: true, force: true });
        return "";
      }),
      "admin.vm.property.List": ro((r) => list(m.propNames(this.vm(r)))),
      "admin.vm.property.Get": ro((r) => {
        this.wantArg(r);
        return m.formatProperty(this.vm(r), r.arg, s());
      }),
      "admin.vm.property.GetDefault": ro((r) => {
        this.wantArg(r);
        const vm = this.vm(r);
        const d = m.propDef(vm, r.arg);
        const v = d.dflt?.(vm, s());
        return v === undefined ? "" : `type=${d.type} ${m.fmt(v)}`;
      }),
      "admin.vm.property.GetAll": ro((r) => {
        this.noArg(r);
        const vm = this.vm(r);
        return m
          .propNames(vm)
          .map((p) => `${p} ${escapeValue(m.formatProperty(vm, p, s()))}\n`)
          .join("");
      }),
      "admin.vm.property.Set": rw((r) => {
        this.wantArg(r);
        m.setProperty(s(), this.vm(r), r.arg, r.payload.toString("utf8"));
        return "";
      }),
      "admin.vm.property.Reset": rw((r) => {
        this.wantArg(r);
        this.noPayload(r);
        m.resetProperty(s(), this.vm(r), r.arg);
        return "";
      }),
      "admin.property.List": ro((r) => {
        this.toDom0(r);
        return list(Object.keys(m.GLOBAL_PROPS).sort());
      }),
      "admin.property.Get": ro((r) => {
        this.toDom0(r);
        return m.formatGlobal(s(), r.arg);
      }),
      "admin.property.GetAll": ro((r) => {
        this.toDom0(r);
        return Object.keys(m.GLOBAL_PROPS)
          .sort()
          .map((p) => `${p} ${escapeValue(m.formatGlobal(s(), p))}\n`)
          .join("");
      }),
      "admin.property.Set": rw((r) => {
        this.toDom0(r);
        m.setGlobal(s(), r.arg, r.payload.toString("utf8"));
        return "";
      }),
      "admin.property.Reset": rw((r) => {
        this.toDom0(r);
        m.globalDef(r.arg);
        delete s().global[r.arg];
        return "";
      }),
      "admin.vm.feature.List": ro((r) => list(Object.keys(this.vm(r).features).sort())),
      "admin.vm.feature.Get": ro((r) => {
        this.wantArg(r);
        const vm = this.vm(r);
        if (!Object.prototype.hasOwnProperty.call(vm.features, r.arg)) throw new SimError("QubesFeatureNotFoundError", `Feature not set for domain ${vm.name}: ${r.arg}`);
        return vm.features[r.arg];
      }),
      "admin.vm.feature.Set": rw((r) => {
        this.wantArg(r);
        this.vm(r).features[r.arg] = this.ascii(r);
        return "";
      }),
      "admin.vm.feature.Remove": rw((r) => {
        this.wantArg(r);
        const vm = this.vm(r);
        if (!Object.prototype.hasOwnProperty.call(vm.features, r.arg)) throw new SimError("QubesFeatureNotFoundError", `Feature not set for domain ${vm.name}: ${r.arg}`);
        delete vm.features[r.arg];
        return "";
      }),
      "admin.vm.tag.List": ro((r) => list([...this.vm(r).tags].sort())),
      "admin.vm.tag.Get": ro((r) => {
        this.wantArg(r);
        m.validateTag(r.arg);
        return this.vm(r).tags.includes(r.arg) ? "1" : "0";
      }),
      "admin.vm.tag.Set": rw((r) => {
        this.wantArg(r);
        this.noPayload(r);
        m.validateTag(r.arg);
        const vm = this.vm(r);
        if (!vm.tags.includes(r.arg)) vm.tags.push(r.arg);
        return "";
      }),
      "admin.vm.tag.Remove": rw((r) => {
        this.wantArg(r);
        m.validateTag(r.arg);
        const vm = this.vm(r);
        if (!vm.tags.includes(r.arg)) throw new SimError("QubesTagNotFoundError", `Tag not set for domain ${vm.name}: ${r.arg}`);
        vm.tags = vm.tags.filter((t) => t !== r.arg);
        return "";
      }),
      "admin.vm.volume.List": ro((r) => list(Object.keys(this.vm(r).volumes).sort())),
      "admin.vm.volume.Info": ro((r) => {
        this.wantArg(r);
        return m.volumeInfo(this.vm(r), r.arg, s());
      }),
      "admin.vm.volume.ListSnapshots": ro((r) => {
        this.wantArg(r);
        this.noPayload(r);
        m.findVolume(this.vm(r), r.arg);
        // The sim keeps no revisions of a volume.
        return "";
      }),
      "admin.vm.volume.Resize": rw((r) => {
        this.wantArg(r);
        m.resizeVolume(this.qube(r), r.arg, r.payload.toString("latin1"), s());
        return "";
      }),
      "admin.vm.Start": rw((r) => {
        this.noArg(r);
        m.startVm(s(), this.qube(r));
        return "";
      }),
      "admin.vm.Shutdown": rw((r) => {
        m.shutdownVm(s(), this.qube(r));
        return "";
      }),
      "admin.vm.Kill": rw((r) => {
        this.noArg(r);
        m.killVm(this.qube(r));
        return "";
      }),
      "admin.vm.CurrentState": ro((r) => {
        this.noArg(r);
        const vm = this.vm(r);
        const running = vm.power !== "Halted";
        const mem = running ? Number(m.get(vm, "memory", s()) ?? 4096) * 1024 : 0;
        const max = running ? Number(m.get(vm, "maxmem", s()) ?? 4096) * 1024 : 0;
        return `mem=${mem} mem_static_max=${max} cputime=0 power_state=${vm.power}`;
      }),
      "admin.label.List": ro(() => list(m.LABELS.map((l) => l.name))),
      "admin.label.Get": ro((r) => {
        const l = m.LABELS.find((x) => x.name === r.arg);
        if (!l) throw new SimError("QubesLabelNotFoundError", `Label does not exist: '${r.arg}'`);
        return l.color;
      }),
      "admin.label.Index": ro((r) => {
        const i = m.LABELS.findIndex((x) => x.name === r.arg);
        if (i < 0) throw new SimError("QubesLabelNotFoundError", `Label does not exist: '${r.arg}'`);
        return String(i + 1);
      }),
      "internal.GetSystemInfo": ro(() => JSON.stringify(this.systemInfo())),
      "policy.List": ro((r) => this.policy.handle(r.method, r.arg, r.payload)),
      "policy.Get": ro((r) => this.policy.handle(r.method, r.arg, r.payload)),
      "policy.Replace": ro((r) => this.policy.handle(r.method, r.arg, r.payload)),
      "policy.Remove": ro((r) => this.policy.handle(r.method, r.arg, r.payload)),
      "sim.Stats": ro(() => {
        const calls: Record<string, number> = {};
        for (const k of [...this.stats.keys()].sort()) calls[k] = this.stats.get(k) ?? 0;
        const writes: Record<string, number> = {};
        for (const k of [...this.writes.keys()].sort()) writes[k] = this.writes.get(k) ?? 0;
        return JSON.stringify({ calls, total: Object.values(calls).reduce((a, b) => a + b, 0), writes, starts: this.starts });
      }),
      "sim.Stats.Reset": ro(() => {
        this.stats.clear();
        this.writes.clear();
        this.starts = 0;
        return "";
      }),
    };
  }

  systemInfo(): { domains: Record<string, Record<string, unknown>> } {
    const s = this.state;
    const domains: Record<string, Record<string, unknown>> = {};
    for (const vm of Object.values(s.vms)) {
      const dd = m.get(vm, "default_dispvm", s);
      const guivm = vm.klass === "AdminVM" ? null : m.get(vm, "guivm", s);
      domains[vm.name] = {
        name: vm.name,
        tags: [...vm.tags],
        type: vm.klass,
        template_for_dispvms: m.get(vm, "template_for_dispvms", s) === true,
        default_dispvm: typeof dd === "string" ? dd : null,
        icon: m.get(vm, "icon", s),
        label: m.get(vm, "label", s) ?? null,
        guivm: typeof guivm === "string" ? guivm : null,
        power_state: vm.power,
        uuid: vm.uuid,
      };
    }
    return { domains };
  }

  /** sim.vm.Run: start the VM (as qvm-run does), then run the command in its sandbox. */
  private async run(req: WireRequest): Promise<string> {
    const p = RunPayload.safeParse((() => {
      try {
        return JSON.parse(req.payload.toString("utf8"));
      } catch {
        return undefined;
      }
    })());
    if (!p.success) throw protocolError("sim.vm.Run: payload must be JSON {user, command, stdinBase64}");
    const started = this.mutate(req, (r) => {
      m.startVm(this.state, this.qube(r));
      return "";
    });
    if (started[0] !== 0x30) return Promise.reject(new SimErrorReply(started));
    const user = p.data.user;
    if (user !== "root" && user !== "user") throw new SimError("QubesException", `sim.vm.Run: ${req.dest} has no user ${user} (root or user)`);
    const sb = this.sandbox(req.dest);
    const pid = await this.vmPid(req.dest);
    const res = await runInVm(sb, pid, user as VmUser, p.data.command, Buffer.from(p.data.stdinBase64, "base64"));
    return JSON.stringify({ exitCode: res.exitCode, stdout: res.stdout.toString("base64"), stderr: res.stderr.toString("base64") });
  }
}

/** Carries an already-encoded error reply out of run(). */
class SimErrorReply extends SimError {
  constructor(readonly reply: Buffer) {
    const parts = reply.subarray(2).toString("utf8").split("\0");
    super(parts[0] ?? "QubesException", parts[2] ?? "");
  }
}

export { FramingError };
