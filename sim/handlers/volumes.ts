/**
 * Volumes: admin.vm.volume.List, Info, ListSnapshots, Resize. dom0 is a valid destination and has
 * no volumes (so an argument naming one is refused as for any qube).
 */
import * as m from "../model";
import { ARG_ONLY, HandlerContext, HandlerTable, lines, NO_INPUT, read, sig, write } from "./context";

export function volumeHandlers(ctx: HandlerContext): HandlerTable {
  return {
    "admin.vm.volume.List": read(NO_INPUT, (_r, vm) => lines(Object.keys(vm.volumes).sort())),
    "admin.vm.volume.Info": read(ARG_ONLY, (r, vm) => m.volumeInfo(vm, r.arg, ctx.state)),
    "admin.vm.volume.ListSnapshots": read(ARG_ONLY, (r, vm) => {
      m.findVolume(vm, r.arg);
      // The sim keeps no revisions of a volume.
      return "";
    }),
    // The size is read with surrounding ASCII whitespace stripped, as qubesd does.
    "admin.vm.volume.Resize": write(sig(true, true, null), (r, vm) => {
      m.resizeVolume(vm, r.arg, r.payload.toString("latin1").replace(/^[ \t\n\r\v\f]+|[ \t\n\r\v\f]+$/g, ""), ctx.state);
      return "";
    }),
  };
}
