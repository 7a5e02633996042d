/**
 * local.ConnectSSH's configuration (`connect-ssh.json` in the net VM): written by the site, read by
 * services/connect-ssh.ts. Defined once here so a field the site writes is checked against what the
 * service reads.
 */
import { z } from "zod";

/** An upload host's name as the build VM asks for it (the qrexec argument). */
export const HOST_RE = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,62})(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}))*$/;

export const ConnectSshConfig = z
  .object({
    hosts: z.record(
      z.string().regex(HOST_RE).max(253),
      z.object({ address: z.string().min(1).optional(), port: z.number().int().min(1).max(65535).optional() }).strict(),
    ),
    connectTimeoutMs: z.number().int().positive().default(15000),
  })
  .strict();
