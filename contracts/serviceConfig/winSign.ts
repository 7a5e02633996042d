/**
 * qubesbuilder.WinSign's configuration (`win-sign.json` in a Windows keys VM): written by the site,
 * read by services/win-sign.ts.
 */
import { z } from "zod";
import { domUVmName as vmName } from "../vmName";

export const WinSignConfig = z
  .object({
    /** Build VMs that may use these services (QREXEC_REMOTE_DOMAIN). */
    clients: z.array(vmName).min(1),
    /** Key names (as sent, `__` for a space) that may be used. */
    keys: z.array(z.string().regex(/^[A-Za-z0-9_]{1,64}$/)).min(1),
    /** Where `<name>.key` and `<name>.crt` live (the name with spaces). */
    keysDir: z.string().startsWith("/").default("/home/user/win-sign/keys"),
    self: vmName,
    /** The logs VM's note verifier key. */
    verifier: z.string().regex(/^[^\s+]+\+[0-9a-f]{8}\+[A-Za-z0-9+/]+=*$/, "a note verifier key"),
    entryTtlSeconds: z.number().int().min(1).max(3600).default(300),
    /** builderv2 refuses inputs of 100 MiB or more; so do we, with the limit stated. */
    maxInputBytes: z.number().int().positive().max(1024 * 1024 * 1024).default(100 * 1024 * 1024 - 1),
    tlogProgram: z.string().min(1).default("qbi-tlog"),
    osslsigncode: z.string().min(1).default("osslsigncode"),
  })
  .strict();
export type WinSignConfig = z.infer<typeof WinSignConfig>;
