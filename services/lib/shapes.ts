/**
 * zod schemas of the values services read from configs and callers (the shapes themselves are in contracts/). Kept apart from names.ts,
 * which stays zod-free for the build VM's small gpg client.
 */
import { fingerprintAnyCase } from "../../contracts/fingerprint";
import { vmName as qubeName } from "../../contracts/vmName";

/** A qube a service deals with (zod form of names.ts isDomUName): Qubes' name rule, and never dom0. */
export const vmName = qubeName.refine((s) => s !== "dom0", "dom0 is never a qube a service deals with");

/** A 40-hex OpenPGP v4 fingerprint in either case, normalised to upper case (contracts/fingerprint.ts). */
export const fingerprint = fingerprintAnyCase;
