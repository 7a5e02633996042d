/** The sim's own methods: sim.Stats, sim.Stats.Reset and sim.vm.Run (a command in a VM, as qvm-run). */
import { z } from "zod";
import type { WireRequest } from "../../admin/wire";
import { protocolError, SimError } from "../model";
import { runInVm, VmSandbox, VmUser } from "../sandbox";
import { DOM0_NO_INPUT, HandlerTable, read } from "./context";

/** What sim.Stats reports, since the last sim.Stats.Reset. */
export class SimCounters {
  /** Calls by method (sim.Stats and sim.Stats.Reset themselves are not counted). */
  readonly calls = new Map<string, number>();
  /** Calls that change Qubes' state (Admin writes and policy writes), by method, whether or not they succeed. */
  readonly writes = new Map<string, number>();
  /** VMs booted (Halted to running), whatever started them. */
  starts = 0;

  reset(): void {
    this.calls.clear();
    this.writes.clear();
    this.starts = 0;
  }
}

const sorted = (counts: Map<string, number>): Record<string, number> => {
  const out: Record<string, number> = {};
  for (const k of [...counts.keys()].sort()) out[k] = counts.get(k) ?? 0;
  return out;
};

export function simHandlers(counters: SimCounters): HandlerTable {
  return {
    "sim.Stats": read(DOM0_NO_INPUT, () => {
      const calls = sorted(counters.calls);
      const writes = sorted(counters.writes);
      return JSON.stringify({ calls, total: Object.values(calls).reduce((a, b) => a + b, 0), writes, starts: counters.starts });
    }),
    "sim.Stats.Reset": read(DOM0_NO_INPUT, () => {
      counters.reset();
      return "";
    }),
  };
}

export const RUN_METHOD = "sim.vm.Run";

const RunPayload = z.object({ user: z.string().regex(/^[a-z_][a-z0-9_-]*$/), command: z.string(), stdinBase64: z.string() });

/** What sim.vm.Run needs from the daemon (which has looked up the source and the destination). */
export interface RunHost {
  /** Start the request's destination (a saved state change); throws a SimError when it cannot (dom0 is no sandbox: ProtocolError). */
  start(req: WireRequest): void;
  sandbox(vm: string): VmSandbox;
  vmPid(vm: string): Promise<number>;
}

/** sim.vm.Run: start the VM (as qvm-run does), then run the command in its sandbox. */
export async function runCommand(host: RunHost, req: WireRequest): Promise<string> {
  const p = RunPayload.safeParse((() => {
    try {
      return JSON.parse(req.payload.toString("utf8"));
    } catch {
      return undefined;
    }
  })());
  if (!p.success) throw protocolError("sim.vm.Run: payload must be JSON {user, command, stdinBase64}");
  host.start(req);
  const user = p.data.user;
  if (user !== "root" && user !== "user") throw new SimError("QubesException", `sim.vm.Run: ${req.dest} has no user ${user} (root or user)`);
  const sb = host.sandbox(req.dest);
  const pid = await host.vmPid(req.dest);
  const res = await runInVm(sb, pid, user as VmUser, p.data.command, Buffer.from(p.data.stdinBase64, "base64"));
  return JSON.stringify({ exitCode: res.exitCode, stdout: res.stdout.toString("base64"), stderr: res.stderr.toString("base64") });
}
