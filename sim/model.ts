/**
 * The Qubes model of qubes-sim: VM classes, properties with types and defaults, labels, volumes,
 * and Qubes' validation with its real exception names. Pure (no I/O): operations mutate a State.
 */
import * as crypto from "crypto";
import { type VmNameFault, vmNameFault } from "../contracts/names";
import { creatableVmClass, type VmClass } from "../contracts/vm";
import { GiB, State, Value, Vm, Volume } from "./state";

/** An error to report on the wire as `2\0<type>\0\0<message>\0`. */
export class SimError extends Error {
  constructor(
    readonly type: string,
    message: string,
  ) {
    super(message);
  }
}
export const protocolError = (msg: string): SimError => new SimError("ProtocolError", msg);

/** The standard labels, in index order (index 1 first), with their colours. */
export const LABELS: readonly { name: string; color: string }[] = [
  { name: "red", color: "0xcc0000" },
  { name: "orange", color: "0xf57900" },
  { name: "yellow", color: "0xedd400" },
  { name: "green", color: "0x73d216" },
  { name: "gray", color: "0x555753" },
  { name: "blue", color: "0x3465a4" },
  { name: "purple", color: "0x75507b" },
  { name: "black", color: "0x000000" },
];

const LABEL_NAME_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.";

/** Qubes' validate_label_name (a digit is refused only when creating, where it would read as an index). */
export function validateLabelName(label: string, creation = false): void {
  if (!label) throw new SimError("QubesInvalidLabelError", "Label name must be set");
  if (creation && /^\d+$/.test(label)) throw new SimError("QubesInvalidLabelError", "Label must not be a digit");
  if (![...label].every((c) => LABEL_NAME_CHARS.includes(c))) throw new SimError("QubesInvalidLabelError", `Label must be in safe set: ${LABEL_NAME_CHARS}`);
}

/** Qubes' get_label: by name, else by index when the text is a number (Python's int() also takes `1_0`). */
export function findLabel(label: string): { name: string; color: string; index: number } {
  const byName = LABELS.findIndex((l) => l.name === label);
  const i = byName >= 0 ? byName : /^\d+(_\d+)*$/.test(label) ? Number(label.replace(/_/g, "")) - 1 : -1;
  if (i < 0 || i >= LABELS.length) throw new SimError("QubesLabelNotFoundError", `Label does not exist: ${label}`);
  return { ...LABELS[i], index: i + 1 };
}

type PropType = "str" | "int" | "bool" | "vm" | "label";
interface PropDef {
  type: PropType;
  /** Classes having the property (all when absent). */
  classes?: readonly VmClass[];
  readOnly?: boolean;
  /** Default value; undefined = the property has no default. */
  dflt?: (vm: Vm, s: State) => Value | undefined;
  /** For vm-typed: allowed classes of the target. */
  target?: readonly VmClass[];
  allowNone?: boolean;
  /** Extra check of a new value (after type conversion). */
  check?: (vm: Vm, v: Value, s: State) => void;
}

/** The properties of a qube that dom0 (the AdminVM) has not: every class admin.vm.Create makes. */
const QUBES: readonly VmClass[] = creatableVmClass.options;
const positive = (name: string) => (vm: Vm, v: Value) => {
  if (typeof v !== "number" || v <= 0) throw new SimError("QubesPropertyValueError", `${name} value must be positive (${vm.name}.${name}=${String(v)})`);
};

const nonNegative = (name: string) => (vm: Vm, v: Value) => {
  if (typeof v !== "number" || v < 0) throw new SimError("QubesPropertyValueError", `${name} value must be non-negative (${vm.name}.${name}=${String(v)})`);
};

