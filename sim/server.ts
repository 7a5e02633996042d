/**
 * qubes-sim's daemon: the qubesd wire protocol on a Unix socket (framing: sim/wire.ts), dispatching
 * to the Admin API handlers (sim/handlers/) over the model (sim/model.ts). Every request is handled
 * synchronously on the one event loop, so mutations are serialized; a mutation is written durably
 * (StateDir.save) before its reply. Only `sim.vm.Run` is asynchronous (the command runs outside the
 * state, after the VM started). Each VM's qrexec socket is served by the broker (sim/broker.ts);
 * running VMs are boot sandboxes (sim/boot.ts).
 */
import * as fs from "fs";
import * as net from "net";
import * as path from "path";
import type { WireRequest } from "../admin/wire";
import { VmRuntime, isolationEnabled, simIdBase } from "./boot";
import { QrexecBroker } from "./broker";
import { checkSignature, HandlerContext, resolveEnds } from "./handlers/context";
import { HandlerSet } from "./handlers";
import { startVm } from "./handlers/lifecycle";
import { systemInfo } from "./handlers/policy";
import { RUN_METHOD, runCommand, RunHost, SimCounters } from "./handlers/sim";
import * as m from "./model";
import { protocolError, SimError } from "./model";
import { PolicyDir } from "./policy";
import type { VmSandbox } from "./sandbox";
import { StandinGithub } from "./standin-github";
import { State, StateDir, Vm } from "./state";
import { exceptionReply, okReply, RequestReader } from "./wire";

export interface SimOptions {
  stateDir: string;
  toolsBin?: string;
  log?: (msg: string) => void;
}

export class SimDaemon implements HandlerContext {
  readonly dir: StateDir;
  state: State;
  readonly policy: PolicyDir;
  readonly counters = new SimCounters();
  private server?: net.Server;
  readonly broker: QrexecBroker;
  readonly github: StandinGithub;
  private readonly runtime: VmRuntime;
  private readonly log: (msg: string) => void;
  readonly isolation: boolean;
  private readonly handlers: HandlerSet;
  private readonly runHost: RunHost;

  constructor(opts: SimOptions) {
    this.dir = new StateDir(path.resolve(opts.stateDir));
    const toolsBin = opts.toolsBin ?? process.env.QUBES_SIM_TOOLS_BIN ?? path.join(__dirname, "..", ".tools", "bin");
    this.log = opts.log ?? ((msg) => process.stderr.write(`qubes-sim: ${msg}\n`));
    this.isolation = isolationEnabled();
    const idBase = simIdBase(this.dir.root);
    const loaded = this.dir.load();
    this.state = loaded ?? m.defaultWorld();
    if (!loaded) this.dir.save(this.state);
    for (const name of Object.keys(this.state.vms)) if (name !== "dom0") this.dir.ensureVmDirs(name);
    this.policy = new PolicyDir(this.dir.policyDir);
    this.handlers = new HandlerSet(this, this.counters);
    this.github = new StandinGithub(this.dir.root, (msg) => this.log(msg));
    this.github.ensure();
    this.runtime = new VmRuntime({
      state: () => this.state,
      dir: this.dir,
      github: this.github,
      toolsBin,
      isolation: this.isolation,
      idBase,
      onBoot: () => this.counters.starts++,
      log: (msg) => this.log(msg),
    });
    this.runHost = {
      start: (req) => this.mutate(req, (r) => startVm(this, this.qube(r.dest))),
      sandbox: (vm) => this.sandbox(vm),
      vmPid: (vm) => this.runtime.vmPid(vm),
    };
    this.broker = new QrexecBroker(
      {
        policyDir: this.dir.policyDir,
        journalFile: this.journalFile,
        systemInfo: () => systemInfo(this.state) as never,
        dispatch: (req) => this.dispatch(req),
        call: (req) => this.call(req),
        ensureRunning: (vm) => this.ensureRunning(vm),
        sandbox: (vm) => this.sandbox(vm),
        vmPid: (vm) => this.runtime.vmPid(vm),
        log: (msg) => this.log(msg),
      },
      (vm) => this.dir.runDir(vm),
    );
  }

  /** `<state>/qrexec-journal.jsonl`: every qrexec call and its verdict. */
  get journalFile(): string {
    return path.join(this.dir.root, "qrexec-journal.jsonl");
  }

  /** `<state>/network.json`: the addresses of this run. */
  get networkFile(): string {
    return this.runtime.networkFile;
  }

  /** How a VM is sandboxed (its storage is created and given to its ids). */
  sandbox(name: string): VmSandbox {
    return this.runtime.sandbox(name);
  }

