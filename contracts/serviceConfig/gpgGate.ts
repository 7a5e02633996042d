/**
 * qubes.Gpg's gate configuration (`gpg-gate.json` in a keys VM): written by the site, read by
 * services/gpg-gate.ts.
 */
import { z } from "zod";
import { fingerprintAnyCase as fingerprint } from "../fingerprint";
import { domUVmName as vmName } from "../vmName";

export const GpgGateConfig = z
  .object({
    /** Build VMs allowed to ask for signatures (QREXEC_REMOTE_DOMAIN). */
    clients: z.array(vmName).min(1),
    /** GNUPGHOME of the keys VM's keyring (default: gpg's default, ~/.gnupg). */
    gnupgHome: z.string().startsWith("/").optional(),
    /** Signing keys a client may select with -u (and whose public keys it may export). */
    keys: z.array(fingerprint).min(1),
    /** Key used when the client gives no -u; logged requests then name `default`. */
    defaultKey: fingerprint.optional(),
    maxInputBytes: z.number().int().positive().default(1024 * 1024 * 1024),
    gpgProgram: z.string().startsWith("/").optional(),
    /** How long the data may wait for its logged entry (the client logs and sends at once). */
    entryWaitSeconds: z.number().int().min(0).max(600).default(60),
  })
  .strict();
