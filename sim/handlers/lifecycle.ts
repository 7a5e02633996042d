/** VM lifecycle: admin.vm.List, Create.<class>, Remove, Start, Shutdown, Kill, CurrentState. */
import * as fs from "fs";
import type { WireRequest } from "../../admin/wire";
import * as m from "../model";
import { asciiPayload, destQube, destVm, HandlerContext, HandlerTable, noArg, noPayload, read, toDom0, write } from "./context";

export const CREATE_PREFIX = "admin.vm.Create.";

/** admin.vm.Create.<class>: the class is in the method name, so it is matched by prefix. */
export function createVm(ctx: HandlerContext, req: WireRequest): string {
  toDom0(ctx.state, req);
  const vm = m.createVm(ctx.state, req.method.slice(CREATE_PREFIX.length), req.arg, asciiPayload(req), req.source);
  ctx.dir.ensureVmDirs(vm.name);
  return "";
}

/** Start as admin.vm.Start does, without its argument checks (qrexec and sim.vm.Run start their target too). */
export function startVm(ctx: HandlerContext, req: WireRequest): string {
  m.startVm(ctx.state, destQube(ctx.state, req));
  return "";
}

export function lifecycleHandlers(ctx: HandlerContext): HandlerTable {
  return {
    "admin.vm.List": read((r) => {
      noArg(r);
      noPayload(r);
      const d = destVm(ctx.state, r);
      const vms = d.klass === "AdminVM" ? Object.values(ctx.state.vms) : [d];
      return vms
        .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
        .map((v) => `${v.name} class=${v.klass} state=${v.power}\n`)
        .join("");
    }),
    "admin.vm.Remove": write((r) => {
      noArg(r);
      noPayload(r);
      const vm = destVm(ctx.state, r);
      m.removeVm(ctx.state, vm);
      fs.rmSync(ctx.dir.vmDir(vm.name), { recursive: true, force: true });
      fs.rmSync(ctx.dir.runDir(vm.name), { recursive: true, force: true });
      return "";
    }),
    "admin.vm.Start": write((r) => {
      noArg(r);
      return startVm(ctx, r);
    }),
    "admin.vm.Shutdown": write((r) => {
      m.shutdownVm(ctx.state, destQube(ctx.state, r));
      return "";
    }),
    "admin.vm.Kill": write((r) => {
      noArg(r);
      m.killVm(destQube(ctx.state, r));
      return "";
    }),
    "admin.vm.CurrentState": read((r) => {
      noArg(r);
      const vm = destVm(ctx.state, r);
      const running = vm.power !== "Halted";
      const mem = running ? Number(m.get(vm, "memory", ctx.state) ?? 4096) * 1024 : 0;
      const max = running ? Number(m.get(vm, "maxmem", ctx.state) ?? 4096) * 1024 : 0;
      return `mem=${mem} mem_static_max=${max} cputime=0 power_state=${vm.power}`;
    }),
  };
}
