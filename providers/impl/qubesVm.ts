// Implementation of QubesVm (see providers/qubesVm.ts).
import { z } from "zod";
import type { PropertyValue, QubesAdmin } from "../../admin/api";
import { hasQubesCode } from "../../admin/errors";
import { creatableVmClass } from "../../contracts/vm";
import { vmName } from "../../contracts/vmName";
import { formatSize, sizeSchema } from "../size";
import { runAdmin, runCache, runConnection } from "./admin";
import {
  CheckResult, checkWith, describeError, DiffResult, hasUnknown, holdsConnection, isVmNotFound, keptAdmin, legacyAdmin, parseProps,
  ProviderError, step, withoutAdmin,
} from "./common";
import { forgetVm, listedVm, liveVm, type LiveVm, vmListChanged } from "./dom0";

const KIND = "QubesVm";
const who = (name: string) => `${KIND} ${name}`;
const size = sizeSchema;
const tag = z.string().regex(/^[A-Za-z0-9_-]+$/, "a tag: letters, digits, '_' and '-'");

export const vmInputs = z.object({
  ...legacyAdmin,
  /** The qube's name. Changing it replaces the qube. */
  name: vmName,
  /** The qube's class. Changing it replaces the qube. */
  klass: creatableVmClass,
  /** Template (AppVM, DispVM): given to Qubes in the create call; unset = Qubes' default template. */
  template: z.string().optional(),
  /** Label (colour), e.g. `green`, `black`. */
  label: z.string().min(1),
  /** NetVM: a qube name, `null` for no network, unset for Qubes' default netvm. */
  netvm: z.string().nullable().optional(),
  /** `provides_network`: whether other qubes may use this one as their netvm. Unset = default (false). */
  providesNetwork: z.boolean().optional(),
  /** `default_dispvm`: a qube name, `null` for none, unset for Qubes' default. */
  defaultDispvm: z.string().nullable().optional(),
  /** `template_for_dispvms`: whether disposables may be started from this qube. Unset = default (false). */
  templateForDispvms: z.boolean().optional(),
  /** Initial memory in MiB; unset = default. */
  memory: z.number().int().positive().optional(),
  /** Maximum memory in MiB (0: no memory balancing); unset = default. */
  maxmem: z.number().int().nonnegative().optional(),
  /** Number of virtual CPUs; unset = default. */
  vcpus: z.number().int().positive().optional(),
  /** `virt_mode` (`hvm` for Windows); unset = default. */
  virtMode: z.enum(["hvm", "pvh", "pv"]).optional(),
  /** Features to set (default none; only these are managed; removing one here removes it from the qube). */
  features: z.record(z.string(), z.string()).default({}),
  /** Tags to add (default none; only these are managed; tags Qubes adds itself are left alone). */
  tags: z.array(tag).default([]),
  /** Minimum size of the private volume: bytes, or text like `20GiB` (bytes after check). Grows only. */
  privateVolumeSize: size.optional(),
  /** The tag marking the qube as this stack's (the QubesVm constructor's default: `ownerTagFor(project, stack)`). */
  ownerTag: tag.optional(),
  /** For messages: the stack config key each input comes from, e.g. `{ netvm: "qubes-build-infra:buildNetvm" }`. */
  configKeys: z.record(z.string(), z.string()).optional(),
  /** Set by check: how dom0 differs from what the state recorded (shown by the preview). */
  drift: z.string().optional(),
  /** Set by check for an existing VM: its uuid in dom0 now. */
  uuid: z.string().optional(),
}).superRefine((p, ctx) => {
  if (p.klass === "DispVM" && !p.template) ctx.addIssue({ code: "custom", path: ["template"], message: "a DispVM needs a template (a VM with templateForDispvms)" });
});
/** Inputs after check: sizes in bytes. */
export type VmInputs = z.infer<typeof vmInputs>;

