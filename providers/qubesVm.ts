/**
 * `QubesVm`: a qube and the properties, features, tags and private-volume size the site sets.
 *
 * Only what the inputs name is managed: features and tags outside `features`/`tags` (e.g. the
 * `created-by-dom0` tag Qubes adds) are left alone. An optional property left unset means
 * "Qubes' default" (an explicit value set by hand is reset by the next `up`), except `template`,
 * which when unset is whatever Qubes chose at creation. Changing `name` or `klass` replaces the
 * qube (the old one is removed first). The private volume only grows: a smaller size fails the
 * preview. Deleting removes the qube; Qubes refuses while it runs or is used by another qube.
 */
import * as pulumi from "@pulumi/pulumi";
import type { AdminConnection } from "./connection";
import { diskProvider } from "./dynamic";

/** Qube classes this resource creates. */
export type QubesVmClass = "AppVM" | "TemplateVM" | "StandaloneVM" | "DispVM";

/** Inputs of a `QubesVm`. */
export interface QubesVmArgs {
  /** How to reach the Qubes Admin API (ignored by diffs). */
  admin: pulumi.Input<AdminConnection>;
  /** The qube's name. Changing it replaces the qube. */
  name: pulumi.Input<string>;
  /** The qube's class. Changing it replaces the qube. */
  klass: pulumi.Input<QubesVmClass>;
  /** Template (AppVM, DispVM): given to Qubes in the create call; unset = Qubes' default template. */
  template?: pulumi.Input<string>;
  /** Label (colour), e.g. `green`, `black`. */
  label: pulumi.Input<string>;
  /** NetVM: a qube name, `null` for no network, unset for Qubes' default netvm. */
  netvm?: pulumi.Input<string | null>;
  /** `provides_network`: whether other qubes may use this one as their netvm. Unset = default (false). */
  providesNetwork?: pulumi.Input<boolean>;
  /** `default_dispvm`: a qube name, `null` for none, unset for Qubes' default. */
  defaultDispvm?: pulumi.Input<string | null>;
  /** `template_for_dispvms`: whether disposables may be started from this qube. Unset = default (false). */
  templateForDispvms?: pulumi.Input<boolean>;
  /** Initial memory in MiB; unset = default. */
  memory?: pulumi.Input<number>;
  /** Maximum memory in MiB (0: no memory balancing); unset = default. */
  maxmem?: pulumi.Input<number>;
  /** Number of virtual CPUs; unset = default. */
  vcpus?: pulumi.Input<number>;
  /** `virt_mode` (`hvm` for Windows); unset = default. */
  virtMode?: pulumi.Input<"hvm" | "pvh" | "pv">;
  /** Features to set (only these are managed; removing one here removes it from the qube). */
  features?: pulumi.Input<Record<string, pulumi.Input<string>>>;
  /** Tags to add (only these are managed; tags Qubes adds itself are left alone). */
  tags?: pulumi.Input<pulumi.Input<string>[]>;
  /** Minimum size of the private volume: bytes, or text like `20GiB`. Grows only. */
  privateVolumeSize?: pulumi.Input<number | string>;
}

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
  /** The private volume's size in bytes as last applied or read (`pulumi refresh`). */
  declare readonly privateVolumeBytes: pulumi.Output<number>;

  constructor(name: string, args: QubesVmArgs, opts?: pulumi.CustomResourceOptions) {
    super(diskProvider("providers/impl/qubesVm.ts"), name, { features: {}, tags: [], ...args, privateVolumeBytes: undefined }, opts, "qubes", "QubesVm");
  }
}
