/**
 * qubesbuilder.TriggerBuild's configuration (`trigger-build.json` in a build VM) and how a builder
 * version is started (its entry point, also used by ProcessGithubCommand): written by the site,
 * read by services/trigger-build.ts and services/lib/builders.ts.
 */
import { z } from "zod";

const argv = z.array(z.string().min(1)).min(1);

/** How a builder version is started for a component (TriggerBuild). */
export const EntryPoint = z
  .object({
    /** argv template: {dir} {builderDir} {conf} {release} {component}. */
    command: argv,
    /** The lock file (template) held while it runs. */
    lock: z.string().min(1),
    /** Extra environment (templates), e.g. PYTHONPATH={builderDir}. */
    env: z.record(z.string().regex(/^[A-Z_][A-Z0-9_]*$/), z.string()).default({}),
    /** Prints the builder's components (whitespace-separated) when the site lists none. */
    listComponents: argv.optional(),
    /** Prints each component's git URL, one per line, in the order of `listComponents`. */
    listComponentUrls: argv.optional(),
  })
  .strict();
export type EntryPoint = z.infer<typeof EntryPoint>;

export const TriggerBuildConfig = z
  .object({
    buildersList: z.string().startsWith("/").optional(),
    entryPoints: z.object({ v1: EntryPoint.optional(), v2: EntryPoint.optional() }).strict().default({}),
    logDir: z.string().startsWith("/").optional(),
    flockProgram: z.string().default("flock"),
    /** Builds that may wait for one builder's lock; a trigger beyond them is dropped (and journaled). */
    maxWaitingPerBuilder: z.number().int().min(1).max(1000).default(8),
  })
  .strict();
