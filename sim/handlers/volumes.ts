/** Volumes: admin.vm.volume.List, Info, ListSnapshots, Resize. */
import * as m from "../model";
import { destQube, destVm, HandlerContext, HandlerTable, lines, noPayload, read, wantArg, write } from "./context";

export function volumeHandlers(ctx: HandlerContext): HandlerTable {
  return {
    "admin.vm.volume.List": read((r) => lines(Object.keys(destVm(ctx.state, r).volumes).sort())),
    "admin.vm.volume.Info": read((r) => {
      wantArg(r);
      return m.volumeInfo(destVm(ctx.state, r), r.arg, ctx.state);
    }),
    "admin.vm.volume.ListSnapshots": read((r) => {
      wantArg(r);
      noPayload(r);
      m.findVolume(destVm(ctx.state, r), r.arg);
      // The sim keeps no revisions of a volume.
      return "";
    }),
    "admin.vm.volume.Resize": write((r) => {
      wantArg(r);
      m.resizeVolume(destQube(ctx.state, r), r.arg, r.payload.toString("latin1"), ctx.state);
      return "";
    }),
  };
}
