/**
 * What a qube's name is: the one rule the site, the providers, the qrexec policy module, the
 * services and qubes-sim all apply. It is Qubes' own: qubes-core-admin checks a name in
 * `validate_name` (qubes/vm/__init__.py, read at commit 1ad5f9b of 2026-07): at most 31
 * characters; a letter first (no digit, '-', '_' or '.'), then letters, digits, '_', '.', '-';
 * not `Domain-0` (Xen's name for dom0), not `none` or `default` (the words the Admin API and
 * qvm-prefs use for "no qube" and "the default"), and not ending in `-dm` (Xen names a qube's
 * device-model stub domain `<name>-dm`). `dom0` itself is a valid name.
 * Pure and zod-free: the build VM's gpg client bundles it (contracts/vmName.ts is the zod schema).
 */

/** The longest name Qubes accepts. */
export const MAX_VM_NAME = 31;

/** The shape and length of a name; `vmNameFault` adds the reserved names and the `-dm` suffix. */
export const VM_NAME_RE = /^[A-Za-z][A-Za-z0-9_.-]{0,30}$/;

/** Why a string is not a qube name, one kind per check of Qubes' (in Qubes' order). */
export type VmNameFault = "empty" | "too-long" | "bad-start" | "bad-characters" | "reserved" | "dm-suffix";

const RESERVED: ReadonlySet<string> = new Set(["Domain-0", "none", "default"]);

/** What is wrong with `name` as a qube name, or undefined when Qubes accepts it. */
export function vmNameFault(name: string): VmNameFault | undefined {
  if (name.length === 0) return "empty";
  if (name.length > MAX_VM_NAME) return "too-long";
  if (!/^[A-Za-z]/.test(name)) return "bad-start";
  if (!VM_NAME_RE.test(name)) return "bad-characters";
  if (RESERVED.has(name)) return "reserved";
  if (name.endsWith("-dm")) return "dm-suffix";
  return undefined;
}

/** True when Qubes accepts `name` as a qube's name. */
export function isVmName(name: string): boolean {
  return vmNameFault(name) === undefined;
}

/** What is wrong with `name`, in words naming it, or undefined when it is a qube name. */
export function vmNameProblem(name: string): string | undefined {
  const q = JSON.stringify(name);
  switch (vmNameFault(name)) {
    case undefined:
      return undefined;
    case "empty":
      return "empty qube name";
    case "too-long":
      return `qube name ${q} is longer than ${MAX_VM_NAME} characters`;
    case "bad-start":
    case "bad-characters":
      return `invalid qube name ${q}: expected a letter followed by letters, digits, '_', '.' or '-'`;
    case "reserved":
      return `qube name cannot be ${q}`;
    case "dm-suffix":
      return `qube name ${q} cannot end with -dm`;
  }
}