export const PROPS: Record<string, PropDef> = {
  name: { type: "str", readOnly: true },
  qid: { type: "int", readOnly: true },
  uuid: { type: "str", readOnly: true },
  klass: { type: "str", readOnly: true, dflt: (vm) => vm.klass },
  label: { type: "label" },
  icon: { type: "str", readOnly: true, dflt: (vm, s) => icon(vm, s) },
  template: { type: "vm", classes: ["AppVM", "DispVM"], target: ["TemplateVM"] },
  netvm: {
    type: "vm",
    classes: QUBES,
    allowNone: true,
    dflt: (vm, s) => (vm.klass === "TemplateVM" || get(vm, "provides_network", s) === true ? null : globalGet(s, "default_netvm")),
    check: checkNetvm,
  },
  provides_network: { type: "bool", classes: QUBES, dflt: () => false, check: checkProvidesNetwork },
  default_dispvm: { type: "vm", allowNone: true, target: ["AppVM"], dflt: (_vm, s) => globalGet(s, "default_dispvm"), check: checkDispvmTemplate },
  template_for_dispvms: { type: "bool", classes: ["AppVM", "StandaloneVM"], dflt: () => false },
  guivm: { type: "vm", classes: QUBES, allowNone: true, dflt: () => "dom0" },
  memory: { type: "int", classes: QUBES, dflt: () => 400, check: positive("memory") },
  // 0 turns memory balancing off for the qube (qubes-core-admin: `_setter_non_negative_int`).
  maxmem: { type: "int", classes: QUBES, dflt: () => 4000, check: nonNegative("maxmem") },
  vcpus: { type: "int", classes: QUBES, dflt: () => 2, check: positive("vcpus") },
  kernel: { type: "str", classes: QUBES, dflt: (_vm, s) => globalGet(s, "default_kernel") },
  kernelopts: { type: "str", classes: QUBES, dflt: () => "" },
  virt_mode: {
    type: "str",
    classes: QUBES,
    dflt: () => "pvh",
    check: (vm, v) => {
      if (v !== "pv" && v !== "pvh" && v !== "hvm") throw new SimError("QubesPropertyValueError", `Invalid virtualization mode, supported values: hvm, pv, pvh (${vm.name}.virt_mode=${String(v)})`);
    },
  },
  autostart: { type: "bool", classes: QUBES, dflt: () => false },
  include_in_backups: { type: "bool", classes: QUBES, dflt: () => true },
  debug: { type: "bool", classes: QUBES, dflt: () => false },
  qrexec_timeout: { type: "int", classes: QUBES, dflt: () => 60, check: positive("qrexec_timeout") },
  shutdown_timeout: { type: "int", classes: QUBES, dflt: () => 60, check: positive("shutdown_timeout") },
  ip: { type: "str", classes: QUBES, readOnly: true, dflt: (vm, s) => (get(vm, "netvm", s) ? `10.137.${vm.qid >> 8}.${vm.qid & 255}` : "") },
  updateable: { type: "bool", readOnly: true, dflt: (vm) => vm.klass === "TemplateVM" || vm.klass === "StandaloneVM" },
};

/** Global properties (admin.property.*, held by dom0 in Qubes' qubes.xml). */
export const GLOBAL_PROPS: Record<string, PropDef> = {
  default_netvm: { type: "vm", allowNone: true, dflt: () => null },
  default_template: { type: "vm", allowNone: true, target: ["TemplateVM"], dflt: () => null },
  default_dispvm: { type: "vm", allowNone: true, target: ["AppVM"], dflt: () => null },
  updatevm: { type: "vm", allowNone: true, dflt: () => null },
  clockvm: { type: "vm", allowNone: true, dflt: () => null },
  default_kernel: { type: "str", dflt: () => "6.12.59-1.fc41" },
  default_pool: { type: "str", dflt: () => "vm-pool" },
};

function icon(vm: Vm, s: State): string {
  const label = String(get(vm, "label", s) ?? "black");
  if (vm.klass === "AdminVM") return `adminvm-${label}`;
  if (vm.klass === "TemplateVM") return `templatevm-${label}`;
  if (get(vm, "provides_network", s) === true) return `servicevm-${label}`;
  return `${vm.klass.replace("VM", "").toLowerCase()}vm-${label}`;
}