  /** Start a VM (and its netvm chain) if halted, as qrexec does for a call's target. */
  ensureRunning(name: string): void {
    const vm = m.findVm(this.state, name);
    if (vm.klass === "AdminVM") throw protocolError("expected destination to not be AdminVM");
    if (vm.power === "Running") return;
    this.mutate({ method: "admin.vm.Start", arg: "", source: "dom0", dest: name, payload: Buffer.alloc(0) }, () => startVm(this, this.state.vms[vm.name]));
  }

  /** A qube (not dom0) of the current state, by name or `uuid:`. */
  private qube(dest: string): Vm {
    const vm = m.findVm(this.state, dest);
    if (vm.klass === "AdminVM") throw protocolError("expected destination to not be AdminVM");
    return vm;
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
    this.runtime.startNetwork();
    for (const name of Object.keys(this.state.vms)) if (name !== "dom0") await this.broker.serve(name);
    this.runtime.powerChanged();
  }

  async close(): Promise<void> {
    this.runtime.haltAll();
    await this.broker.close();
    this.runtime.closeNetwork();
    const s = this.server;
    if (!s) return;
    const addr = s.address();
    await new Promise<void>((r) => s.close(() => r()));
    if (typeof addr === "string") fs.rmSync(addr, { force: true });
  }

  private connection(c: net.Socket): void {
    const reader = new RequestReader();
    c.on("error", () => undefined);
    c.on("data", (d: Buffer) => reader.push(d));
    c.on("end", () => {
      const req = reader.end();
      void (req instanceof SimError ? Promise.resolve(exceptionReply(req)) : this.dispatch(req)).then((reply) => {
        if (!c.destroyed) c.end(reply);
      });
    });
  }

  /** Handle one decoded request: the wire reply; never throws. */
  async dispatch(req: WireRequest): Promise<Buffer> {
    try {
      return okReply(await this.call(req));
    } catch (e) {
      return exceptionReply(this.asSimError(req, e));
    }
  }

  /** Handle one decoded request: the reply's data, or throws the SimError qubesd would answer with. */
  async call(req: WireRequest): Promise<string> {
    if (req.method !== "sim.Stats" && req.method !== "sim.Stats.Reset") this.counters.calls.set(req.method, (this.counters.calls.get(req.method) ?? 0) + 1);
    const h = this.handlers.lookup(req.method);
    // A caller that tries to write is a writer: counted whether or not the call succeeds.
    if (h && h.effect !== "read") this.counters.writes.set(req.method, (this.counters.writes.get(req.method) ?? 0) + 1);
    try {
      // qubesd's order: the request's ends, the method, then the method's signature, then its body.
      const dest = resolveEnds(this.state, req);
      if (req.method === RUN_METHOD) return await runCommand(this.runHost, req);
      if (!h) throw protocolError(`no such method: '${req.method}'`);
      checkSignature(h.sig, req, dest);
      // A mutation runs on a copy of the state: the body gets the copy's destination.
      return h.effect === "state" ? this.mutate(req, (r) => h.fn(r, this.state.vms[dest.name])) : h.fn(req, dest);
    } catch (e) {
      throw this.asSimError(req, e);
    }
  }

  /** Anything but a SimError is a bug of the sim: logged, and answered as a QubesException. */
  private asSimError(req: WireRequest, e: unknown): SimError {
    if (e instanceof SimError) return e;
    this.log(`internal error in ${req.method}+${req.arg} (${req.source} -> ${req.dest}): ${(e as Error)?.stack ?? String(e)}`);
    return new SimError("QubesException", `qubes-sim internal error in ${req.method}: ${(e as Error)?.message ?? String(e)}`);
  }

  /** Run a mutation on a copy of the state; on success save durably, then swap it in. */
  private mutate(req: WireRequest, fn: (req: WireRequest) => string): string {
    const before = this.state;
    this.state = structuredClone(before);
    try {
      const out = fn(req);
      this.dir.save(this.state);
      this.vmsChanged(before);
      return out;
    } catch (e) {
      this.state = before;
      throw this.asSimError(req, e);
    }
  }

  /** After a saved mutation: serve qrexec sockets of new VMs, drop removed ones, boot/halt. */
  private vmsChanged(before: State): void {
    for (const name of Object.keys(this.state.vms)) if (name !== "dom0" && !before.vms[name] && this.server) void this.broker.serve(name);
    for (const name of Object.keys(before.vms)) if (!this.state.vms[name]) void this.broker.drop(name);
    if (this.server) this.runtime.powerChanged();
  }
}
