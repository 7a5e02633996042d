/**
 * `LogsRepository`: the logs VM's working copy of the public build-logs repository.
 *
 * The formula let Salt update the checkout before checking who signed it. Here the remote
 * head is verified against the logs key *before* anything is checked out, failing closed; an
 * empty remote is bootstrapped with a first commit signed by that key. A head signed by another
 * key is refused unless the operator names that key as the site's previous one (`previousKeys`).
 * Commit signing and the bot identity are configured in the repository itself. Deleting the resource leaves the working
 * copy alone: it may hold logs that are not pushed yet.
 */
import * as pulumi from "@pulumi/pulumi";
import type { z } from "zod";
import { diskProvider } from "./dynamic";
import type { repoInputs } from "./impl/logsRepository";
import type { ArgsOf } from "./inputs";

/** Inputs of a `LogsRepository` (providers/impl/logsRepository.ts `repoInputs`). */
export type LogsRepositoryArgs = ArgsOf<z.input<typeof repoInputs>>;

/** The logs VM's verified clone of the build-logs repository. */
export class LogsRepository extends pulumi.dynamic.Resource {
  /** The head commit found (or made) when the clone was set up. */
  declare readonly head: pulumi.Output<string>;

  constructor(name: string, args: LogsRepositoryArgs, opts?: pulumi.CustomResourceOptions) {
    super(diskProvider("providers/impl/logsRepository.ts"), name, { ...args, head: undefined }, opts, "qubes", "LogsRepository");
  }
}
