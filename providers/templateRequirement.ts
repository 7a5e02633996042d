/**
 * `TemplateRequirement`: an assertion that a template carries the commands the site's services
 * run on (`node`, `gpg`, `git`, `nginx`, `socat`, ...). A preview starts no VM: it only checks that
 * the template exists (the VM list). `up` runs `command -v` for each in the template (starting it
 * if needed, and shutting it down again) and fails with the missing commands and the packages to
 * install, before anything that depends on it; refresh re-checks a running template (the `missing`
 * output; the next preview then shows the requirement as an update, which `up` checks again).
 */
import * as pulumi from "@pulumi/pulumi";
import type { AdminConnection } from "./connection";
import { diskProvider } from "./dynamic";

/** Inputs of a `TemplateRequirement`. */
export interface TemplateRequirementArgs {
  /** How to reach the Qubes Admin API (ignored by diffs). */
  admin: pulumi.Input<AdminConnection>;
  /** The template (or any qube) that must provide the commands. */
  vm: pulumi.Input<string>;
  /** Command names looked up with `command -v`. */
  commands: pulumi.Input<pulumi.Input<string>[]>;
  /** Who needs them (shown in the error). */
  purpose?: pulumi.Input<string>;
}

/** Commands a template must provide. */
export class TemplateRequirement extends pulumi.dynamic.Resource {
  /** Commands found missing by the last check or refresh (empty after a successful `up`). */
  declare readonly missing: pulumi.Output<string[]>;

  constructor(name: string, args: TemplateRequirementArgs, opts?: pulumi.CustomResourceOptions) {
    super(diskProvider("providers/impl/templateRequirement.ts"), name, { purpose: "", ...args, missing: undefined }, opts, "qubes", "TemplateRequirement");
  }
}
