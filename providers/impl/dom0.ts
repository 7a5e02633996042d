/**
 * dom0's view of the VMs, read once per provider process and shared by every resource of the run:
 * which VMs exist with which uuid, class, power state and tags (`internal.GetSystemInfo`, one call
 * for all VMs), and one VM's properties (`admin.vm.property.GetAll`, one call per VM). This is
 * what makes comparing every VM with dom0 on each preview and `up` cost one read per VM without
 * starting any of them.
 *
 * Where `internal.GetSystemInfo` is refused (a management qube's policy may not grant it), the
 * list comes from `admin.vm.List` and tags from `admin.vm.tag.List` per VM.
 */
import type { PropertyValue, QubesAdmin } from "../../admin/api";
import { hasQubesCode } from "../../admin/errors";
import { dropRunCache, runCache } from "./admin";
import { step } from "./common";

/** One VM as dom0 lists it. */
export interface ListedVm {
  name: string;
  klass: string;
  power: string;
  /** Undefined when the list came from admin.vm.List (then read per VM). */
  uuid?: string;
  tags?: string[];
}

/** One VM with its properties: what the comparisons use. */
export interface LiveVm extends ListedVm {
  uuid: string;
  tags: string[];
  props: Record<string, PropertyValue>;
}

const WHO = "dom0";

async function fetchSystem(admin: QubesAdmin): Promise<Map<string, ListedVm>> {
  const out = new Map<string, ListedVm>();
  try {
    const info = await admin.systemInfo();
    for (const [name, d] of Object.entries(info.domains)) out.set(name, { name, klass: d.type, power: d.power_state, uuid: d.uuid, tags: d.tags });
    return out;
  } catch (e) {
    if (!hasQubesCode(e, "permission-denied", "protocol")) throw e;
  }
  for (const v of await step(WHO, "listing VMs", () => admin.vmList())) out.set(v.name, { name: v.name, klass: v.klass, power: v.state, ...(v.uuid ? { uuid: v.uuid } : {}) });
  return out;
}

// This process's own VM creations and removals since the list was read (a miss is then re-read).
// `dirty`: VMs whose tags this process changed after the list was read (read them one by one).
const changes = () => runCache("changes", () => ({ n: 0, listedAt: -1, dirty: new Set<string>() }));

/** Every VM dom0 has, read once per process (again when this process created or removed one since). */
export async function listedVms(admin: QubesAdmin): Promise<Map<string, ListedVm>> {
  const c = changes();
  const p = runCache("system", () => {
    c.listedAt = c.n;
    c.dirty.clear();
    return step(WHO, "reading the list of VMs (internal.GetSystemInfo)", () => fetchSystem(admin));
  });
  try {
    return await p;
  } catch (e) {
    dropRunCache("system");
    throw e;
  }
}

/** The VM as dom0 lists it, or undefined. */
export async function listedVm(admin: QubesAdmin, name: string): Promise<ListedVm | undefined> {
  const hit = (await listedVms(admin)).get(name);
  const c = changes();
  if (hit || c.listedAt === c.n) return hit;
  dropRunCache("system");
  return (await listedVms(admin)).get(name);
}

/** The VM with its properties and tags, or null when it does not exist. Cached per process. */
export async function liveVm(admin: QubesAdmin, name: string): Promise<LiveVm | null> {
  const p = runCache(`vm:${name}`, async (): Promise<LiveVm | null> => {
    const listed = (await listedVms(admin)).get(name);
    let props: Record<string, PropertyValue>;
    try {
      props = await admin.propertyGetAll(name);
    } catch (e) {
      if (hasQubesCode(e, "vm-not-found")) return null;
      throw e;
    }
    const uuid = props.uuid?.value ?? listed?.uuid ?? "";
    // A VM created after the list was read (e.g. by another resource of this run).
    const base = listed ?? (await listedVm(admin, name));
    const fromList = base?.uuid === uuid && !changes().dirty.has(name) ? base.tags : undefined;
    const tags = fromList ?? (await admin.tagList(name));
    return { name, klass: base?.klass ?? "", power: base?.power ?? "", uuid, tags, props };
  });
  try {
    return await step(`QubesVm ${name}`, "reading its properties (admin.vm.property.GetAll)", () => p);
  } catch (e) {
    dropRunCache(`vm:${name}`);
    throw e;
  }
}

/** Forgets what this process read about `name` (after it changed the VM's properties or tags). */
export function forgetVm(name: string): void {
  dropRunCache(`vm:${name}`, true);
  changes().dirty.add(name);
}

/** Notes that this process created or removed `name`: the list is read again on a miss. */
export function vmListChanged(name: string): void {
  dropRunCache(`vm:${name}`, true);
  changes().n++;
}

/**
 * Whether the VM a resource lives in is still the one it was put in: `gone` when no VM has that
 * name, or (when the resource recorded the VM's uuid) the VM of that name is another one.
 */
export async function vmPresence(admin: QubesAdmin, vm: string, uuid: string | undefined): Promise<"present" | "gone"> {
  const listed = await listedVm(admin, vm);
  if (!listed) return "gone";
  if (uuid === undefined) return "present";
  const now = listed.uuid ?? (await liveVm(admin, vm))?.uuid;
  return now === uuid ? "present" : "gone";
}
