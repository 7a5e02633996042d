/**
 * builder-cleanup's configuration (`builder-cleanup.json` in a build VM): written by the site
 * (site/timers.ts), read by services/builder-cleanup.ts.
 */
import { z } from "zod";

const absDir = z.string().regex(/^\/home\/user\/[^\0]+$/, "a directory under /home/user").refine((p) => !p.split("/").includes(".."), "no '..'");

export const BuilderCleanupConfig = z
  .object({
    /** Directories whose regular files older than `logRetentionDays` are deleted (builder-github's logs). */
    logDirs: z.array(absDir).default([]),
    logRetentionDays: z.number().int().min(1).max(3650),
    /** Directories whose ISO pre-releases (`*pre*.iso`) older than `isoRetentionDays` are deleted. */
    isoDirs: z.array(absDir).default([]),
    isoRetentionDays: z.number().int().min(1).max(3650).default(7),
  })
  .strict();
export type BuilderCleanupConfig = z.infer<typeof BuilderCleanupConfig>;
