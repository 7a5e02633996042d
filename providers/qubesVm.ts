/**
 * `QubesVm`: a qube and the properties, features, tags and private-volume size the site sets.
 *
 * Only what the inputs name is managed: features and tags outside `features`/`tags` (e.g. the
 * `created-by-dom0` tag Qubes adds) are left alone. An optional property left unset means
 * "Qubes' default" (an explicit value set by hand is reset by the next `up`), except `template`,
 * which when unset is whatever Qubes chose at creation. Changing `name` or `klass` replaces the
 * qube (the old one is removed first). The private volume only grows: a smaller size fails the
 * preview. Deleting removes the qube, only if it is still the one created (same uuid); Qubes
 * refuses while it runs or is used by another qube.
 *
 * Every preview and `up` compares the qube with dom0 (its properties, the tags and features named
 * here: one Admin read per qube, no qube started) and shows the difference as `drift`; `up` puts
 * the inputs back. A qube removed by hand is created again, with everything placed in it (those
 * resources take the qube's `uuid` as their `vmUuid` input and are replaced with it).
 *
 * Creation is idempotent: the qube carries the tag `ownerTag` (the stack that created it; set by
 * default from the project and stack names), and the creation is recorded on dom0 (feature
 * `qbi-creating-<name>`) before it starts. A run killed during a creation leaves a qube the next
 * `up` adopts; a same-named qube without the tag is refused with the commands that settle it.
 */
import * as pulumi from "@pulumi/pulumi";
import type { z } from "zod";
import type { CreatableVmClass } from "../contracts/vm";
import { diskProvider } from "./dynamic";
import type { vmInputs } from "./impl/qubesVm";
import type { ArgsOf } from "./inputs";

/** The owner tag of a stack: `qbi-owner-<project>-<stack>` in the characters Qubes allows in tags. */
export function ownerTagFor(project: string, stack: string): string {
  return `qbi-owner-${`${project}-${stack}`.replace(/[^A-Za-z0-9_-]/g, "_")}`;
}

/** Qube classes this resource creates (every class but dom0's). */
export type QubesVmClass = CreatableVmClass;

/** Inputs of a `QubesVm` (providers/impl/qubesVm.ts `vmInputs`), but `drift` and `uuid`, which check computes. */
export type QubesVmArgs = ArgsOf<Omit<z.input<typeof vmInputs>, "drift" | "uuid">>;

/** A qube. */
export class QubesVm extends pulumi.dynamic.Resource {
  declare readonly name: pulumi.Output<string>;
  declare readonly klass: pulumi.Output<QubesVmClass>;
  declare readonly template: pulumi.Output<string | undefined>;
  declare readonly label: pulumi.Output<string>;
  declare readonly netvm: pulumi.Output<string | null | undefined>;
  declare readonly features: pulumi.Output<Record<string, string>>;
  declare readonly tags: pulumi.Output<string[]>;
  /** The requested private-volume size, in bytes, as applied. */
  declare readonly privateVolumeSize: pulumi.Output<number | undefined>;
  /** The private volume's size in bytes as last applied. */
  declare readonly privateVolumeBytes: pulumi.Output<number>;
  /** The qube's uuid: its identity. Resources placed in the qube take it as their `vmUuid`. */
  declare readonly uuid: pulumi.Output<string>;
  /** How dom0 differed from the state when the preview compared them (empty when it did not). */
  declare readonly drift: pulumi.Output<string>;

  constructor(name: string, args: QubesVmArgs, opts?: pulumi.CustomResourceOptions) {
    // The owner tag's default depends on the program's project and stack: set here, not by the schema.
    const ownerTag = args.ownerTag ?? ownerTagFor(pulumi.getProject(), pulumi.getStack());
    super(diskProvider("providers/impl/qubesVm.ts"), name,
      { ...args, ownerTag, privateVolumeBytes: undefined, uuid: undefined, drift: undefined }, opts, "qubes", "QubesVm");
  }
}
