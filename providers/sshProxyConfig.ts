/**
 * `SshProxyConfig`: a build VM's ssh set-up for the upload hosts. It owns one marked block of
 * `/home/user/.ssh/config` (a `Host` block per upload host, relayed through `local.ConnectSSH` in
 * the net VM, with connection sharing) and one of `/home/user/.ssh/known_hosts` (the pinned host
 * keys). There is no `Host *`: other ssh destinations keep going through the VM's own netvm (Tor).
 * Text outside the two blocks is left untouched; modes 0600 (config), 0644 (known_hosts), 0700
 * (`~/.ssh`), owner `user`.
 */
import * as pulumi from "@pulumi/pulumi";
import type { z } from "zod";
import { diskProvider } from "./dynamic";
import type { proxyHost, proxyInputs } from "./impl/sshProxyConfig";
import type { ArgsOf } from "./inputs";

/** One upload host (providers/impl/sshProxyConfig.ts `proxyHost`). */
export type SshProxyHost = z.input<typeof proxyHost>;

/** One pinned host key, as in known_hosts. */
export type SshHostKey = SshProxyHost["hostKeys"][number];

/** Inputs of an `SshProxyConfig` (providers/impl/sshProxyConfig.ts `proxyInputs`). */
export type SshProxyConfigArgs = ArgsOf<z.input<typeof proxyInputs>>;

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