export function globalGet(s: State, prop: string): Value {
  if (Object.prototype.hasOwnProperty.call(s.global, prop)) return s.global[prop];
  return GLOBAL_PROPS[prop]?.dflt?.(dom0(s), s) ?? null;
}

function dom0(s: State): Vm {
  return s.vms["dom0"];
}

/** Property definition for a VM, or QubesNoSuchPropertyError. */
export function propDef(vm: Vm, prop: string): PropDef {
  const d = Object.prototype.hasOwnProperty.call(PROPS, prop) ? PROPS[prop] : undefined;
  if (!d || (d.classes && !d.classes.includes(vm.klass))) throw new SimError("QubesNoSuchPropertyError", `Invalid property '${prop}' of ${vm.name}`);
  return d;
}

/** Names of the properties a VM has, sorted. */
export function propNames(vm: Vm): string[] {
  return Object.keys(PROPS)
    .filter((p) => !PROPS[p].classes || PROPS[p].classes.includes(vm.klass))
    .sort();
}

/** Effective value; undefined when unset without default. */
export function get(vm: Vm, prop: string, s: State): Value | undefined {
  if (prop === "name") return vm.name;
  if (prop === "qid") return vm.qid;
  if (prop === "uuid") return vm.uuid;
  if (Object.prototype.hasOwnProperty.call(vm.props, prop)) return vm.props[prop];
  return PROPS[prop]?.dflt?.(vm, s);
}

export function isDefault(vm: Vm, prop: string): boolean {
  if (prop === "name" || prop === "qid" || prop === "uuid") return false;
  return !Object.prototype.hasOwnProperty.call(vm.props, prop);
}

/** `default=<True|False> type=<t> <value>` */
export function formatProperty(vm: Vm, prop: string, s: State): string {
  const d = propDef(vm, prop);
  const v = get(vm, prop, s);
  return `default=${isDefault(vm, prop) ? "True" : "False"} type=${d.type} ${fmt(v)}`;
}

export function fmt(v: Value | undefined): string {
  if (v === undefined || v === null) return "";
  if (typeof v === "boolean") return v ? "True" : "False";
  return String(v);
}

/** What qubesd answers for each fault of a name (the rule: contracts/names.ts). */
const NAME_FAULT_MESSAGE: Record<VmNameFault, (name: string) => string> = {
  // An empty name passes Qubes' length and first-character checks and fails the character check.
  empty: () => "VM name contains illegal characters",
  "too-long": () => "VM name must be shorter than 32 characters",
  "bad-start": (name) => (/^[0-9_.-]/.test(name) ? "VM name cannot start with hyphen, underscore, dot or numbers" : "VM name contains illegal characters"),
  "bad-characters": () => "VM name contains illegal characters",
  reserved: (name) => (name === "Domain-0" ? "VM name cannot be 'Domain-0'" : "VM name cannot be 'none' nor 'default'"),
  "dm-suffix": () => "VM name cannot end with -dm",
};

/** Qubes' validate_name. */
export function validateName(name: string): void {
  const fault = vmNameFault(name);
  if (fault) throw new SimError("QubesValueError", NAME_FAULT_MESSAGE[fault](name));
}

const UUID_REF = /^uuid:[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}$/;

/** Look up a VM by name (validated) or `uuid:<uuid>` (lower-case, full length), as qubesd decodes a request's ends. */
export function findVm(s: State, name: string): Vm {
  if (name.startsWith("uuid:")) {
    if (!UUID_REF.test(name)) throw new SimError("QubesVMInvalidUUIDError", `VM UUID is not valid: '${name.slice(5)}'`);
    const vm = Object.values(s.vms).find((v) => v.uuid === name.slice(5));
    if (!vm) throw new SimError("QubesVMNotFoundError", `No such domain: '${name}'`);
    return vm;
  }
  validateName(name);
  const vm = Object.prototype.hasOwnProperty.call(s.vms, name) ? s.vms[name] : undefined;
  if (!vm) throw new SimError("QubesVMNotFoundError", `No such domain: '${name}'`);
  return vm;
}

