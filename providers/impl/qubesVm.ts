// Implementation of QubesVm (see providers/qubesVm.ts).
import { z } from "zod";
import type { PropertyValue, QubesAdmin } from "../../admin/api";
import { vmNameProblem } from "../../qrexec";
import { adminConnection, adminFor } from "./admin";
import { checkWith, describeError, DiffResult, hasUnknown, isNotFound, parseProps, step } from "./common";
import { formatSize, parseSize } from "./size";

const KIND = "QubesVm";
const vmName = z.string().superRefine((s, ctx) => {
  const p = vmNameProblem(s);
  if (p) ctx.addIssue({ code: "custom", message: p });
});
const size = z.union([z.number(), z.string()]).transform((v, ctx) => {
  try {
    return parseSize(v);
  } catch (e) {
    ctx.addIssue({ code: "custom", message: (e as Error).message });
    return z.NEVER;
  }
});

export const vmInputs = z.object({
  admin: adminConnection,
  name: vmName,
  klass: z.enum(["AppVM", "TemplateVM", "StandaloneVM", "DispVM"]),
  template: z.string().optional(),
  label: z.string().min(1),
  netvm: z.string().nullable().optional(),
  providesNetwork: z.boolean().optional(),
  defaultDispvm: z.string().nullable().optional(),
  templateForDispvms: z.boolean().optional(),
  memory: z.number().int().positive().optional(),
  maxmem: z.number().int().nonnegative().optional(),
  vcpus: z.number().int().positive().optional(),
  virtMode: z.enum(["hvm", "pvh", "pv"]).optional(),
  features: z.record(z.string(), z.string()).default({}),
  tags: z.array(z.string().regex(/^[A-Za-z0-9_-]+$/, "a tag: letters, digits, '_' and '-'")).default([]),
  privateVolumeSize: size.optional(),
}).superRefine((p, ctx) => {
  if (p.klass === "DispVM" && !p.template) ctx.addIssue({ code: "custom", path: ["template"], message: "a DispVM needs a template (a VM with templateForDispvms)" });
});
/** Inputs after check: sizes in bytes. */
export type VmInputs = z.infer<typeof vmInputs>;

const vmOutputs = vmInputs.safeExtend({
  /** The private volume's size as last applied or read. */
  privateVolumeBytes: z.number().optional(),
});
export type VmOutputs = z.infer<typeof vmOutputs>;

/** The Qubes properties a QubesVm manages: input key → Qubes property and value kind. */
const PROPS = [
  { key: "label", prop: "label", kind: "str" },
  { key: "template", prop: "template", kind: "vm" },
  { key: "netvm", prop: "netvm", kind: "vm" },
  { key: "providesNetwork", prop: "provides_network", kind: "bool" },
  { key: "defaultDispvm", prop: "default_dispvm", kind: "vm" },
  { key: "templateForDispvms", prop: "template_for_dispvms", kind: "bool" },
  { key: "memory", prop: "memory", kind: "int" },
  { key: "maxmem", prop: "maxmem", kind: "int" },
  { key: "vcpus", prop: "vcpus", kind: "int" },
  { key: "virtMode", prop: "virt_mode", kind: "str" },
] as const;
type PropKey = (typeof PROPS)[number]["key"];
type PropValue = string | number | boolean | null | undefined;

/** The part of a VM's state that update planning compares. */
export type VmState = Pick<VmInputs, PropKey | "features" | "tags"> & { privateVolumeBytes?: number };

/** One Admin call of an update plan. */
export type VmOp =
  | { op: "propertySet"; prop: string; value: string; what: string }
  | { op: "propertyReset"; prop: string; what: string }
  | { op: "featureSet"; feature: string; value: string }
  | { op: "featureRemove"; feature: string }
  | { op: "tagSet"; tag: string }
  | { op: "tagRemove"; tag: string }
  | { op: "volumeResize"; bytes: number };

const encode = (v: Exclude<PropValue, undefined>): string => (v === null ? "" : typeof v === "boolean" ? (v ? "True" : "False") : String(v));

/**
 * The minimal Admin calls that turn `old` (what was applied or read) into `want`. Properties left
 * undefined in `want` go back to Qubes' default (`template`: left as it is). `requestedSize` is
 * grown to when larger than the volume; a smaller one is refused by `diff` before this runs.
 */
export function planVmUpdate(old: VmState, want: VmState, requestedSize?: number): VmOp[] {
  const ops: VmOp[] = [];
  for (const { key, prop } of PROPS) {
    const o = old[key] as PropValue;
    const n = want[key] as PropValue;
    if (o === n) continue;
    if (n === undefined) {
      if (key !== "template" && key !== "label") ops.push({ op: "propertyReset", prop, what: `${prop} (to Qubes' default)` });
    } else {
      ops.push({ op: "propertySet", prop, value: encode(n), what: `${prop}=${n === null ? "none" : String(n)}` });
    }
  }
  for (const [f, v] of Object.entries(want.features)) if (old.features[f] !== v) ops.push({ op: "featureSet", feature: f, value: v });
  for (const f of Object.keys(old.features)) if (!(f in want.features)) ops.push({ op: "featureRemove", feature: f });
  const oldTags = new Set(old.tags);
  const newTags = new Set(want.tags);
  for (const t of newTags) if (!oldTags.has(t)) ops.push({ op: "tagSet", tag: t });
  for (const t of oldTags) if (!newTags.has(t)) ops.push({ op: "tagRemove", tag: t });
  if (requestedSize !== undefined && (old.privateVolumeBytes === undefined || requestedSize > old.privateVolumeBytes)) {
    ops.push({ op: "volumeResize", bytes: requestedSize });
  }
  return ops;
}

