/**
 * `SshProxyConfig`: a build VM's ssh set-up for the upload hosts. It owns one marked block of
 * `/home/user/.ssh/config` (a `Host` block per upload host, relayed through `local.ConnectSSH` in
 * the net VM, with connection sharing) and one of `/home/user/.ssh/known_hosts` (the pinned host
 * keys). There is no `Host *`: other ssh destinations keep going through the VM's own netvm (Tor).
 * Text outside the two blocks is left untouched; modes 0600 (config), 0644 (known_hosts), 0700
 * (`~/.ssh`), owner `user`.
 */
import * as pulumi from "@pulumi/pulumi";
import { diskProvider } from "./dynamic";

/** One pinned host key, as in known_hosts. */
export interface SshHostKey {
  /** e.g. `ssh-ed25519` */
  type: string;
  /** The base64 key. */
  key: string;
}

/** One upload host. */
export interface SshProxyHost {
  /** The name used with ssh (`Host`), and the qrexec argument of ConnectSSH unless `hostName` is set. */
  host: string;
  /** Remote user (`User`). */
  user: string;
  /** `HostName`, when different from `host`. */
  hostName?: string;
  /** The host's pinned keys. */
  hostKeys: SshHostKey[];
}

/** Inputs of an `SshProxyConfig`. */
export interface SshProxyConfigArgs {
  /** The build VM. Changing it replaces the resource. */
  vm: pulumi.Input<string>;
  /** For a VM the site does not create: the stack config key naming it, e.g. `{ vm: "qubes-build-infra:netvm" }` (the VM must exist). */
  configKeys?: pulumi.Input<Record<string, string>>;
  /** The uuid of the VM (its QubesVm's `uuid` output): the resource is replaced with the VM, and gone with it. */
  vmUuid?: pulumi.Input<string>;
  /** The qube running `local.ConnectSSH` (e.g. `sys-net`). */
  netvm: pulumi.Input<string>;
  /** The upload hosts. */
  hosts: pulumi.Input<pulumi.Input<SshProxyHost>[]>;
}

/** The ssh proxy configuration of a build VM. */
export class SshProxyConfig extends pulumi.dynamic.Resource {
  /** sha256 of the `~/.ssh/config` block as applied (or read). */
  declare readonly configSha256: pulumi.Output<string>;
  /** sha256 of the `~/.ssh/known_hosts` block as applied (or read). */
  declare readonly knownHostsSha256: pulumi.Output<string>;

  constructor(name: string, args: SshProxyConfigArgs, opts?: pulumi.CustomResourceOptions) {
    super(diskProvider("providers/impl/sshProxyConfig.ts"), name, { ...args, configSha256: undefined, knownHostsSha256: undefined }, opts, "qubes", "SshProxyConfig");
  }
}
