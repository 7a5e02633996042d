/**
 * qubes-sim's qrexec broker: `qrexec-client-vm` inside a VM's sandbox connects to
 * `/run/qubes-sim/qrexec.sock`, which is `<state>/run/<vm>/qrexec.sock` on the host, one socket per
 * VM served by the daemon. The caller's identity is the socket the connection arrived on, never
 * anything the client says.
 *
 * Protocol (frames: 1 type byte, uint32 big-endian length, data):
 *   client → broker  `C` JSON {"target": "<requested target>", "service": "<service>[+arg]"} (first)
 *                    `I` stdin data (any number)   `E` stdin EOF (empty)
 *   broker → client  `O` stdout data   `R` stderr data   `X` int32 exit status (last; then close)
 *
 * The call is decided with the dom0 policy directory (qrexec/ loadPolicySet + evaluate, redirects
 * included), journaled durably, then: denied (or `ask`, there is no GUI) → exit 126 with
 * "Request refused" on stderr; resolved to dom0 → served by the daemon's own handlers (admin.*,
 * policy.*, with the caller as source and the requested target as destination); resolved to a
 * VM → that VM is started if halted and its `/usr/local/etc/qubes-rpc/<service>+<arg>` (or
 * `<service>`) runs in its sandbox with the qrexec environment, stdio streamed both ways.
 */
import { ChildProcess } from "child_process";
import * as fs from "fs";
import * as net from "net";
import * as path from "path";
import type { WireRequest } from "../admin/wire";
import { evaluate, loadPolicySet, POLICY_DIR } from "../qrexec";
import type { SystemInfo, Verdict } from "../qrexec";
import { SimError } from "./model";
import { spawnInVm, VmSandbox } from "./sandbox";

export const QREXEC_SOCKET = "qrexec.sock";
/** Exit status of a refused call (as qrexec-client-vm). */
export const REFUSED = 126;

/** One line of `<state>/qrexec-journal.jsonl`. */
export interface JournalEntry {
  time: string;
  source: string;
  service: string;
  requestedTarget: string;
  resolvedTarget: string | null;
  verdict: "allow" | "deny" | "error";
  rule: string | null;
  reason: string;
}

/** What the broker needs from the daemon. */
export interface BrokerHost {
  policyDir: string;
  journalFile: string;
  systemInfo(): SystemInfo;
  /** Serve a dom0 call (the daemon's dispatch): returns the wire reply. */
  dispatch(req: WireRequest): Promise<Buffer>;
  /** Serve a dom0 call: the reply's data, or throws the SimError of the exception reply. */
  call(req: WireRequest): Promise<string>;
  /** Start the VM if halted (with its boot, rc.local); throws with a message when it cannot. */
  ensureRunning(vm: string): void;
  /** How a VM is sandboxed. */
  sandbox(vm: string): VmSandbox;
  /** Host pid of the running VM's boot sandbox (its namespaces are the VM). */
  vmPid(vm: string): Promise<number>;
  log(msg: string): void;
}

export function frame(type: string, data: Buffer = Buffer.alloc(0)): Buffer {
  const h = Buffer.alloc(5);
  h.write(type, 0, "latin1");
  h.writeUInt32BE(data.length, 1);
  return Buffer.concat([h, data]);
}

/** Incremental frame decoder. */
export class FrameReader {
  private buf: Buffer = Buffer.alloc(0);
  push(d: Buffer): { type: string; data: Buffer }[] {
    this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d;
    const out: { type: string; data: Buffer }[] = [];
    while (this.buf.length >= 5) {
      const len = this.buf.readUInt32BE(1);
      if (this.buf.length < 5 + len) break;
      out.push({ type: String.fromCharCode(this.buf[0]), data: this.buf.subarray(5, 5 + len) });
      this.buf = this.buf.subarray(5 + len);
    }
    return out;
  }
}

const SERVICE_RE = /^[A-Za-z0-9_.-]{1,64}(\+[A-Za-z0-9_.+-]{0,64})?$/;
const TARGET_RE = /^[A-Za-z0-9_:@.-]{1,64}$/;

