/**
 * zod schemas of the values services read from configs and callers (the shapes themselves are in contracts/). Kept apart from names.ts,
 * which stays zod-free for the build VM's small gpg client.
 */
import { fingerprintAnyCase } from "../../contracts/fingerprint";
import { domUVmName } from "../../contracts/vmName";

/** A qube a service deals with: Qubes' name rule, and never dom0 (defined in contracts/, which service configs use too). */
export const vmName = domUVmName;

/** A 40-hex OpenPGP v4 fingerprint in either case, normalised to upper case (contracts/fingerprint.ts). */
export const fingerprint = fingerprintAnyCase;