const BOOL_TRUE = ["1", "true", "yes", "on"];
const BOOL_FALSE = ["0", "false", "no", "off", ""];

/** Convert and validate a payload for a property of `holder` (a VM, or dom0 for globals). */
function convert(holderName: string, prop: string, d: PropDef, raw: string, s: State): Value {
  switch (d.type) {
    case "bool": {
      const l = raw.toLowerCase();
      if (BOOL_TRUE.includes(l)) return true;
      if (BOOL_FALSE.includes(l)) return false;
      throw new SimError("QubesValueError", `Invalid literal for boolean property: '${raw}'`);
    }
    case "int":
      if (!/^-?\d{1,18}$/.test(raw)) throw new SimError("QubesPropertyValueError", `Invalid value for property '${prop}' of ${holderName}: '${raw}' is not an integer`);
      return Number(raw);
    case "label":
      return findLabel(raw).name;
    case "vm": {
      if (raw === "") {
        if (!d.allowNone) throw new SimError("QubesPropertyValueError", `Property '${prop}' of ${holderName} cannot be none`);
        return null;
      }
      // qubesd's VMProperty: an unknown (or unnamable) qube is a bad value of the property.
      const target = Object.prototype.hasOwnProperty.call(s.vms, raw) ? s.vms[raw] : undefined;
      if (!target) throw new SimError("QubesPropertyValueError", `Can't set ${prop} to non-existing qube ${raw}`);
      if (d.target && !d.target.includes(target.klass))
        throw new SimError("QubesPropertyValueError", `wrong VM class: domains['${raw}'] is of type ${target.klass} and not ${d.target.join(" or ")}`);
      return target.name;
    }
    case "str":
      return raw;
  }
}

function checkNetvm(vm: Vm, v: Value, s: State): void {
  if (v === null) return;
  const target = s.vms[String(v)];
  if (get(target, "provides_network", s) !== true) throw new SimError("QubesValueError", `The ${target.name} qube does not provide network`);
  // Loop: walking the netvm chain from the new netvm must not come back to vm.
  let cur: Value | undefined = target.name;
  const seen = new Set<string>();
  while (typeof cur === "string" && !seen.has(cur)) {
    if (cur === vm.name) throw new SimError("QubesValueError", `Loops in network are unsupported (${vm.name}.netvm=${target.name})`);
    seen.add(cur);
    const c: Vm | undefined = s.vms[cur];
    cur = c && c.klass !== "AdminVM" ? get(c, "netvm", s) : null;
  }
}

function checkProvidesNetwork(vm: Vm, v: Value, s: State): void {
  if (v === true) return;
  const users = Object.values(s.vms).filter((o) => o.klass !== "AdminVM" && o.name !== vm.name && get(o, "netvm", s) === vm.name);
  if (users.length) throw new SimError("QubesValueError", `The ${vm.name} qube is still used as netvm by: ${users.map((u) => u.name).join(", ")}; cannot disable provides_network`);
}

function checkDispvmTemplate(vm: Vm, v: Value, s: State): void {
  if (v === null) return;
  const t = s.vms[String(v)];
  if (get(t, "template_for_dispvms", s) !== true) throw new SimError("QubesPropertyValueError", `Invalid value for property 'default_dispvm' of ${vm.name}: ${t.name} has template_for_dispvms=False`);
}

/** admin.vm.property.Set */
export function setProperty(s: State, vm: Vm, prop: string, raw: string): void {
  const d = propDef(vm, prop);
  if (d.readOnly) throw new SimError("QubesPropertyValueError", `Property '${prop}' of ${vm.name} is read-only`);
  const v = convert(vm.name, prop, d, raw, s);
  if (prop === "template" && vm.power !== "Halted") throw new SimError("QubesVMNotHaltedError", `Domain is not powered off: '${vm.name}' (cannot change template while running)`);
  if (prop === "netvm" && v === vm.name) throw new SimError("QubesValueError", `Loops in network are unsupported (${vm.name}.netvm=${vm.name})`);
  d.check?.(vm, v, s);
  vm.props[prop] = v;
}

