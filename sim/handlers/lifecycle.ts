/** VM lifecycle: admin.vm.List, Create.<class>, Remove, Start, Shutdown, Kill, CurrentState. */
import * as fs from "fs";
import type { WireRequest } from "../../admin/wire";
import * as m from "../model";
import { protocolError, SimError } from "../model";
import type { Vm } from "../state";
import { HandlerContext, HandlerTable, NO_INPUT, read, sig, write } from "./context";

export const CREATE_PREFIX = "admin.vm.Create.";
/** The classes admin.vm.Create.<class> exists for (any other is an unknown method, as in qubesd). */
export const CREATE_CLASSES: readonly string[] = ["AppVM", "TemplateVM", "StandaloneVM", "DispVM"];
/** admin.vm.Create.<class>: argument and payload checked by the body, destination dom0. */
export const CREATE_SIGNATURE = sig(null, null, true);

/** qubesd decodes the payload as strict ASCII before it reads the options. */
function asciiParameters(req: WireRequest): string {
  if (req.payload.some((b) => b > 0x7f)) throw protocolError("Parameters contains non-ASCII characters");
  return req.payload.toString("latin1");
}

/** admin.vm.Create.<class>: the class is in the method name, so it is matched by prefix. */
export function createVm(ctx: HandlerContext, req: WireRequest): string {
  const vm = m.createVm(ctx.state, req.method.slice(CREATE_PREFIX.length), req.arg, asciiParameters(req), req.source);
  ctx.dir.ensureVmDirs(vm.name);
  return "";
}

/** admin.vm.Start's body for a qube (qrexec and sim.vm.Run start their target with it too). */
export function startVm(ctx: HandlerContext, vm: Vm): string {
  m.startVm(ctx.state, vm);
  return "";
}

/** dom0's start, shutdown and kill always fail (qubes/vm/adminvm.py). */
function notForDom0(vm: Vm, what: "start" | "shutdown" | "kill"): void {
  if (vm.klass !== "AdminVM") return;
  if (what === "start") throw new SimError("QubesVMNotHaltedError", "Cannot start Dom0 fake domain!");
  throw new SimError("QubesVMError", `Cannot ${what} Dom0 fake domain!`);
}

const SHUTDOWN_ARGS = ["force", "wait"];

export function lifecycleHandlers(ctx: HandlerContext): HandlerTable {
  return {
    "admin.vm.List": read(NO_INPUT, (_r, dest) => {
      const vms = dest.klass === "AdminVM" ? Object.values(ctx.state.vms) : [dest];
      return vms
        .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
        .map((v) => `${v.name} class=${v.klass} state=${v.power}\n`)
        .join("");
    }),
    "admin.vm.Remove": write(NO_INPUT, (_r, dest) => {
      m.removeVm(ctx.state, dest);
      fs.rmSync(ctx.dir.vmDir(dest.name), { recursive: true, force: true });
      fs.rmSync(ctx.dir.runDir(dest.name), { recursive: true, force: true });
      return "";
    }),
    "admin.vm.Start": write(NO_INPUT, (_r, dest) => {
      notForDom0(dest, "start");
      return startVm(ctx, dest);
    }),
    // The argument is optional: `force`, `wait` or both joined by `+`.
    "admin.vm.Shutdown": write(sig(null, false, null), (r, dest) => {
      const args = r.arg ? r.arg.split("+") : [];
      if (!args.every((a) => SHUTDOWN_ARGS.includes(a))) throw protocolError(`Argument must match: ${SHUTDOWN_ARGS.join(", ")}`);
      notForDom0(dest, "shutdown");
      m.shutdownVm(ctx.state, dest, args.includes("force"));
      return "";
    }),
    "admin.vm.Kill": write(NO_INPUT, (_r, dest) => {
      notForDom0(dest, "kill");
      m.killVm(dest);
      return "";
    }),
    "admin.vm.CurrentState": read(NO_INPUT, (_r, vm) => {
      const running = vm.power !== "Halted";
      const mem = running ? Number(m.get(vm, "memory", ctx.state) ?? 4096) * 1024 : 0;
      const max = running ? Number(m.get(vm, "maxmem", ctx.state) ?? 4096) * 1024 : 0;
      return `mem=${mem} mem_static_max=${max} cputime=0 power_state=${vm.power}`;
    }),
  };
}
