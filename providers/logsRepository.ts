/**
 * `LogsRepository`: the logs VM's working copy of the public build-logs repository.
 *
 * The formula let Salt update the checkout before checking who signed it (W15). Here the remote
 * head is verified against the logs key *before* anything is checked out, failing closed; an
 * empty remote is bootstrapped with a first commit signed by that key. Commit signing and the
 * bot identity are configured in the repository itself. Deleting the resource leaves the working
 * copy alone: it may hold logs that are not pushed yet.
 */
import * as pulumi from "@pulumi/pulumi";
import type { AdminConnection } from "./connection";
import { diskProvider } from "./dynamic";

/** Inputs of a `LogsRepository`. */
export interface LogsRepositoryArgs {
  admin: pulumi.Input<AdminConnection>;
  /** The logs VM. */
  vm: pulumi.Input<string>;
  /** Working copy path in the VM. */
  dir: pulumi.Input<string>;
  /** Git URL of the remote (ssh in production, file:// in qubes-sim). */
  remote: pulumi.Input<string>;
  branch: pulumi.Input<string>;
  /** Fingerprint of the logs key: signs commits, and must have signed the remote head. */
  signingKey: pulumi.Input<string>;
  authorName: pulumi.Input<string>;
  authorEmail: pulumi.Input<string>;
}

/** The logs VM's verified clone of the build-logs repository. */
export class LogsRepository extends pulumi.dynamic.Resource {
  /** The head commit found (or made) when the clone was set up. */
  declare readonly head: pulumi.Output<string>;

  constructor(name: string, args: LogsRepositoryArgs, opts?: pulumi.CustomResourceOptions) {
    super(diskProvider("providers/impl/logsRepository.ts"), name, { ...args, head: undefined }, opts, "qubes", "LogsRepository");
  }
}