/** admin.vm.property.Reset */
export function resetProperty(s: State, vm: Vm, prop: string): void {
  const d = propDef(vm, prop);
  if (d.readOnly) throw new SimError("QubesPropertyValueError", `Property '${prop}' of ${vm.name} is read-only`);
  if (!d.dflt) throw new SimError("QubesPropertyValueError", `Property '${prop}' of ${vm.name} has no default value to reset to`);
  const saved = vm.props[prop];
  const had = Object.prototype.hasOwnProperty.call(vm.props, prop);
  delete vm.props[prop];
  const v = get(vm, prop, s);
  try {
    if (v !== undefined) d.check?.(vm, v, s);
  } catch (e) {
    if (had) vm.props[prop] = saved;
    throw e;
  }
}

/** admin.property.Set (globals). */
export function setGlobal(s: State, prop: string, raw: string): void {
  const d = globalDef(prop);
  s.global[prop] = convert("dom0", prop, d, raw, s);
}

export function globalDef(prop: string): PropDef {
  const d = Object.prototype.hasOwnProperty.call(GLOBAL_PROPS, prop) ? GLOBAL_PROPS[prop] : undefined;
  if (!d) throw new SimError("QubesNoSuchPropertyError", `Invalid property '${prop}' of dom0 (global)`);
  return d;
}

export function formatGlobal(s: State, prop: string): string {
  const d = globalDef(prop);
  const dflt = !Object.prototype.hasOwnProperty.call(s.global, prop);
  return `default=${dflt ? "True" : "False"} type=${d.type} ${fmt(globalGet(s, prop))}`;
}

// ---------------------------------------------------------------------------------------------
// Volumes

interface VolumeShape {
  rw: boolean;
  save_on_stop: boolean;
  snap_on_start: boolean;
  source: string;
  ephemeral: boolean;
  revisions_to_keep: number;
  pool: string;
}

function volumeShape(vm: Vm, vol: string, s: State): VolumeShape {
  const tmpl = typeof vm.props.template === "string" ? vm.props.template : "";
  const base: VolumeShape = { rw: true, save_on_stop: false, snap_on_start: false, source: "", ephemeral: false, revisions_to_keep: 2, pool: "vm-pool" };
  const vid = (n: string, v: string) => `qubes_dom0/vm-${n}-${v}`;
  switch (vol) {
    case "root":
      if (vm.klass === "AppVM") return { ...base, snap_on_start: true, source: vid(tmpl, "root"), revisions_to_keep: 0 };
      if (vm.klass === "DispVM") {
        const t2 = s.vms[tmpl]?.props.template;
        return { ...base, snap_on_start: true, source: vid(typeof t2 === "string" ? t2 : tmpl, "root"), revisions_to_keep: 0 };
      }
      return { ...base, save_on_stop: true };
    case "private":
      if (vm.klass === "DispVM") return { ...base, snap_on_start: true, source: vid(tmpl, "private"), revisions_to_keep: 0 };
      return { ...base, save_on_stop: true };
    case "volatile":
      return { ...base, revisions_to_keep: 0, ephemeral: true };
    default:
      return { ...base, rw: false, revisions_to_keep: 0, pool: "linux-kernel" };
  }
}

/** Volumes a new VM of a class gets. */
export function newVolumes(klass: VmClass): Record<string, Volume> {
  if (klass === "AdminVM") return {};
  const v = (size: bigint): Volume => ({ size: size.toString(), usage: "0" });
  return { root: v(20n * GiB), private: v(2n * GiB), volatile: v(10n * GiB), kernel: v(0n) };
}

