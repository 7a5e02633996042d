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
import { diskProvider } from "./dynamic";

/** Inputs of a `LogsRepository`. */
export interface LogsRepositoryArgs {
  /** The logs VM. */
  vm: pulumi.Input<string>;
  /** The uuid of the VM (its QubesVm's `uuid` output): the resource is replaced with the VM, and gone with it. */
  vmUuid?: pulumi.Input<string>;
  /** Working copy path in the VM. */
  dir: pulumi.Input<string>;
  /** Git URL of the remote (ssh in production, file:// in qubes-sim). */
  remote: pulumi.Input<string>;
  branch: pulumi.Input<string>;
  /** Fingerprint of the logs key: signs commits, and must have signed the remote head. */
  signingKey: pulumi.Input<string>;
  /**
   * Logs keys the site used before (fingerprint → armored public key): a remote head signed by one
   * of them is taken over, and a handover commit signed by `signingKey` is pushed on top. Without
   * it, a head signed by any other key fails the update with the command that sets it.
   */
  previousKeys?: pulumi.Input<Record<string, string>>;
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