const vmOutputs = vmInputs.safeExtend({
  /** The private volume's size as last applied. */
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
const show = (v: PropValue): string => (v === undefined ? "Qubes' default" : v === null ? "none" : String(v));

/**
 * The minimal Admin calls that turn `old` (what dom0 has, or what was applied) into `want`.
 * Properties left undefined in `want` go back to Qubes' default (`template`: left as it is).
 * Tags and features: only those named in `old` or `want` are considered (`managedTags` limits
 * removals to tags this resource ever set). `requestedSize` is grown to when larger than the volume.
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
      ops.push({ op: "propertySet", prop, value: encode(n), what: `${prop}=${show(n)}` });
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

function describeOp(op: VmOp): string {
  switch (op.op) {
    case "propertySet":
    case "propertyReset":
      return `setting ${op.what}`;
    case "featureSet":
      return `setting feature ${op.feature}=${op.value}`;
    case "featureRemove":
      return `removing feature ${op.feature}`;
    case "tagSet":
      return `adding tag ${op.tag}`;
    case "tagRemove":
      return `removing tag ${op.tag}`;
    case "volumeResize":
      return `growing the private volume to ${formatSize(op.bytes)}`;
  }
}

async function runOps(admin: QubesAdmin, vm: string, ops: VmOp[]): Promise<void> {
  for (const op of ops) {
    if (op.op === "volumeResize") {
      // Grown by hand meanwhile? Qubes refuses to shrink: only grow when still smaller.
      const now = Number((await step(who(vm), "reading the private volume", () => admin.volumeInfo(vm, "private"))).size);
      if (now >= op.bytes) continue;
    }
    await step(who(vm), describeOp(op), async () => {
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
  if (ops.length > 0) forgetVm(vm);
}

/** Tags this resource manages: the site's, and the owner marker. */
const managedTags = (p: { tags: string[]; ownerTag?: string }): string[] => (p.ownerTag ? [...p.tags, p.ownerTag] : p.tags);

const stateOf = (p: VmInputs | VmOutputs, bytes?: number): VmState => ({
  label: p.label, template: p.template, netvm: p.netvm, providesNetwork: p.providesNetwork, defaultDispvm: p.defaultDispvm,
  templateForDispvms: p.templateForDispvms, memory: p.memory, maxmem: p.maxmem, vcpus: p.vcpus, virtMode: p.virtMode,
  features: p.features, tags: managedTags(p), privateVolumeBytes: bytes,
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

/**
 * The VM as dom0 has it, limited to what `p` manages: properties, the tags and features it names
 * (features are read only when it manages some). The private volume is not read: a volume only
 * grows, so the VM `p` recorded (same uuid) never has less than was applied.
 */
async function liveState(admin: QubesAdmin, live: LiveVm, p: VmInputs | VmOutputs, bytes?: number): Promise<VmState> {
  const seen: Partial<Record<PropKey, PropValue>> = {};
  for (const { key, prop, kind } of PROPS) {
    const v = live.props[prop];
    seen[key] = v === undefined ? undefined : decode(kind, v);
  }
  // A template-based VM always has a template; when the input left it unset, keep it unmanaged.
  if (p.template === undefined) seen.template = undefined;
  else if (seen.template === undefined && live.props.template) seen.template = live.props.template.value;
  if (live.props.label) seen.label = live.props.label.value;
  const names = Object.keys(p.features);
  const features: Record<string, string> = {};
  if (names.length > 0) {
    // Read once per process, like the properties (forgotten with them when this process changes the VM).
    const present = await runCache(`vm:${p.name}:features`, () => step(who(p.name), "listing features", () => admin.featureList(p.name)));
    for (const f of names) {
      if (present.includes(f)) features[f] = await runCache(`vm:${p.name}:feature:${f}`, () => step(who(p.name), `reading feature ${f}`, () => admin.featureGet(p.name, f)));
    }
  }
  const tagsNow = new Set(live.tags);
  return { ...(seen as Pick<VmState, PropKey>), features, tags: managedTags(p).filter((t) => tagsNow.has(t)), privateVolumeBytes: bytes };
}

/** `netvm is sys-firewall (recorded sys-whonix); tag qbi-site missing`: how dom0 differs from `rec`. */
export function describeDrift(live: VmState, rec: VmState): string {
  const out: string[] = [];
  for (const { key, prop } of PROPS) {
    if (key === "template" && rec.template === undefined) continue;
    if (live[key] !== rec[key]) out.push(`${prop} is ${show(live[key] as PropValue)} (recorded: ${show(rec[key] as PropValue)})`);
  }
  for (const [f, v] of Object.entries(rec.features)) if (live.features[f] !== v) out.push(`feature ${f} is ${live.features[f] ?? "unset"} (recorded: ${v})`);
  for (const t of rec.tags) if (!live.tags.includes(t)) out.push(`tag ${t} missing`);
  return out.join("; ");
}

/** How dom0 differs from the recorded outputs `o`: `gone`, `replaced` (another uuid), or the differences. */
async function compare(admin: QubesAdmin, o: VmOutputs): Promise<{ live: LiveVm | null; kind: "gone" | "replaced" | "same" | "drifted"; text: string; state?: VmState }> {
  const live = await liveVm(admin, o.name);
  if (!live) return { live, kind: "gone", text: `${o.name} does not exist in dom0 any more (removed outside Pulumi): it will be created again` };
  if (o.uuid !== undefined && live.uuid !== o.uuid) {
    return { live, kind: "replaced", text: `${o.name} in dom0 is another VM (uuid ${live.uuid}, recorded ${o.uuid}): it was removed and created again outside Pulumi` };
  }
  const state = await liveState(admin, live, o, o.privateVolumeBytes);
  const text = describeDrift(state, stateOf(o, o.privateVolumeBytes));
  return { live, kind: text ? "drifted" : "same", text, state };
}

/** VMs named by the inputs (template, netvm, default_dispvm) must exist in dom0: checked without starting any. */
async function missingReferences(admin: QubesAdmin, p: VmInputs, raw: Record<string, unknown>): Promise<{ property: string; reason: string }[]> {
  const out: { property: string; reason: string }[] = [];
  const refs: [string, string | null | undefined][] = [["template", p.template], ["netvm", p.netvm], ["defaultDispvm", p.defaultDispvm]];
  for (const [key, value] of refs) {
    if (typeof value !== "string" || hasUnknown(raw[key])) continue;
    const found = await listedVm(admin, value);
    const from = p.configKeys?.[key] ? ` (set by ${p.configKeys[key]})` : "";
    if (!found) out.push({ property: key, reason: `${key}: ${value} does not exist in dom0${from}: create it first or name an existing VM` });
    else if (key === "template" && found.klass !== "TemplateVM" && p.klass !== "DispVM") {
      out.push({ property: key, reason: `${key}: ${value} is a ${found.klass}, not a TemplateVM${from}` });
    }
  }
  return out;
}

export async function check(olds: unknown, news: unknown): Promise<CheckResult> {
  const base = checkWith(vmInputs, news);
  if (base.failures) return base;
  const raw = (news ?? {}) as Record<string, unknown>;
  const parsed = vmInputs.safeParse(raw);
  if (!parsed.success) return base;
  const p = withoutAdmin(parsed.data) as VmInputs;
  const admin = runAdmin(raw.admin);
  const failures = await missingReferences(admin, p, raw);
  if (failures.length > 0) return { inputs: base.inputs, failures };
  // An existing VM: how dom0 differs from what the state recorded, shown in the preview. Its uuid
  // goes into the inputs too: a preview then knows it (outputs of an update are the inputs until it
  // runs), so what is placed in the VM is replaced only when the VM really is another one.
  const o = vmOutputs.safeParse(olds);
  let found: { drift: string; uuid?: string } = { drift: "" };
  if (o.success && o.data.name === p.name && !hasUnknown(raw)) {
    const now = await compare(admin, o.data);
    found = { drift: now.text, ...(now.live ? { uuid: now.live.uuid } : {}) };
  }
  return { inputs: { ...(hasUnknown(raw) ? withoutAdmin(raw) : p), ...found } };
}

export async function diff(_id: string, oldsRaw: unknown, newsRaw: unknown): Promise<DiffResult> {
  const o = parseProps(vmOutputs, oldsRaw, KIND);
  if (hasUnknown(newsRaw)) return { changes: true };
  const n = parseProps(vmInputs, newsRaw, KIND);
  const replaces = (["name", "klass"] as const).filter((k) => o[k] !== n[k]);
  if (replaces.length > 0) return { changes: true, replaces, deleteBeforeReplace: true };
  const cur = o.privateVolumeBytes;
  if (n.privateVolumeSize !== undefined && cur !== undefined && n.privateVolumeSize < cur) {
    throw new ProviderError(who(n.name), "planning", undefined, `privateVolumeSize ${formatSize(n.privateVolumeSize)} is smaller than the private volume's current size ${formatSize(cur)}; Qubes volumes only grow: set at least ${formatSize(cur)}, or leave privateVolumeSize unset`);
  }
  const now = await compare(runAdmin(o.admin), o);
  if (now.kind === "gone" || now.kind === "replaced") return { changes: true, replaces: ["drift"], deleteBeforeReplace: true };
  const planned = planVmUpdate(now.state!, stateOf(n, cur), n.privateVolumeSize);
  return { changes: planned.length > 0 || holdsConnection(oldsRaw) || o.ownerTag !== n.ownerTag };
}

/** The feature on dom0 recording that a creation of `name` by this stack is under way. */
export const intentFeature = (name: string): string => `qbi-creating-${name}`;

/** The exact commands that settle a same-named VM the stack did not create. */
function recoveryCommands(name: string, ownerTag: string): string {
  const conn = runConnection();
  if (conn.transport === "sim") {
    const qbi = `QBI_ADMIN='${JSON.stringify(conn)}' bin/qubes-build-infra admin`;
    return `if it is this site's VM: ${qbi} admin.vm.tag.Set ${name} ${ownerTag}; if not: ${qbi} admin.vm.Remove ${name} (after moving its data), then run pulumi up again`;
  }
  return `if it is this site's VM, in dom0: qvm-tags ${name} add ${ownerTag}; if not: qvm-remove ${name} (after moving its data), or rename this site's VM; then run pulumi up again`;
}

/** The owner tag recorded on dom0 by a creation of `name` that was interrupted, if any. */
async function readIntent(admin: QubesAdmin, name: string): Promise<string | undefined> {
  try {
    return await admin.featureGet("dom0", intentFeature(name));
  } catch (e) {
    if (hasQubesCode(e, "feature-not-found")) return undefined;
    throw new ProviderError(who(name), "reading the creation record on dom0", e);
  }
}

/** Adopts an existing VM this stack created (its owner tag, or the creation intent on dom0). */
async function adopt(admin: QubesAdmin, p: VmInputs, live: LiveVm, intended: boolean) {
  if (live.klass !== p.klass) {
    throw new ProviderError(who(p.name), "adopting the VM left by an interrupted run", undefined, `it is a ${live.klass}, the site wants a ${p.klass}: remove it (qvm-remove ${p.name}) and run pulumi up again`);
  }
  const state = await liveState(admin, live, p);
  const bytes = Number((await step(who(p.name), "reading the private volume", () => admin.volumeInfo(p.name, "private"))).size);
  await runOps(admin, p.name, planVmUpdate({ ...state, privateVolumeBytes: bytes }, stateOf(p), p.privateVolumeSize));
  if (intended) await step(who(p.name), "clearing the creation record on dom0", () => admin.featureRemove("dom0", intentFeature(p.name)));
  return { uuid: live.uuid, bytes: Math.max(bytes, p.privateVolumeSize ?? 0) };
}

export async function create(inputs: unknown) {
  const p = withoutAdmin(parseProps(vmInputs, inputs, KIND)) as VmInputs;
  const admin = runAdmin((inputs as { admin?: unknown } | undefined)?.admin);
  forgetVm(p.name);
  const existing = await liveVm(admin, p.name);
  if (existing) {
    const intent = p.ownerTag === undefined ? undefined : await readIntent(admin, p.name);
    const owned = p.ownerTag !== undefined && (existing.tags.includes(p.ownerTag) || intent === p.ownerTag);
    if (!owned) {
      const how = p.ownerTag ? `: ${recoveryCommands(p.name, p.ownerTag)}` : "";
      throw new ProviderError(who(p.name), "creating the VM", undefined, `a VM named ${p.name} already exists and this stack did not create it (it lacks the tag ${p.ownerTag ?? "qbi-owner-…"})${how}`);
    }
    const a = await adopt(admin, p, existing, intent === p.ownerTag);
    return { id: p.name, outs: { ...p, drift: "", privateVolumeBytes: a.bytes, uuid: a.uuid } };
  }
  // The intent goes on dom0 first: a run killed between the creation and the owner tag still
  // leaves a VM the next run recognises as its own.
  if (p.ownerTag) await step(who(p.name), "recording the creation on dom0", () => admin.featureSet("dom0", intentFeature(p.name), p.ownerTag!));
  await step(who(p.name), `creating the ${p.klass}${p.template ? ` from ${p.template}` : ""}`, () => admin.vmCreate(p.klass, p.name, p.label, p.template));
  vmListChanged(p.name);
  try {
    const base: VmState = { label: p.label, template: p.template, features: {}, tags: [] };
    const ops = planVmUpdate(base, stateOf(p), undefined);
    // The owner tag first, then the rest.
    ops.sort((a, b) => Number(b.op === "tagSet" && b.tag === p.ownerTag) - Number(a.op === "tagSet" && a.tag === p.ownerTag));
    await runOps(admin, p.name, ops);
    let bytes = Number((await step(who(p.name), "reading the private volume", () => admin.volumeInfo(p.name, "private"))).size);
    if (p.privateVolumeSize !== undefined && p.privateVolumeSize > bytes) {
      await runOps(admin, p.name, [{ op: "volumeResize", bytes: p.privateVolumeSize }]);
      bytes = p.privateVolumeSize;
    }
    const uuid = (await step(who(p.name), "reading its uuid", () => admin.propertyGet(p.name, "uuid"))).value;
    if (p.ownerTag) await step(who(p.name), "clearing the creation record on dom0", () => admin.featureRemove("dom0", intentFeature(p.name)));
    return { id: p.name, outs: { ...p, drift: "", privateVolumeBytes: bytes, uuid } };
  } catch (e) {
    // Never leave a VM that the state does not know about.
    try {
      await admin.vmRemove(p.name);
      vmListChanged(p.name);
      if (p.ownerTag) await admin.featureRemove("dom0", intentFeature(p.name));
    } catch (e2) {
      throw ProviderError.amend(e, who(p.name), "creating the VM", `; removing the half-created VM failed too (${describeError(e2)}): remove it by hand (qvm-remove ${p.name})`);
    }
    throw ProviderError.amend(e, who(p.name), "creating the VM", ` (the half-created VM ${p.name} was removed again)`);
  }
}

export async function update(_id: string, oldsRaw: unknown, newsRaw: unknown) {
  const o = parseProps(vmOutputs, oldsRaw, KIND);
  const n = withoutAdmin(parseProps(vmInputs, newsRaw, KIND)) as VmInputs;
  const admin = runAdmin(o.admin);
  const cur = o.privateVolumeBytes;
  const live = await liveVm(admin, n.name);
  if (!live) throw new ProviderError(who(n.name), "updating", undefined, `${n.name} does not exist in dom0 any more: run pulumi up again (it will be created)`);
  // What dom0 has of everything the old or the new inputs manage; others' tags and features stay untouched.
  const both = { ...n, features: { ...o.features, ...n.features }, tags: [...new Set([...managedTags(o), ...managedTags(n)])], ownerTag: undefined };
  const have = await liveState(admin, live, both, cur);
  await runOps(admin, n.name, planVmUpdate(have, stateOf(n, cur), n.privateVolumeSize));
  const bytes = n.privateVolumeSize !== undefined && (cur === undefined || n.privateVolumeSize > cur) ? n.privateVolumeSize : cur;
  return { outs: { ...n, privateVolumeBytes: bytes, uuid: live.uuid } };
}

/** What is really there, limited to what this resource manages. */
export async function read(id: string, raw: unknown) {
  const o = parseProps(vmOutputs, raw, KIND);
  const admin = runAdmin(o.admin);
  const now = await compare(admin, o);
  if (now.kind === "gone" || now.kind === "replaced") return { id: "", props: {} };
  const s = now.state!;
  const seen = Object.fromEntries(PROPS.map(({ key }) => [key, s[key]]).filter(([, v]) => v !== undefined));
  const real = {
    name: o.name, klass: now.live!.klass as VmInputs["klass"], ...seen,
    features: s.features, tags: s.tags.filter((t) => t !== o.ownerTag),
    ...(o.ownerTag !== undefined && s.tags.includes(o.ownerTag) ? { ownerTag: o.ownerTag } : {}),
    ...(o.privateVolumeSize !== undefined ? { privateVolumeSize: o.privateVolumeSize } : {}),
    ...(o.configKeys !== undefined ? { configKeys: o.configKeys } : {}),
    drift: "",
  };
  // No `undefined` may reach the engine: protobuf's Struct cannot carry it (refresh would fail).
  const out = { ...real, ...(o.privateVolumeBytes !== undefined ? { privateVolumeBytes: o.privateVolumeBytes } : {}), uuid: now.live!.uuid, ...keptAdmin(o) };
  // The inputs as `check` records them for an existing VM (its uuid included): the next run's
  // inputs then equal these, and the engine need not rewrite the state for every VM after a refresh.
  return { id, props: out, inputs: { ...real, uuid: now.live!.uuid } };
}

/** Halts the VM (shutdown, then kill after 60 s) when it runs: Qubes removes only halted VMs. */
async function halt(admin: QubesAdmin, name: string, state: string): Promise<void> {
  if (state === "Halted") return;
  await step(who(name), "shutting it down before removal", () => admin.vmShutdown(name));
  const deadline = Date.now() + 60_000;
  for (;;) {
    const e = (await step(who(name), "waiting for it to halt", () => admin.vmList())).find((v) => v.name === name);
    if (!e || e.state === "Halted") return;
    if (Date.now() > deadline) {
      await step(who(name), "killing it after 60 s of shutdown", () => admin.vmKill(name));
      return;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** Removes the VM, only if it is still the one this resource created (same uuid). */
async function delete_(_id: string, raw: unknown): Promise<void> {
  const o = parseProps(vmOutputs, raw, KIND);
  const admin = runAdmin(o.admin);
  forgetVm(o.name);
  const live = await liveVm(admin, o.name);
  if (!live || (o.uuid !== undefined && live.uuid !== o.uuid)) return;
  const entry = (await step(who(o.name), "listing VMs", () => admin.vmList())).find((v) => v.name === o.name);
  if (!entry) return;
  await halt(admin, o.name, entry.state);
  try {
    await admin.vmRemove(o.name);
    vmListChanged(o.name);
  } catch (e) {
    if (isVmNotFound(e)) return;
    throw new ProviderError(who(o.name), "removing it", e, `cannot remove it: ${describeError(e)}. Qubes refuses to remove a VM that other VMs use (as template, netvm or default_dispvm) or that is still running: change those first`);
  }
}
export { delete_ as delete };
