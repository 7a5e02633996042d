/**
 * Resources that live inside a VM (files, services, ssh config, keys, the logs clone) are tied to
 * that VM's identity: the `vmUuid` input, taken from the QubesVm's `uuid` output. When the VM is
 * replaced (its uuid changes, or is not known yet because the replacement is planned), they are
 * replaced with it; when it is gone, they are gone too (refresh drops them, delete has nothing
 * to do), decided from dom0's list of VMs, never by starting the VM.
 */
import { z } from "zod";
import type { QubesAdmin } from "../../admin/api";
import { runAdmin } from "./admin";
import { CheckResult, checkWith, DiffResult, isVmNotFound, UNKNOWN, withoutAdmin } from "./common";
import { listedVm, vmPresence } from "./dom0";

/** The identity input of a resource in a VM (absent for VMs the site does not create). */
export const vmIdentity = {
  /** The uuid of the VM (its QubesVm's `uuid` output): the resource is replaced with the VM, and gone with it. */
  vmUuid: z.string().min(1).optional(),
};

/** The diff when the VM changed identity: replace (the old resource went with the old VM). */
export function vmReplaced(olds: { vmUuid?: string }, newsRaw: unknown): DiffResult | undefined {
  const n = (newsRaw ?? {}) as Record<string, unknown>;
  if (olds.vmUuid === undefined) return undefined;
  if (n.vmUuid === UNKNOWN || (typeof n.vmUuid === "string" && n.vmUuid !== olds.vmUuid)) {
    return { changes: true, replaces: ["vmUuid"], deleteBeforeReplace: true };
  }
  return undefined;
}

/** What `read` and `delete` get when the VM holding the resource is gone. */
export const GONE = Symbol("gone");

/**
 * Runs `fn` (a read or a removal inside the VM) unless the VM is gone; a failure because the VM
 * vanished meanwhile is GONE too, any other failure is thrown.
 */
export async function inVm<T>(admin: QubesAdmin, where: { vm: string; vmUuid?: string }, fn: () => Promise<T>): Promise<T | typeof GONE> {
  if ((await vmPresence(admin, where.vm, where.vmUuid)) === "gone") return GONE;
  try {
    return await fn();
  } catch (e) {
    if (isVmNotFound(e)) return GONE;
    throw e;
  }
}

/** Inputs naming VMs the site does not create: which config key names each (checked to exist). */
export const externalVms = {
  /** For VMs the site does not create: input name → the stack config key naming it, e.g. `{ vm: "qubes-build-infra:netvm" }` (the VM must exist). */
  configKeys: z.record(z.string(), z.string()).optional(),
};

/**
 * Check failures for the inputs listed in `configKeys` that name a VM dom0 does not have (from
 * dom0's list of VMs: nothing is started).
 */
export async function missingExternalVms(admin: QubesAdmin, p: Record<string, unknown> & { configKeys?: Record<string, string> }) {
  const out: { property: string; reason: string }[] = [];
  for (const [input, key] of Object.entries(p.configKeys ?? {})) {
    const name = p[input];
    if (typeof name !== "string" || name === UNKNOWN) continue;
    if (!(await listedVm(admin, name))) out.push({ property: input, reason: `${input}: ${name} does not exist in dom0 (set by ${key}): create it first or name an existing VM` });
  }
  return out;
}

/** `check` of a resource placed in a VM: the schema, then the VMs named by config must exist. */
export async function checkPlaced<S extends z.ZodType>(schema: S, news: unknown): Promise<CheckResult> {
  const base = checkWith(schema, news, (p) => withoutAdmin(p as { admin?: unknown }));
  const ins = base.inputs as Record<string, unknown> & { configKeys?: Record<string, string> };
  if (base.failures || !ins.configKeys) return base;
  const failures = await missingExternalVms(runAdmin((news as { admin?: unknown } | undefined)?.admin), ins);
  return failures.length > 0 ? { inputs: base.inputs, failures } : base;
}
