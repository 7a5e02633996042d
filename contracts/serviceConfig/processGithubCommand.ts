/**
 * qubesbuilder.ProcessGithubCommand's configuration (`process-github-command.json` in a build VM):
 * written by the site, read by services/process-github-command.ts.
 */
import { z } from "zod";
import { fingerprintAnyCase as fingerprint } from "../fingerprint";

const ListOrAll = z.union([z.literal("_all_"), z.array(z.string().min(1))]);

/**
 * How an accepted command runs. An argv template alone: once per builder of the release, under
 * `{dir}/builder.lock`. Or `scope: "builder"` with its own `lock` (v2: github-command.py action,
 * under the qubes-builderv2 lock), or `scope: "vm"`: once, without a lock of ours (v1
 * builder-github's handlers take each builder's lock themselves).
 */
const Action = z.union([
  z.array(z.string().min(1)).min(1),
  z
    .object({
      command: z.array(z.string().min(1)).min(1),
      scope: z.enum(["builder", "vm"]).default("builder"),
      lock: z.string().min(1).optional(),
      env: z.record(z.string().regex(/^[A-Z_][A-Z0-9_]*$/), z.string()).default({}),
    })
    .strict(),
]);
export const COMMAND_NAMES = ["Upload", "Build-template", "Upload-component", "Upload-template", "Build-iso"] as const;
export type CommandName = (typeof COMMAND_NAMES)[number];

export const ProcessCommandConfig = z
  .object({
    /** Armored public keys allowed to sign commands: the whole trust set (no keys from a builder's repository). */
    trustedKeysFile: z.string().startsWith("/"),
    maintainers: z.record(
      fingerprint,
      z
        .object({
          components: ListOrAll.default([]),
          releases: ListOrAll.default("_all_"),
          templates: ListOrAll.default([]),
          distributions: ListOrAll.default("_all_"),
          iso: z.boolean().default(false),
        })
        .strict(),
    ),
    /** How each command runs (see `Action`); a command without one is refused. */
    actions: z.partialRecord(z.enum(COMMAND_NAMES), Action).default({}),
    notify: z.array(z.string().min(1)).min(1).optional(),
    buildersList: z.string().startsWith("/").optional(),
    logDir: z.string().startsWith("/").optional(),
    maxSignatureAgeSeconds: z.number().int().positive().default(14 * 24 * 3600),
    timestampPastSeconds: z.number().int().positive().default(3600),
    timestampFutureSeconds: z.number().int().positive().default(300),
    flockProgram: z.string().default("flock"),
  })
  .strict();
