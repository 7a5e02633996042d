/**
 * `TemplateRequirement`: an assertion that a template carries the commands the site's services
 * run on (`node`, `gpg`, `git`, `nginx`, `socat`, ...). A preview starts no VM: it only checks that
 * the template is in dom0's list. `up` runs `command -v` for each in the template (starting it if
 * needed, and shutting it down again) and fails with the missing commands and the packages to
 * install, before anything that depends on it; refresh re-checks a running template (the `missing`
 * output), and what it found missing fails the next preview.
 */
import * as pulumi from "@pulumi/pulumi";
import type { z } from "zod";
import { diskProvider } from "./dynamic";
import type { reqInputs } from "./impl/templateRequirement";
import type { ArgsOf } from "./inputs";

/** Inputs of a `TemplateRequirement` (providers/impl/templateRequirement.ts `reqInputs`). */
export type TemplateRequirementArgs = ArgsOf<z.input<typeof reqInputs>>;

/** Commands a template must provide. */
export class TemplateRequirement extends pulumi.dynamic.Resource {
  /** Commands found missing by the last check or refresh (empty after a successful `up`). */
  declare readonly missing: pulumi.Output<string[]>;

  constructor(name: string, args: TemplateRequirementArgs, opts?: pulumi.CustomResourceOptions) {
    super(diskProvider("providers/impl/templateRequirement.ts"), name, { ...args, missing: undefined }, opts, "qubes", "TemplateRequirement");
  }
}