/** qubesd's enforce_arg over the destination's volumes. */
export function findVolume(vm: Vm, vol: string): Volume {
  const v = Object.prototype.hasOwnProperty.call(vm.volumes, vol) ? vm.volumes[vol] : undefined;
  if (!v) throw new SimError("PermissionDenied", `Argument not in '${vm.name} volumes'`);
  return v;
}

/** qubes.vm.Tags.validate_tag */
export function validateTag(tag: string): void {
  if (!tag) throw new SimError("QubesInvalidTagError", "tag cannot be empty");
  if (!/^[A-Za-z0-9_-]+$/.test(tag)) throw new SimError("QubesInvalidTagError", "disallowed characters");
}

/** admin.vm.volume.Info text. */
export function volumeInfo(vm: Vm, vol: string, s: State): string {
  const v = findVolume(vm, vol);
  const sh = volumeShape(vm, vol, s);
  const vid = sh.pool === "linux-kernel" ? fmt(get(vm, "kernel", s)) : `qubes_dom0/vm-${vm.name}-${vol}`;
  const f = (b: boolean) => (b ? "True" : "False");
  const rows: [string, string][] = [
    ["pool", sh.pool],
    ["vid", vid],
    ["size", v.size],
    ["usage", v.usage],
    ["rw", f(sh.rw)],
    ["source", sh.source],
    ["path", sh.pool === "linux-kernel" ? `/var/lib/qubes/vm-kernels/${vid}` : `/dev/${vid}`],
    ["save_on_stop", f(sh.save_on_stop)],
    ["snap_on_start", f(sh.snap_on_start)],
    ["revisions_to_keep", String(sh.revisions_to_keep)],
    ["ephemeral", f(sh.ephemeral)],
    ["is_outdated", "False"],
  ];
  return rows.map(([k, val]) => `${k}=${val}\n`).join("");
}

/** admin.vm.volume.Resize: grow only. */
export function resizeVolume(vm: Vm, vol: string, raw: string, s: State): void {
  const v = findVolume(vm, vol);
  if (!/^\d+$/.test(raw)) throw protocolError("Size contains non ASCII digits");
  if (raw.length >= 20) throw protocolError("Size is bigger than 19 decimal digits");
  if (raw.length > 1 && raw.startsWith("0")) throw protocolError("Size contains spurious leading zeros");
  const size = BigInt(raw);
  const sh = volumeShape(vm, vol, s);
  if (!sh.rw) throw new SimError("StoragePoolException", `Volume ${vm.name}:${vol} is read-only and cannot be resized`);
  if (size < BigInt(v.size))
    throw new SimError("StoragePoolException", `For your own safety, shrinking of qubes_dom0/vm-${vm.name}-${vol} is disabled (${size} < ${v.size}). If you really know what you are doing, use 'lvresize' on qubes_dom0/vm-${vm.name}-${vol} manually.`);
  v.size = size.toString();
}

// ---------------------------------------------------------------------------------------------
// VMs

function newUuid(): string {
  return crypto.randomUUID();
}

function nextQid(s: State): number {
  const used = new Set(Object.values(s.vms).map((v) => v.qid));
  let q = 1;
  while (used.has(q)) q++;
  return q;
}

/**
 * admin.vm.Create.<Class>, in qubesd's order: the class, the template argument's shape, the
 * payload's options; then (after the permission check, which the sim's callers always pass) an
 * existing name, an unknown template and an unknown label, so that nothing leaks before permission.
 */
