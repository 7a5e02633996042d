/** Qube names as services accept them (no zod: the build VM's client uses this too). */

export const VM_NAME_RE = /^[A-Za-z][A-Za-z0-9_.-]{0,30}$/;
export function isVmName(s: string): boolean {
  return VM_NAME_RE.test(s) && s !== "dom0" && !s.endsWith(".") && !s.includes("..");
}
