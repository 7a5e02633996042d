/**
 * Names as services accept them. Qubes: Qubes' rule (contracts/names.ts), and never dom0. No service
 * takes the admin VM as its caller, a build VM, a client or its split-gpg domain, so a service that
 * reads a qube's name refuses dom0's. No zod: the build VM's gpg client uses this too.
 */
import { isVmName } from "../../contracts/names";

/** A qube a service deals with: a valid qube name other than dom0's. */
export function isDomUName(s: string): boolean {
  return isVmName(s) && s !== "dom0";
}

/** Component names (TriggerBuild, webhooks): ≤ 64, `[A-Za-z0-9_-]`, no leading `-`. */
export const COMPONENT_RE = /^[A-Za-z0-9_][A-Za-z0-9_-]{0,63}$/;
