/**
 * Transports: how a request reaches qubesd (or qubes-sim), how the qrexec policy admin services
 * are reached, and how a shell script runs inside a VM.
 *
 * | transport | Admin API | policy.* | run in a VM |
 * |---|---|---|---|
 * | `SocketTransport` (dom0) | `/var/run/qubesd.sock` | `/usr/bin/qubes-policy-admin` run as the qrexec service would (qubesd does not serve policy.*) | `qvm-run --pass-io --no-gui --user U VM CMD` |
 * | `QrexecClientVmTransport` (management qube) | `qrexec-client-vm <dest> <method>+<arg>` (as qubesadmin's QubesRemote) | `qrexec-client-vm dom0 policy.X+<arg>` | `qrexec-client-vm <vm> qubes.VMShell` |
 * | `SimTransport` (qubes-sim) | the sim's socket | the sim's socket (`policy.X`, dest dom0) | the sim's socket (`sim.vm.Run`) |
 */
import * as net from "net";
import execa from "execa";
import { z } from "zod";
import type { RunResult } from "./api";
import { QubesError, QubesTransportError } from "./errors";
import { decodeReply, encodeRequest } from "./wire";

/** What AdminClient needs from a transport. */
export interface Transport {
  /** One Admin API call; resolves with the data of a `0` reply, rejects with QubesError. */
  call(method: string, dest: string, arg?: string, payload?: Buffer | string): Promise<Buffer>;
  /** A qubes-core-qrexec policy admin service (`policy.List`, `policy.Get`, ...) on dom0. */
  policyCall(method: string, arg: string, payload: Buffer | string): Promise<Buffer>;
  /** Run `command` with `/bin/sh -c` in `vm` as `user`, feeding `input` on stdin. */
  run(vm: string, user: string, command: string, input: Buffer): Promise<RunResult>;
}

const toBuf = (p: Buffer | string | undefined): Buffer => (p === undefined ? Buffer.alloc(0) : Buffer.isBuffer(p) ? p : Buffer.from(p, "utf8"));

/** Quote a string for POSIX sh. */
export function shQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** Send one raw request on a Unix socket and return all the bytes of the reply. */
export function socketRoundTrip(socket: string, request: Buffer, timeoutMs = 0): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const c = net.createConnection(socket);
    const chunks: Buffer[] = [];
    let timer: NodeJS.Timeout | undefined;
    if (timeoutMs > 0) timer = setTimeout(() => c.destroy(new Error(`no reply in ${timeoutMs} ms`)), timeoutMs);
    c.on("connect", () => c.end(request));
    c.on("data", (d: Buffer) => chunks.push(d));
    c.on("error", (e) => {
      if (timer) clearTimeout(timer);
      reject(e);
    });
    c.on("close", (hadError) => {
      if (timer) clearTimeout(timer);
      if (!hadError) resolve(Buffer.concat(chunks));
    });
  });
}

/** Turn a raw qubesd reply into data or a QubesError. */
export function replyData(raw: Buffer, call: { method: string; dest: string; arg?: string }): Buffer {
  let r;
  try {
    r = decodeReply(raw);
  } catch (e) {
    throw new QubesTransportError((e as Error).message, call, { cause: e });
  }
  if (r.kind === "ok") return r.data;
  if (r.kind === "error") throw new QubesError(r.type || "QubesException", r.message, call);
  throw new QubesTransportError("unexpected event reply", call);
}

/** The qubesd Unix socket (dom0). */
export class SocketTransport implements Transport {
  constructor(readonly socket: string) {}

  async call(method: string, dest: string, arg = "", payload?: Buffer | string): Promise<Buffer> {
    const c = { method, dest, arg };
    let raw: Buffer;
    try {
      raw = await socketRoundTrip(this.socket, encodeRequest({ method, arg, dest, payload: toBuf(payload) }));
    } catch (e) {
      throw new QubesTransportError(`failed to connect to qubesd at ${this.socket}: ${(e as Error).message}`, c, { cause: e });
    }
    return replyData(raw, c);
  }

