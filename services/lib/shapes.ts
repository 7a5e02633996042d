/**
 * zod schemas of the values services read from configs and callers. Kept apart from names.ts,
 * which stays zod-free for the build VM's small gpg client.
 */
import { z } from "zod";
import { vmName as qubeName } from "../../contracts/vmName";

/** A qube a service deals with (zod form of names.ts isDomUName): Qubes' name rule, and never dom0. */
export const vmName = qubeName.refine((s) => s !== "dom0", "dom0 is never a qube a service deals with");

/** A 40-hex OpenPGP v4 fingerprint, normalised to upper case. */
export const fingerprint = z
  .string()
  .regex(/^[0-9A-Fa-f]{40}$/, "expected a 40-hex fingerprint")
  .transform((s) => s.toUpperCase());
