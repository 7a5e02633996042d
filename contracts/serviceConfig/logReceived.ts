/**
 * qubesbuilder.LogReceived's configuration (`log-received.json` in a keys VM): written by the site,
 * read by services/log-received.ts.
 */
import { z } from "zod";
import { domUVmName as vmName } from "../vmName";

export const LogReceivedConfig = z
  .object({
    /** Logs VMs allowed to hand over entries (QREXEC_REMOTE_DOMAIN). */
    logsVms: z.array(vmName).min(1),
    /** Build VMs this keys VM signs for; the argument must be one of them. */
    buildVms: z.array(vmName).min(1),
    /** This keys VM's name: entries must name it as signer. */
    self: vmName,
    /** The logs VM's note verifier key (`<origin>+<hash>+<base64>`). */
    verifier: z.string().regex(/^[^\s+]+\+[0-9a-f]{8}\+[A-Za-z0-9+/]+=*$/, "a note verifier key"),
    /** Seconds an accepted entry may be used for its signature. */
    entryTtlSeconds: z.number().int().min(1).max(3600).default(300),
    tlogProgram: z.string().min(1).default("qbi-tlog"),
  })
  .strict();
