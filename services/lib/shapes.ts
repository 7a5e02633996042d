/**
 * zod schemas of the values services read from configs and callers. Kept apart from names.ts,
 * which stays zod-free for the build VM's small gpg client.
 */
import { z } from "zod";
import { domUVmName } from "../../contracts/vmName";

/** A qube a service deals with: Qubes' name rule, and never dom0 (defined in contracts/, which service configs use too). */
export const vmName = domUVmName;

/** A 40-hex OpenPGP v4 fingerprint, normalised to upper case. */
export const fingerprint = z
  .string()
  .regex(/^[0-9A-Fa-f]{40}$/, "expected a 40-hex fingerprint")
  .transform((s) => s.toUpperCase());