/** Append one JSON line and fsync it before the call goes on. */
export function appendDurably(file: string, line: string): void {
  const fd = fs.openSync(file, "a", 0o644);
  try {
    fs.writeSync(fd, line);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

export function readJournal(file: string): JournalEntry[] {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch {
    return [];
  }
  return text
    .split("\n")
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as JournalEntry);
}

export function formatJournal(e: JournalEntry): string {
  const to = e.resolvedTarget && e.resolvedTarget !== e.requestedTarget ? `${e.requestedTarget}→${e.resolvedTarget}` : e.requestedTarget;
  return `${e.time}  ${e.source} → ${to}  ${e.service}  ${e.verdict.toUpperCase()}  ${e.rule ?? "-"}  ${e.reason}`;
}

export class QrexecBroker {
  private readonly servers = new Map<string, net.Server>();
  private readonly children = new Set<ChildProcess>();

  constructor(
    private readonly host: BrokerHost,
    private readonly runDir: (vm: string) => string,
  ) {}

  /** Serve the VM's qrexec socket (idempotent). */
  async serve(vm: string): Promise<void> {
    if (this.servers.has(vm)) return;
    const dir = this.runDir(vm);
    fs.mkdirSync(dir, { recursive: true });
    const sock = path.join(dir, QREXEC_SOCKET);
    if (Buffer.byteLength(sock) > 107) {
      this.host.log(`qrexec socket path too long for ${vm}: ${sock} (no qrexec for this VM)`);
      return;
    }
    fs.rmSync(sock, { force: true });
    const server = net.createServer({ allowHalfOpen: true }, (c) => this.connection(vm, c));
    this.servers.set(vm, server);
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(sock, () => resolve());
    });
    fs.chmodSync(sock, 0o666);
  }

  async drop(vm: string): Promise<void> {
    const s = this.servers.get(vm);
    if (!s) return;
    this.servers.delete(vm);
    await new Promise<void>((r) => s.close(() => r()));
    fs.rmSync(path.join(this.runDir(vm), QREXEC_SOCKET), { force: true });
  }

  async close(): Promise<void> {
    for (const c of this.children) c.kill("SIGKILL");
    await Promise.all([...this.servers.keys()].map((v) => this.drop(v)));
  }

  private connection(source: string, c: net.Socket): void {
    const reader = new FrameReader();
    let call: Call | undefined;
    const pending: { type: string; data: Buffer }[] = [];
    c.on("error", () => undefined);
    c.on("data", (d: Buffer) => {
      for (const f of reader.push(d)) {
        if (!call) {
          if (f.type !== "C") return this.fail(c, "protocol error: expected a call frame");
          call = new Call(c);
          void this.start(source, f.data, call, pending);
        } else if (call.input) call.input(f);
        else pending.push(f);
      }
    });
    c.on("end", () => {
      if (call?.input) call.input({ type: "E", data: Buffer.alloc(0) });
      else pending.push({ type: "E", data: Buffer.alloc(0) });
    });
  }

  private fail(c: net.Socket, msg: string, code = REFUSED): void {
    if (c.destroyed) return;
    c.write(frame("R", Buffer.from(`${msg}\n`)));
    const x = Buffer.alloc(4);
    x.writeInt32BE(code);
    c.end(frame("X", x));
  }

  /** Decide a call with the current policy directory. */
  decide(source: string, service: string, argument: string, target: string): { verdict: Verdict; system: SystemInfo } {
    const system = this.host.systemInfo();
    const files = fs
      .readdirSync(this.host.policyDir)
      .map((n) => ({ name: `${POLICY_DIR}/${n}`, text: fs.readFileSync(path.join(this.host.policyDir, n), "utf8") }));
    const verdict = evaluate(loadPolicySet(files), { service, argument, source, target }, system);
    return { verdict, system };
  }

  private journal(e: Omit<JournalEntry, "time">): void {
    appendDurably(this.host.journalFile, JSON.stringify({ time: new Date().toISOString(), ...e }) + "\n");
  }

  private async start(source: string, header: Buffer, call: Call, pending: { type: string; data: Buffer }[]): Promise<void> {
    let h: { target?: unknown; service?: unknown };
    try {
      h = JSON.parse(header.toString("utf8"));
    } catch {
      return this.fail(call.c, "qrexec-client-vm: bad request");
    }
    const target = typeof h.target === "string" ? h.target : "";
    const full = typeof h.service === "string" ? h.service : "";
    const base = { source, service: full, requestedTarget: target };
    if (!SERVICE_RE.test(full) || !TARGET_RE.test(target)) {
      this.journal({ ...base, resolvedTarget: null, verdict: "deny", rule: null, reason: "invalid service or target name" });
      return this.fail(call.c, "Request refused");
    }
    const plus = full.indexOf("+");
    const service = plus < 0 ? full : full.slice(0, plus);
    const arg = plus < 0 ? "" : full.slice(plus + 1);
    let verdict: Verdict;
    try {
      verdict = this.decide(source, service, plus < 0 ? "" : `+${arg}`, target).verdict;
    } catch (e) {
      this.journal({ ...base, resolvedTarget: null, verdict: "error", rule: null, reason: `policy evaluation failed: ${(e as Error).message}` });
      return this.fail(call.c, "Request refused");
    }
    const rule = verdict.rule ? `${verdict.rule.file}:${verdict.rule.line}` : null;
    if (verdict.action !== "allow" || !verdict.target) {
      const reason = verdict.action === "ask" ? `ask (no GUI in qubes-sim: refused): ${verdict.reason}` : verdict.reason;
      this.journal({ ...base, resolvedTarget: null, verdict: "deny", rule, reason });
      return this.fail(call.c, "Request refused");
    }
    const resolved = verdict.target === "@adminvm" ? "dom0" : verdict.target;
    if (resolved.startsWith("@dispvm")) {
      this.journal({ ...base, resolvedTarget: resolved, verdict: "error", rule, reason: "disposables are not modelled by qubes-sim" });
      return this.fail(call.c, "qrexec: disposables are not modelled by qubes-sim");
    }
    this.journal({ ...base, resolvedTarget: resolved, verdict: "allow", rule, reason: verdict.reason });
    if (resolved === "dom0") return this.toDom0(source, service, arg, target, call, pending);
    return this.toVm(source, service, arg, full, target, resolved, verdict.user ?? "user", call, pending);
  }

  /** admin.* and policy.* resolved to dom0: the daemon's handlers, caller as source. */
  private async toDom0(source: string, service: string, arg: string, target: string, call: Call, pending: { type: string; data: Buffer }[]): Promise<void> {
    const chunks: Buffer[] = [];
    await new Promise<void>((resolve) => {
      call.input = (f) => {
        if (f.type === "I") chunks.push(f.data);
        else if (f.type === "E") resolve();
      };
      for (const f of pending.splice(0)) call.input(f);
    });
    if (!service.startsWith("admin.") && !service.startsWith("policy.") && !service.startsWith("internal.")) {
      return this.fail(call.c, `qrexec: service ${service} does not exist in dom0`, 127);
    }
    const dest = target === "@adminvm" || target === "dom0" || target === "" || target === "@default" ? "dom0" : target;
    const req: WireRequest = { method: service, arg, source, dest, payload: Buffer.concat(chunks) };
    if (service.startsWith("policy.")) {
      // qubes-core-qrexec's policy services answer with data, or an exception on stderr and exit 1.
      let data: string;
      try {
        data = await this.host.call(req);
      } catch (e) {
        call.out("R", Buffer.from(e instanceof SimError ? `${e.type} ${e.message}\n` : "PolicyAdminException unexpected reply\n"));
        return call.exit(1);
      }
      call.out("O", Buffer.from(data, "utf8"));
      return call.exit(0);
    }
    // admin.* and internal.*: the caller reads the qubesd reply itself, as qubesd-query prints it.
    call.out("O", await this.host.dispatch(req));
    call.exit(0);
  }

  private async toVm(
    source: string, service: string, arg: string, full: string, target: string, vm: string, user: string, call: Call,
    pending: { type: string; data: Buffer }[],
  ): Promise<void> {
    let sb: VmSandbox;
    let pid: number;
    if (user !== "root" && user !== "user") return this.fail(call.c, `qrexec: ${vm} has no user ${user}`, REFUSED);
    try {
      this.host.ensureRunning(vm);
      sb = this.host.sandbox(vm);
      pid = await this.host.vmPid(vm);
    } catch (e) {
      return this.fail(call.c, `qrexec: cannot start ${vm}: ${(e as Error).message}`, REFUSED);
    }
    const rpc = path.join(sb.vmDir, "rw", "usrlocal", "etc", "qubes-rpc");
    const name = [`${service}+${arg}`, service].find((n) => fs.existsSync(path.join(rpc, n)));
    if (!name) return this.fail(call.c, `qrexec: service ${full} does not exist in ${vm}`, 127);
    const keyword = target.startsWith("@") || target === "dom0";
    const env: Record<string, string> = {
      QREXEC_REMOTE_DOMAIN: source,
      QREXEC_SERVICE_FULL_NAME: full,
      QREXEC_REQUESTED_TARGET: target === "dom0" ? "@adminvm" : target,
      QREXEC_REQUESTED_TARGET_TYPE: keyword ? "keyword" : "name",
    };
    if (keyword) env.QREXEC_REQUESTED_TARGET_KEYWORD = (target === "dom0" ? "@adminvm" : target).slice(1);
    if (full.includes("+")) env.QREXEC_SERVICE_ARGUMENT = arg;
    const child = spawnInVm(sb, pid, user, [`/usr/local/etc/qubes-rpc/${name}`], env);
    this.children.add(child);
    child.stdin?.on("error", () => undefined);
    child.stdout?.on("data", (d: Buffer) => call.out("O", d));
    child.stderr?.on("data", (d: Buffer) => call.out("R", d));
    call.input = (f) => {
      if (f.type === "I") child.stdin?.write(f.data);
      else if (f.type === "E") child.stdin?.end();
    };
    for (const f of pending.splice(0)) call.input(f);
    call.c.on("close", () => child.stdin?.end());
    child.on("close", (code, signal) => {
      this.children.delete(child);
      call.exit(code ?? (signal ? 128 + (signal === "SIGKILL" ? 9 : 15) : 1));
    });
  }
}

class Call {
  input?: (f: { type: string; data: Buffer }) => void;
  constructor(readonly c: net.Socket) {}
  out(type: "O" | "R", d: Buffer): void {
    if (!this.c.destroyed && this.c.writable) this.c.write(frame(type, d));
  }
  exit(code: number): void {
    if (this.c.destroyed || !this.c.writable) return;
    const x = Buffer.alloc(4);
    x.writeInt32BE(code);
    this.c.end(frame("X", x));
  }
}
