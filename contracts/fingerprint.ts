/**
 * An OpenPGP v4 fingerprint: 40 hex digits, upper case. Fingerprints are compared as text (a
 * maintainer list against gpg's VALIDSIG line, a config key against `gpg -u`), so one spelling.
 */
import { z } from "zod";

/** The canonical spelling: exactly 40 upper-case hex digits. */
export const FINGERPRINT_RE = /^[0-9A-F]{40}$/;

const EXPECTED = "a 40-hex-digit upper-case OpenPGP v4 fingerprint";

/** A fingerprint already in the canonical spelling (values the site wrote). */
export const fingerprint = z.string().regex(FINGERPRINT_RE, EXPECTED);

/** A fingerprint in either case, normalised to upper case. */
export const fingerprintAnyCase = z
  .string()
  .transform((s) => s.toUpperCase())
  .pipe(fingerprint);

/** A fingerprint as people paste it from `gpg --fingerprint` (groups of four, spaces, either case), normalised. */
export const fingerprintAsPrinted = z
  .string()
  .transform((s) => s.replace(/\s+/g, "").toUpperCase())
  .pipe(fingerprint);
