/** Properties (per VM and global), features, tags and labels. */
import { escapeValue, WireRequest } from "../../admin/wire";
import * as m from "../model";
import { SimError } from "../model";
import type { Vm } from "../state";
import { asciiPayload, destVm, HandlerContext, HandlerTable, lines, noArg, noPayload, read, toDom0, wantArg, write } from "./context";

function featureNotFound(vm: Vm, feature: string): SimError {
  return new SimError("QubesFeatureNotFoundError", `Feature not set for domain ${vm.name}: ${feature}`);
}

function labelNotFound(label: string): SimError {
  return new SimError("QubesLabelNotFoundError", `Label does not exist: '${label}'`);
}

export function propertyHandlers(ctx: HandlerContext): HandlerTable {
  // Read ctx.state at each call: a mutation swaps in a copy.
  const vmOf = (r: WireRequest): Vm => destVm(ctx.state, r);
  return {
    "admin.vm.property.List": read((r) => lines(m.propNames(vmOf(r)))),
    "admin.vm.property.Get": read((r) => {
      wantArg(r);
      return m.formatProperty(vmOf(r), r.arg, ctx.state);
    }),
    "admin.vm.property.GetDefault": read((r) => {
      wantArg(r);
      const vm = vmOf(r);
      const d = m.propDef(vm, r.arg);
      const v = d.dflt?.(vm, ctx.state);
      return v === undefined ? "" : `type=${d.type} ${m.fmt(v)}`;
    }),
    "admin.vm.property.GetAll": read((r) => {
      noArg(r);
      const vm = vmOf(r);
      return m
        .propNames(vm)
        .map((p) => `${p} ${escapeValue(m.formatProperty(vm, p, ctx.state))}\n`)
        .join("");
    }),
    "admin.vm.property.Set": write((r) => {
      wantArg(r);
      m.setProperty(ctx.state, vmOf(r), r.arg, r.payload.toString("utf8"));
      return "";
    }),
    "admin.vm.property.Reset": write((r) => {
      wantArg(r);
      noPayload(r);
      m.resetProperty(ctx.state, vmOf(r), r.arg);
      return "";
    }),
    "admin.property.List": read((r) => {
      toDom0(ctx.state, r);
      return lines(Object.keys(m.GLOBAL_PROPS).sort());
    }),
    "admin.property.Get": read((r) => {
      toDom0(ctx.state, r);
      return m.formatGlobal(ctx.state, r.arg);
    }),
    "admin.property.GetAll": read((r) => {
      toDom0(ctx.state, r);
      return Object.keys(m.GLOBAL_PROPS)
        .sort()
        .map((p) => `${p} ${escapeValue(m.formatGlobal(ctx.state, p))}\n`)
        .join("");
    }),
    "admin.property.Set": write((r) => {
      toDom0(ctx.state, r);
      m.setGlobal(ctx.state, r.arg, r.payload.toString("utf8"));
      return "";
    }),
    "admin.property.Reset": write((r) => {
      toDom0(ctx.state, r);
      m.globalDef(r.arg);
      delete ctx.state.global[r.arg];
      return "";
    }),
    "admin.vm.feature.List": read((r) => lines(Object.keys(vmOf(r).features).sort())),
    "admin.vm.feature.Get": read((r) => {
      wantArg(r);
      const vm = vmOf(r);
      if (!Object.prototype.hasOwnProperty.call(vm.features, r.arg)) throw featureNotFound(vm, r.arg);
      return vm.features[r.arg];
    }),
    "admin.vm.feature.Set": write((r) => {
      wantArg(r);
      vmOf(r).features[r.arg] = asciiPayload(r);
      return "";
    }),
    "admin.vm.feature.Remove": write((r) => {
      wantArg(r);
      const vm = vmOf(r);
      if (!Object.prototype.hasOwnProperty.call(vm.features, r.arg)) throw featureNotFound(vm, r.arg);
      delete vm.features[r.arg];
      return "";
    }),
    "admin.vm.tag.List": read((r) => lines([...vmOf(r).tags].sort())),
    "admin.vm.tag.Get": read((r) => {
      wantArg(r);
      m.validateTag(r.arg);
      return vmOf(r).tags.includes(r.arg) ? "1" : "0";
    }),
    "admin.vm.tag.Set": write((r) => {
      wantArg(r);
      noPayload(r);
      m.validateTag(r.arg);
      const vm = vmOf(r);
      if (!vm.tags.includes(r.arg)) vm.tags.push(r.arg);
      return "";
    }),
    "admin.vm.tag.Remove": write((r) => {
      wantArg(r);
      m.validateTag(r.arg);
      const vm = vmOf(r);
      if (!vm.tags.includes(r.arg)) throw new SimError("QubesTagNotFoundError", `Tag not set for domain ${vm.name}: ${r.arg}`);
      vm.tags = vm.tags.filter((t) => t !== r.arg);
      return "";
    }),
    "admin.label.List": read(() => lines(m.LABELS.map((l) => l.name))),
    "admin.label.Get": read((r) => {
      const l = m.LABELS.find((x) => x.name === r.arg);
      if (!l) throw labelNotFound(r.arg);
      return l.color;
    }),
    "admin.label.Index": read((r) => {
      const i = m.LABELS.findIndex((x) => x.name === r.arg);
      if (i < 0) throw labelNotFound(r.arg);
      return String(i + 1);
    }),
  };
}
