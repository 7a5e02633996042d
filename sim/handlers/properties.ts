/** Properties (per VM and global), features, tags and labels. */
import { escapeValue } from "../../admin/wire";
import * as m from "../model";
import { protocolError, SimError } from "../model";
import type { Vm } from "../state";
import { ARG_ONLY, DOM0_ARG_ONLY, DOM0_NO_INPUT, HandlerContext, HandlerTable, lines, NO_INPUT, read, sig, write } from "./context";

function featureNotFound(vm: Vm, feature: string): SimError {
  return new SimError("QubesFeatureNotFoundError", `Feature not set for domain ${vm.name}: ${feature}`);
}

/** admin.vm.feature.Set's body checks, in qubesd's order: the value's encoding, the name, the value's characters. */
function featureValue(name: string, payload: Buffer): string {
  if (payload.some((b) => b > 0x7f)) throw protocolError("Feature value contains non-ASCII characters");
  if (!/^[A-Za-z0-9_.-]+$/.test(name)) throw protocolError("feature name contains illegal characters");
  const value = payload.toString("latin1");
  if (!/^[\x20-\x7e]*$/.test(value)) throw protocolError(`${name} value contains illegal characters`);
  return value;
}

/** property.Set and feature.Set: an argument, and the payload as the body's to check (empty is a value). */
const SET = sig(true, null, null);

export function propertyHandlers(ctx: HandlerContext): HandlerTable {
  // Read ctx.state at each call: a mutation swaps in a copy.
  return {
    "admin.vm.property.List": read(NO_INPUT, (_r, vm) => lines(m.propNames(vm))),
    "admin.vm.property.Get": read(ARG_ONLY, (r, vm) => m.formatProperty(vm, r.arg, ctx.state)),
    "admin.vm.property.GetDefault": read(ARG_ONLY, (r, vm) => {
      const d = m.propDef(vm, r.arg);
      const v = d.dflt?.(vm, ctx.state);
      return v === undefined ? "" : `type=${d.type} ${m.fmt(v)}`;
    }),
    "admin.vm.property.GetAll": read(NO_INPUT, (_r, vm) =>
      m
        .propNames(vm)
        .map((p) => `${p} ${escapeValue(m.formatProperty(vm, p, ctx.state))}\n`)
        .join(""),
    ),
    "admin.vm.property.Set": write(SET, (r, vm) => {
      m.setProperty(ctx.state, vm, r.arg, r.payload.toString("utf8"));
      return "";
    }),
    "admin.vm.property.Reset": write(ARG_ONLY, (r, vm) => {
      m.resetProperty(ctx.state, vm, r.arg);
      return "";
    }),
    "admin.property.List": read(DOM0_NO_INPUT, () => lines(Object.keys(m.GLOBAL_PROPS).sort())),
    "admin.property.Get": read(DOM0_ARG_ONLY, (r) => m.formatGlobal(ctx.state, r.arg)),
    "admin.property.GetAll": read(DOM0_NO_INPUT, () =>
      Object.keys(m.GLOBAL_PROPS)
        .sort()
        .map((p) => `${p} ${escapeValue(m.formatGlobal(ctx.state, p))}\n`)
        .join(""),
    ),
    "admin.property.Set": write(sig(true, null, true), (r) => {
      m.setGlobal(ctx.state, r.arg, r.payload.toString("utf8"));
      return "";
    }),
    "admin.property.Reset": write(DOM0_ARG_ONLY, (r) => {
      m.globalDef(r.arg);
      delete ctx.state.global[r.arg];
      return "";
    }),
    "admin.vm.feature.List": read(NO_INPUT, (_r, vm) => lines(Object.keys(vm.features).sort())),
    // qubesd leaves the feature name's shape to the qrexec policy for Get and Remove.
    "admin.vm.feature.Get": read(ARG_ONLY, (r, vm) => {
      if (!Object.prototype.hasOwnProperty.call(vm.features, r.arg)) throw featureNotFound(vm, r.arg);
      return vm.features[r.arg];
    }),
    "admin.vm.feature.Set": write(SET, (r, vm) => {
      vm.features[r.arg] = featureValue(r.arg, r.payload);
      return "";
    }),
    "admin.vm.feature.Remove": write(ARG_ONLY, (r, vm) => {
      if (!Object.prototype.hasOwnProperty.call(vm.features, r.arg)) throw featureNotFound(vm, r.arg);
      delete vm.features[r.arg];
      return "";
    }),
    "admin.vm.tag.List": read(NO_INPUT, (_r, vm) => lines([...vm.tags].sort())),
    "admin.vm.tag.Get": read(ARG_ONLY, (r, vm) => {
      m.validateTag(r.arg);
      return vm.tags.includes(r.arg) ? "1" : "0";
    }),
    "admin.vm.tag.Set": write(ARG_ONLY, (r, vm) => {
      m.validateTag(r.arg);
      if (!vm.tags.includes(r.arg)) vm.tags.push(r.arg);
      return "";
    }),
    "admin.vm.tag.Remove": write(ARG_ONLY, (r, vm) => {
      m.validateTag(r.arg);
      if (!vm.tags.includes(r.arg)) throw new SimError("QubesTagNotFoundError", `Tag not set for domain ${vm.name}: ${r.arg}`);
      vm.tags = vm.tags.filter((t) => t !== r.arg);
      return "";
    }),
    "admin.label.List": read(DOM0_NO_INPUT, () => lines(m.LABELS.map((l) => l.name))),
    "admin.label.Get": read(DOM0_ARG_ONLY, (r) => {
      m.validateLabelName(r.arg);
      return m.findLabel(r.arg).color;
    }),
    "admin.label.Index": read(DOM0_ARG_ONLY, (r) => {
      m.validateLabelName(r.arg);
      return String(m.findLabel(r.arg).index);
    }),
  };
}
