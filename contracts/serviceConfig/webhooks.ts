/**
 * The webhook receiver's configuration (`webhooks.json` in the net VM): written by the site, read
 * by services/webhooks.ts.
 */
import { z } from "zod";

const MiB = 1024 * 1024;

export const WebhooksConfig = z
  .object({
    listen: z.union([
      z.object({ socket: z.string().startsWith("/") }).strict(),
      z.object({ host: z.string().default("127.0.0.1"), port: z.number().int().min(0).max(65535) }).strict(),
    ]),
    services: z.array(z.enum(["trigger_build", "process_comment"])).default(["trigger_build", "process_comment"]),
    maxBodyBytes: z.number().int().positive().default(MiB),
    buildVmsFile: z.string().startsWith("/").optional(),
    /** Deliveries remembered (ids and body hashes) against replays. */
    deliveryCacheSize: z.number().int().positive().default(10000),
    /** Calls waiting per build VM (besides the one running); more are dropped for that VM only. */
    queueLimit: z.number().int().positive().default(200),
    callTimeoutMs: z.number().int().positive().default(60000),
    /** Bytes of bodies not yet authenticated held at once, all requests together (default: max(8 MiB, maxBodyBytes)). */
    unauthenticatedBudgetBytes: z.number().int().positive().optional(),
    maxUnauthenticatedRequests: z.number().int().positive().default(32),
    /** Time to receive a body once its headers are in. */
    bodyTimeoutMs: z.number().int().positive().default(10000),
  })
  .strict()
  .superRefine((c, ctx) => {
    if (c.unauthenticatedBudgetBytes !== undefined && c.unauthenticatedBudgetBytes < c.maxBodyBytes) {
      ctx.addIssue({ code: "custom", path: ["unauthenticatedBudgetBytes"], message: `must be at least maxBodyBytes (${c.maxBodyBytes})` });
    }
  })
  .transform((c) => ({ ...c, unauthenticatedBudgetBytes: c.unauthenticatedBudgetBytes ?? Math.max(8 * MiB, c.maxBodyBytes) }));
export type WebhooksConfig = z.output<typeof WebhooksConfig>;