  /**
   * In dom0 the policy services are not served by qubesd: run the service program the way
   * qrexec would (`/etc/qubes-rpc/policy.*` are symlinks to it).
   */
  async policyCall(method: string, arg: string, payload: Buffer | string): Promise<Buffer> {
    const full = arg ? `${method}+${arg}` : method;
    const r = await execa("/usr/bin/qubes-policy-admin", [], {
      input: toBuf(payload),
      encoding: null,
      reject: false,
      env: { QREXEC_SERVICE_FULL_NAME: full, QREXEC_REMOTE_DOMAIN: "dom0" },
    });
    return policyResult(r.exitCode, r.stdout, r.stderr, { method, dest: "dom0", arg });
  }

  async run(vm: string, user: string, command: string, input: Buffer): Promise<RunResult> {
    const r = await execa("qvm-run", ["--pass-io", "--no-gui", "--user", user, vm, command], { input, encoding: null, reject: false });
    return { exitCode: r.exitCode, stdout: r.stdout, stderr: r.stderr };
  }
}

/** Map the result of a policy admin service (stdout, or exit 1 with `<Exception> <message>` on stderr). */
function policyResult(exitCode: number, stdout: Buffer, stderr: Buffer, call: { method: string; dest: string; arg?: string }): Buffer {
  if (exitCode === 0) return stdout;
  const text = stderr.toString("utf8").trim();
  const m = /^(PolicyAdmin\w*Exception) ([\s\S]*)$/.exec(text);
  if (m) throw new QubesError(m[1], m[2], call);
  throw new QubesError("PolicyAdminException", text || `${call.method} failed with exit code ${exitCode}`, call);
}

/** From a management qube: every call is a qrexec service call (qubesadmin's QubesRemote). */
export class QrexecClientVmTransport implements Transport {
  constructor(readonly program = "qrexec-client-vm") {}

  async call(method: string, dest: string, arg = "", payload?: Buffer | string): Promise<Buffer> {
    const c = { method, dest, arg };
    const r = await execa(this.program, [dest, arg ? `${method}+${arg}` : method], { input: toBuf(payload), encoding: null, reject: false });
    if (r.exitCode !== 0) throw new QubesTransportError(`Service call error: ${r.stderr.toString("utf8")}`, c);
    return replyData(r.stdout, c);
  }

  async policyCall(method: string, arg: string, payload: Buffer | string): Promise<Buffer> {
    const r = await execa(this.program, ["dom0", arg ? `${method}+${arg}` : method], { input: toBuf(payload), encoding: null, reject: false });
    return policyResult(r.exitCode, r.stdout, r.stderr, { method, dest: "dom0", arg });
  }

  /** qubes.VMShell reads commands from stdin: the input travels inside the script as base64. */
  async run(vm: string, user: string, command: string, input: Buffer): Promise<RunResult> {
    const script = vmShellScript(user, command, input);
    const r = await execa(this.program, [vm, "qubes.VMShell"], { input: script, encoding: null, reject: false });
    return { exitCode: r.exitCode, stdout: r.stdout, stderr: r.stderr };
  }
}

/** The stdin of qubes.VMShell that runs `command` as `user` with `input` on its stdin. */
export function vmShellScript(user: string, command: string, input: Buffer): string {
  const inner = user === "root" ? `sh -c ${shQuote(command)}` : `runuser -u ${shQuote(user)} -- sh -c ${shQuote(command)}`;
  const b64 = input.toString("base64").replace(/.{1,76}/g, "$&\n");
  return `base64 -d <<'__QBI_INPUT__' | ${inner}\n${b64}__QBI_INPUT__\nexit $?\n`;
}

const RunReply = z.object({ exitCode: z.number().int(), stdout: z.string(), stderr: z.string() });

/** qubes-sim: the qubesd protocol on its socket, plus policy.* and the sim-only `sim.vm.Run`. */
export class SimTransport extends SocketTransport {
  override async policyCall(method: string, arg: string, payload: Buffer | string): Promise<Buffer> {
    return this.call(method, "dom0", arg, payload);
  }

  override async run(vm: string, user: string, command: string, input: Buffer): Promise<RunResult> {
    const data = await this.call("sim.vm.Run", vm, "", JSON.stringify({ user, command, stdinBase64: input.toString("base64") }));
    const parsed = RunReply.safeParse(JSON.parse(data.toString("utf8")));
    if (!parsed.success) throw new QubesTransportError(`bad sim.vm.Run reply: ${parsed.error.message}`, { method: "sim.vm.Run", dest: vm });
    return { exitCode: parsed.data.exitCode, stdout: Buffer.from(parsed.data.stdout, "base64"), stderr: Buffer.from(parsed.data.stderr, "base64") };
  }
}