export function createVm(s: State, klass: string, templateArg: string, payload: string, source: string): Vm {
  const parsed = creatableVmClass.safeParse(klass);
  if (!parsed.success) throw protocolError(`no such method: 'admin.vm.Create.${klass}'`);
  const k = parsed.data;
  let template: string | undefined;
  let invalidTemplate = false;
  if (templateArg) {
    if (k !== "AppVM" && k !== "DispVM") throw protocolError(`${k} cannot be based on template`);
    if (Object.prototype.hasOwnProperty.call(s.vms, templateArg)) template = templateArg;
    else invalidTemplate = true;
  }
  const kwargs: Record<string, string> = {};
  let invalidLabel = false;
  for (const param of payload.split(" ")) {
    const eq = param.indexOf("=");
    if (eq < 0) throw protocolError("Options does not match: name, label, pool, pool:");
    const key = param.slice(0, eq);
    const val = param.slice(eq + 1);
    if (key in kwargs) throw protocolError("Options must be unique");
    if (key === "name") validateName(val);
    else if (key === "label") {
      validateLabelName(val, true);
      if (!LABELS.some((l) => l.name === val)) invalidLabel = true;
    } else if (key === "pool" || key.startsWith("pool:")) throw protocolError("Pool option specified but 'allow_pool' is False");
    else throw protocolError("Options does not match: name, label, pool, pool:");
    kwargs[key] = val;
  }
  for (const required of ["name", "label"]) if (!(required in kwargs)) throw protocolError(`Creation requested without key: ${required}`);
  if (Object.prototype.hasOwnProperty.call(s.vms, kwargs.name)) throw new SimError("QubesVMAlreadyExistsError", `Qube already exists: ${kwargs.name}`);
  if (invalidTemplate) throw new SimError("QubesVMNotFoundError", `No such domain: '${templateArg}'`);
  if (invalidLabel) throw new SimError("QubesLabelNotFoundError", "Label does not exist: untrusted label");
  if (template === undefined && k === "AppVM") {
    const dt = globalGet(s, "default_template");
    if (typeof dt !== "string") throw new SimError("QubesNoTemplateError", `Domain ${kwargs.name} does not have a template (no default_template set)`);
    template = dt;
  } else if (template === undefined && k === "DispVM") {
    const dd = get(s.vms["dom0"], "default_dispvm", s);
    if (typeof dd !== "string") throw new SimError("QubesNoTemplateError", `Domain ${kwargs.name} does not have a template (no default_dispvm set)`);
    template = dd;
  }
  if (template !== undefined) {
    const t = s.vms[template];
    if (k === "AppVM" && t.klass !== "TemplateVM")
      throw new SimError("QubesPropertyValueError", `wrong VM class: domains['${t.name}'] is of type ${t.klass} and not TemplateVM`);
    if (k === "DispVM" && get(t, "template_for_dispvms", s) !== true)
      throw new SimError("QubesException", `Refusing to create DispVM out of this AppVM, because template_for_dispvms=False (${t.name})`);
  }
  const vm: Vm = {
    name: kwargs.name,
    klass: k,
    qid: nextQid(s),
    uuid: newUuid(),
    props: { label: kwargs.label, ...(template !== undefined ? { template } : {}) },
    features: {},
    tags: [`created-by-${source}`],
    volumes: newVolumes(k),
    power: "Halted",
  };
  s.vms[vm.name] = vm;
  return vm;
}

/** Where a VM is still referenced (netvm, template, default_dispvm, globals). */
export function usages(s: State, name: string): string[] {
  const out: string[] = [];
  for (const o of Object.values(s.vms)) {
    if (o.name === name) continue;
    for (const p of ["netvm", "template", "default_dispvm", "guivm"]) {
      const d = PROPS[p];
      if (d.classes && !d.classes.includes(o.klass)) continue;
      if (get(o, p, s) === name) out.push(`${o.name}.${p}`);
    }
  }
  for (const p of Object.keys(GLOBAL_PROPS)) if (globalGet(s, p) === name) out.push(`@global.${p}`);
  return out;
}

/** admin.vm.Remove (validation in qubesd's order; the caller deletes the storage). */
export function removeVm(s: State, vm: Vm): void {
  if (vm.name === "dom0") throw new SimError("QubesVMInUseError", "'dom0' cannot be removed");
  if (vm.power !== "Halted") throw new SimError("QubesVMNotHaltedError", `Domain is not powered off: '${vm.name}'`);
  const u = usages(s, vm.name);
  if (u.length) throw new SimError("QubesVMInUseError", `Domain is in use: '${vm.name}'; used as ${u.join(", ")}`);
  delete s.vms[vm.name];
}