function describeOp(vm: string, op: VmOp): string {
  switch (op.op) {
    case "propertySet":
    case "propertyReset":
      return `QubesVm ${vm}: setting ${op.what}`;
    case "featureSet":
      return `QubesVm ${vm}: setting feature ${op.feature}=${op.value}`;
    case "featureRemove":
      return `QubesVm ${vm}: removing feature ${op.feature}`;
    case "tagSet":
      return `QubesVm ${vm}: adding tag ${op.tag}`;
    case "tagRemove":
      return `QubesVm ${vm}: removing tag ${op.tag}`;
    case "volumeResize":
      return `QubesVm ${vm}: growing the private volume to ${formatSize(op.bytes)}`;
  }
}

async function runOps(admin: QubesAdmin, vm: string, ops: VmOp[]): Promise<void> {
  for (const op of ops) {
    await step(describeOp(vm, op), async () => {
      switch (op.op) {
        case "propertySet": return admin.propertySet(vm, op.prop, op.value);
        case "propertyReset": return admin.propertyReset(vm, op.prop);
        case "featureSet": return admin.featureSet(vm, op.feature, op.value);
        case "featureRemove": return admin.featureRemove(vm, op.feature);
        case "tagSet": return admin.tagSet(vm, op.tag);
        case "tagRemove": return admin.tagRemove(vm, op.tag);
        case "volumeResize": return admin.volumeResize(vm, "private", BigInt(op.bytes));
      }
    });
  }
}

const stateOf = (p: VmInputs | VmOutputs, bytes?: number): VmState => ({
  label: p.label, template: p.template, netvm: p.netvm, providesNetwork: p.providesNetwork, defaultDispvm: p.defaultDispvm,
  templateForDispvms: p.templateForDispvms, memory: p.memory, maxmem: p.maxmem, vcpus: p.vcpus, virtMode: p.virtMode,
  features: p.features, tags: p.tags, privateVolumeBytes: bytes,
});

function decode(kind: (typeof PROPS)[number]["kind"], v: PropertyValue): PropValue {
  if (v.isDefault) return undefined;
  switch (kind) {
    case "vm": return v.value === "" || v.value === "None" ? null : v.value;
    case "bool": return v.value === "True";
    case "int": return Number(v.value);
    case "str": return v.value;
  }
}

async function volumeBytes(admin: QubesAdmin, vm: string): Promise<number> {
  const info = await step(`QubesVm ${vm}: reading the private volume`, () => admin.volumeInfo(vm, "private"));
  return Number(info.size);
}

export function check(_olds: unknown, news: unknown) {
  return Promise.resolve(checkWith(vmInputs, news));
}

export async function diff(_id: string, oldsRaw: unknown, newsRaw: unknown): Promise<DiffResult> {
  const o = parseProps(vmOutputs, oldsRaw, KIND);
  if (hasUnknown(newsRaw)) return { changes: true };
  const n = parseProps(vmInputs, newsRaw, KIND);
  const replaces = (["name", "klass"] as const).filter((k) => o[k] !== n[k]);
  if (replaces.length > 0) return { changes: true, replaces, deleteBeforeReplace: true };
  const cur = o.privateVolumeBytes;
  if (n.privateVolumeSize !== undefined && cur !== undefined && n.privateVolumeSize < cur) {
    throw new Error(`QubesVm ${n.name}: privateVolumeSize ${formatSize(n.privateVolumeSize)} is smaller than the private volume's current size ${formatSize(cur)}; Qubes volumes only grow: set at least ${formatSize(cur)}, or leave privateVolumeSize unset`);
  }
  return { changes: planVmUpdate(stateOf(o, cur), stateOf(n, cur), n.privateVolumeSize).length > 0 };
}

export async function create(inputs: unknown) {
  const p = parseProps(vmInputs, inputs, KIND);
  const admin = adminFor(p.admin);
  await step(`QubesVm ${p.name}: creating the ${p.klass}${p.template ? ` from ${p.template}` : ""}`, () => admin.vmCreate(p.klass, p.name, p.label, p.template));
  try {
    const base: VmState = { label: p.label, template: p.template, features: {}, tags: [] };
    await runOps(admin, p.name, planVmUpdate(base, stateOf(p), undefined));
    let bytes = await volumeBytes(admin, p.name);
    if (p.privateVolumeSize !== undefined && p.privateVolumeSize > bytes) {
      await runOps(admin, p.name, [{ op: "volumeResize", bytes: p.privateVolumeSize }]);
      bytes = p.privateVolumeSize;
    }
    return { id: p.name, outs: { ...p, privateVolumeBytes: bytes } };
  } catch (e) {
    // Never leave a VM that the state does not know about.
    try {
      await admin.vmRemove(p.name);
    } catch (e2) {
      throw new Error(`${(e as Error).message}; removing the half-created VM failed too (${describeError(e2)}): remove ${p.name} by hand (qvm-remove ${p.name})`);
    }
    throw new Error(`${(e as Error).message} (the half-created VM ${p.name} was removed again)`);
  }
}

export async function update(_id: string, oldsRaw: unknown, newsRaw: unknown) {
  const o = parseProps(vmOutputs, oldsRaw, KIND);
  const n = parseProps(vmInputs, newsRaw, KIND);
  const cur = o.privateVolumeBytes;
  await runOps(adminFor(n.admin), n.name, planVmUpdate(stateOf(o, cur), stateOf(n, cur), n.privateVolumeSize));
  const bytes = n.privateVolumeSize !== undefined && (cur === undefined || n.privateVolumeSize > cur) ? n.privateVolumeSize : cur;
  return { outs: { ...n, privateVolumeBytes: bytes } };
}

/** What is really there, limited to what this resource manages. */
export async function read(id: string, raw: unknown) {
  const o = parseProps(vmOutputs, raw, KIND);
  const admin = adminFor(o.admin);
  const list = await step(`QubesVm ${o.name}: listing VMs`, () => admin.vmList());
  const entry = list.find((v) => v.name === o.name);
  if (!entry) return { id: "", props: {} };
  const props = await step(`QubesVm ${o.name}: reading properties`, () => admin.propertyGetAll(o.name));
  const seen: Partial<Record<PropKey, PropValue>> = {};
  for (const { key, prop, kind } of PROPS) {
    const v = props[prop];
    seen[key] = v === undefined ? undefined : decode(kind, v);
  }
  // A template-based VM always has a template; when the input left it unset, keep it unmanaged.
  if (o.template === undefined) seen.template = undefined;
  else if (seen.template === undefined && props.template) seen.template = props.template.value;
  if (props.label) seen.label = props.label.value;
  const managed = Object.keys(o.features);
  const present = managed.length > 0 ? new Set(await step(`QubesVm ${o.name}: listing features`, () => admin.featureList(o.name))) : new Set<string>();
  const features: Record<string, string> = {};
  for (const f of managed) {
    if (present.has(f)) features[f] = await step(`QubesVm ${o.name}: reading feature ${f}`, () => admin.featureGet(o.name, f));
  }
  const tagsNow = new Set(await step(`QubesVm ${o.name}: listing tags`, () => admin.tagList(o.name)));
  const tags = o.tags.filter((t) => tagsNow.has(t));
  const bytes = await volumeBytes(admin, o.name);
  const real = {
    admin: o.admin, name: o.name, klass: entry.klass as VmInputs["klass"],
    ...Object.fromEntries(Object.entries(seen).filter(([, v]) => v !== undefined)),
    features, tags,
    ...(o.privateVolumeSize !== undefined ? { privateVolumeSize: bytes } : {}),
  };
  // No `undefined` may reach the engine: protobuf's Struct cannot carry it (refresh would fail).
  const out = { ...real, ...(o.privateVolumeSize !== undefined ? { privateVolumeSize: o.privateVolumeSize } : {}), privateVolumeBytes: bytes };
  return { id, props: out, inputs: real };
}

/** Halts the VM (shutdown, then kill after 60 s) when it runs: Qubes removes only halted VMs. */
async function halt(admin: QubesAdmin, name: string, state: string): Promise<void> {
  if (state === "Halted") return;
  await step(`QubesVm ${name}: shutting it down before removal`, () => admin.vmShutdown(name));
  const deadline = Date.now() + 60_000;
  for (;;) {
    const e = (await admin.vmList()).find((v) => v.name === name);
    if (!e || e.state === "Halted") return;
    if (Date.now() > deadline) {
      await step(`QubesVm ${name}: killing it after 60 s of shutdown`, () => admin.vmKill(name));
      return;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}

async function delete_(_id: string, raw: unknown): Promise<void> {
  const o = parseProps(vmOutputs, raw, KIND);
  const admin = adminFor(o.admin);
  const entry = (await step(`QubesVm ${o.name}: listing VMs`, () => admin.vmList())).find((v) => v.name === o.name);
  if (!entry) return;
  await halt(admin, o.name, entry.state);
  try {
    await admin.vmRemove(o.name);
  } catch (e) {
    if (isNotFound(e)) return;
    throw new Error(`QubesVm ${o.name}: cannot remove it: ${describeError(e)}. Qubes refuses to remove a VM that other VMs use (as template, netvm or default_dispvm) or that is still running: change those first`);
  }
}
export { delete_ as delete };