/** admin.vm.Start: starts the netvm chain first; a running VM is left as is. */
export function startVm(s: State, vm: Vm, chain: string[] = []): void {
  if (vm.power === "Running") return;
  if (chain.includes(vm.name)) throw new SimError("QubesValueError", `Loops in network are unsupported (${chain.join(" -> ")})`);
  const netvm = get(vm, "netvm", s);
  if (typeof netvm === "string") startVm(s, s.vms[netvm], [...chain, vm.name]);
  vm.power = "Running";
}

/** admin.vm.Shutdown: `force` shuts a network provider down even while its clients run (they lose the network). */
export function shutdownVm(s: State, vm: Vm, force = false): void {
  if (vm.power === "Halted") throw new SimError("QubesVMNotStartedError", `Domain is powered off: '${vm.name}'`);
  if (force) {
    vm.power = "Halted";
    return;
  }
  const connected = Object.values(s.vms).filter((o) => o.klass !== "AdminVM" && o.power !== "Halted" && get(o, "netvm", s) === vm.name);
  if (connected.length) throw new SimError("QubesVMInUseError", `There are other VMs connected to this VM: ${connected.map((c) => c.name).join(", ")}`);
  vm.power = "Halted";
}

/** admin.vm.Kill */
export function killVm(vm: Vm): void {
  if (vm.power === "Halted") throw new SimError("QubesVMNotStartedError", `Domain is powered off: '${vm.name}'`);
  vm.power = "Halted";
}

// ---------------------------------------------------------------------------------------------
// The default world

export function defaultWorld(): State {
  const s: State = { version: 1, vms: {}, global: {} };
  const add = (name: string, klass: VmClass, qid: number, props: Record<string, Value>, features: Record<string, string> = {}, power = "Halted") => {
    s.vms[name] = { name, klass, qid, uuid: klass === "AdminVM" ? "00000000-0000-0000-0000-000000000000" : newUuid(), props, features, tags: [], volumes: newVolumes(klass), power };
  };
  add("dom0", "AdminVM", 0, { label: "black" }, {}, "Running");
  const tfeat = (os: string, dist: string): Record<string, string> => ({ qrexec: "1", gui: "1", os, "os-distribution": dist, "template-release": "" });
  add("fedora-43-xfce", "TemplateVM", 1, { label: "black" }, { ...tfeat("Linux", "fedora"), "template-name": "fedora-43-xfce" });
  add("fedora-43-minimal", "TemplateVM", 2, { label: "black" }, { ...tfeat("Linux", "fedora"), "template-name": "fedora-43-minimal" });
  add("debian-13", "TemplateVM", 3, { label: "black" }, { ...tfeat("Linux", "debian"), "template-name": "debian-13" });
  add("whonix-gateway-18", "TemplateVM", 4, { label: "black" }, { ...tfeat("Linux", "whonix"), "template-name": "whonix-gateway-18", whonix: "1" });
  add("sys-net", "AppVM", 5, { label: "red", template: "fedora-43-xfce", netvm: null, provides_network: true, virt_mode: "hvm", autostart: true, memory: 425 }, {}, "Running");
  add("sys-firewall", "AppVM", 6, { label: "green", template: "fedora-43-xfce", netvm: "sys-net", provides_network: true, autostart: true }, {}, "Running");
  add("sys-whonix", "AppVM", 7, { label: "black", template: "whonix-gateway-18", netvm: "sys-firewall", provides_network: true, autostart: true }, {}, "Running");
  s.global = { default_netvm: "sys-firewall", default_template: "fedora-43-xfce", updatevm: "sys-firewall", clockvm: "sys-net" };
  for (const t of ["fedora-43-xfce", "fedora-43-minimal", "debian-13", "whonix-gateway-18"]) s.vms[t].tags = [];
  return s;
}
