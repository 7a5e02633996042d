/**
 * The site as Pulumi components: `Site` (shared VMs, the net VM's services, the one policy file)
 * and one `BuildEnvironment` per environment (build-ENV, keys-ENV, win-keys-ENV, their files and
 * services). Everything comes from the pure plan (site/plan.ts) and the bundled services
 * (dist/services/*.js); this file only wires resources and their dependencies.
 */
import { createPrivateKey, KeyObject, X509Certificate } from "crypto";
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import { z } from "zod";
import { renderBuildersList } from "../contracts/buildersList";
import { renderNginxConfig } from "../contracts/nginx";
import { BuilderCleanupConfig } from "../contracts/serviceConfig/builderCleanup";
import { LogsVmConfig } from "../contracts/serviceConfig/buildLog";
import { ConnectSshConfig } from "../contracts/serviceConfig/connectSsh";
import { GpgGateConfig } from "../contracts/serviceConfig/gpgGate";
import { LogReceivedConfig } from "../contracts/serviceConfig/logReceived";
import { ProcessCommandConfig } from "../contracts/serviceConfig/processGithubCommand";
import { TriggerBuildConfig } from "../contracts/serviceConfig/triggerBuild";
import { WebhooksConfig } from "../contracts/serviceConfig/webhooks";
import { WinSignConfig } from "../contracts/serviceConfig/winSign";
import { vmFileKey } from "../contracts/vmFileKey";
import { serviceConfigPath, serviceSecretPath, VM_CONFIG_DIR, VM_SECRETS_DIR } from "../contracts/vmPaths";
import { CLEANUP_PROGRAM, cleanupConfig, timerFiles } from "./timers";
import { builderDvmFiles } from "./builderDvm";
import { BuilderCheckout } from "../providers/builderCheckout";
import { AuthenticodeKey } from "../providers/authenticodeKey";
import { LogsRepository } from "../providers/logsRepository";
import { projectFile, ProjectFileRef } from "../providers/projectFile";
import { QrexecPolicy } from "../providers/qrexecPolicy";
import { QubesVm } from "../providers/qubesVm";
import { SigningKey } from "../providers/signingKey";
import { SshKey } from "../providers/sshKey";
import { SshProxyConfig } from "../providers/sshProxyConfig";
import { TemplateRequirement } from "../providers/templateRequirement";
import { TransparencyLogKey } from "../providers/tlogKey";
import { type FileEntryArgs, type ServiceEntryArgs, VmFiles } from "../providers/vmFiles";
import {
  BUILDER_PATHS, checkBuilders, checkoutsOf, commandActions, renderBuilderConf, renderBuilderGithubConf, renderBuilderGithubYml,
  buildersListOf, renderBuilderYml, renderOpenqaConf, triggerEntryPoint,
} from "./builders";
import { logsOf, tlogOrigin, type SiteConfig } from "./config";
import { BUILDER_DVM, buildVm, keysVm, planSite, policyFiles, type PlannedPolicyFile, type PlannedVm, WINSIGN_OPS, winKeysVm } from "./plan";

/** Where site files live inside the VMs (see docs/layout.md). */
export const PATHS = {
  rpc: "/usr/local/etc/qubes-rpc",
  config: VM_CONFIG_DIR,
  secrets: VM_SECRETS_DIR,
  lib: "/usr/local/lib/qubes-build-infra",
  gpgClient: "/usr/local/bin/qubes-gpg-client-wrapper",
  /** qbi-tlog (the transparency log tool) in logs and keys VMs. */
  tlog: "/usr/local/lib/qubes-build-infra/qbi-tlog",
  /** The logs VM's transparency log signing key. */
  tlogKey: "/home/user/.config/qubes-build-infra/tlog.key",
  logsRepo: "/home/user/QubesIncomingBuildLog",
  buildersList: "/home/user/.config/qubes-builder-github/builders.list",
  buildVmsList: "/home/user/.config/qubes-builder-github/build-vms.list",
  trustedKeys: `${VM_CONFIG_DIR}/trusted-keys-for-commands.asc`,
} as const;

/** Where the net VM keeps the webhook receiver's log (and its supervisor's pid files). */
export const WEBHOOKS_STATE = "/home/user/.local/state/qubes-build-infra";

/**
 * The net VM's boot (rc.local) opens the webhook ports in sys-net's own firewall (Qubes'
 * `custom-input` chains, which its input policy consults before dropping inbound traffic) for the
 * configured source ranges only, starts the webhook receiver as `user` under `supervise`
 * (restarted whenever it exits, with backoff; its output in webhooks.log, rotated once) and, on
 * Qubes, puts the generated nginx site in place. In qubes-sim (no nft in a VM, read-only /etc)
 * the nft and nginx lines do nothing: the sim applies the nginx block's ranges itself.
 */
export function webhooksBoot(front: { ports: number[]; allowCidrs: readonly string[] } = { ports: [80], allowCidrs: [] }): string {
  const ports = `tcp dport { ${[...new Set(front.ports)].join(", ")} }`;
  const v4 = front.allowCidrs.filter((c) => !c.includes(":"));
  const v6 = front.allowCidrs.filter((c) => c.includes(":"));
  const any = front.allowCidrs.length === 0;
  const nft = [
    ...(any || v4.length ? [`nft add rule ip qubes custom-input ${any ? "" : `ip saddr { ${v4.join(", ")} } `}${ports} accept 2>/dev/null || true`] : []),
    ...(any || v6.length ? [`nft add rule ip6 qubes custom-input ${any ? "" : `ip6 saddr { ${v6.join(", ")} } `}${ports} accept 2>/dev/null || true`] : []),
  ];
  return [
    ...nft,
    `mkdir -p ${WEBHOOKS_STATE}`,
    `chown user ${WEBHOOKS_STATE} 2>/dev/null || true`,
    `runuser -u user -- env HOME=/home/user ${PATHS.lib}/supervise.js --name webhooks --log ${WEBHOOKS_STATE}/webhooks.log -- ` +
      `${PATHS.lib}/webhooks.js </dev/null >/dev/null 2>&1 &`,
    "if ln -sf /rw/config/qubes-build-infra/webhooks-nginx.conf /etc/nginx/conf.d/qubes-build-infra-webhooks.conf 2>/dev/null; then",
    "  systemctl --no-block restart nginx 2>/dev/null || true",
    "fi",
    "",
  ].join("\n");
}

/** The webhook front's certificate chain and key in the net VM (persistent, read by nginx). */
export const WEBHOOKS_TLS = {
  certificate: "/rw/config/qubes-build-infra/webhooks-tls.crt",
  key: "/rw/config/qubes-build-infra/webhooks-tls.key",
} as const;

/** The TLS key as nginx will read it, once it is known to belong to the certificate. */
export function tlsKeyFor(certificatePem: string, keyPem: string): string {
  let key: KeyObject;
  try {
    key = createPrivateKey(keyPem);
  } catch (e) {
    throw new Error(`qubes-build-infra:webhookTlsKey: not a PEM private key (${(e as Error).message})`);
  }
  if (!new X509Certificate(certificatePem).checkPrivateKey(key)) {
    throw new Error("qubes-build-infra:webhookTlsKey: not the private key of webhookTlsCertificate (its first certificate)");
  }
  return keyPem.endsWith("\n") ? keyPem : `${keyPem}\n`;
}

/** Inputs of the whole site. */
export interface SiteArgs {
  config: SiteConfig;
  /** The GitHub webhook HMAC secret (a Pulumi secret). */
  webhookSecret: pulumi.Input<string>;
  /** The private key of `config.webhookTlsCertificate` (a Pulumi secret); required with it. */
  webhookTlsKey?: pulumi.Input<string>;
  /** Directory of the bundled services (`dist/services`). */
  servicesDir: string;
  /** builder-github's GitHub API token (a Pulumi secret); absent: no GitHub notifications. */
  githubApiToken?: pulumi.Input<string>;
  /** openQA API credentials (Pulumi secrets); absent: no openQA client configuration. */
  openqa?: { key: pulumi.Input<string>; secret: pulumi.Input<string> };
  /** Directory of the built tools (`.tools/bin`, for qbi-tlog). */
  toolsDir: string;
}

const json = (v: unknown): string => `${JSON.stringify(v, null, 2)}\n`;

/** `value` when `schema` accepts it, else an error naming the service's config file and each field it refuses. */
export function checkedConfig<T>(name: string, schema: z.ZodType, value: T): T {
  const r = schema.safeParse(value);
  if (r.success) return value;
  const fields = r.error.issues.map((i) => `${i.path.length ? i.path.join(".") : "(the whole value)"}: ${i.message}`);
  throw new Error(`the configuration ${name}.json would be refused by its service: ${fields.join("; ")}`);
}

/**
 * One bundled service program, by reference (its hash goes through the engine, not its ~0.8 MB of
 * text); a missing bundle is a setup error, said plainly.
 */
function program(servicesDir: string, name: string): ProjectFileRef {
  // Hashed once per run: every environment installs the same few programs.
  const file = path.join(servicesDir, `${name}.js`);
  let ref = programs.get(file);
  if (!ref) programs.set(file, (ref = projectFile(file)));
  return ref;
}
const programs = new Map<string, ProjectFileRef>();

/**
 * Where a resource in a VM lives: a VM the site creates (its resource: what is placed in it is tied
 * to its uuid, replaced and gone with it) or a VM named by the config (it must exist in dom0).
 */
type Holder = { vm: QubesVm } | { configKey: string };

const tie = (h: Holder) => ("vm" in h ? { vmUuid: h.vm.uuid } : { configKeys: { vm: h.configKey } });

/**
 * What a component places in one VM, declared a line each and created as one VmFiles resource
 * (`done`): every file, link, block and service of the VM, with the union of their dependencies.
 */
class InVm {
  private readonly files: Record<string, FileEntryArgs> = {};
  private readonly services: Record<string, ServiceEntryArgs> = {};
  private readonly after: pulumi.Resource[] = [];
  private created?: VmFiles;

  constructor(
    private readonly parent: pulumi.Resource,
    readonly name: string,
    private readonly servicesDir: string,
    private readonly holder: Holder,
    /** What must exist first (besides the VM itself). */
    private readonly dependsOn: pulumi.Resource[] = [],
  ) {}

  private add(key: string, entry: FileEntryArgs, after: pulumi.Resource[]): void {
    if (this.created) throw new Error(`${this.name}: ${key} declared after the VM's files were created`);
    if (key in this.files) throw new Error(`${this.name}: ${key} declared twice`);
    this.files[key] = entry;
    this.after.push(...after);
  }

  service(service: string, programName: string): void {
    if (service in this.services) throw new Error(`${this.name}: service ${service} declared twice`);
    this.services[service] = { ...program(this.servicesDir, programName), mode: 0o755 };
  }

  /** A whole file; `after`: resources that must exist first (e.g. a checkout into its directory). */
  file(filePath: string, content: pulumi.Input<string> | ProjectFileRef, mode = 0o644, owner = "root", after: pulumi.Resource[] = []): void {
    const text = typeof content === "object" && "contentFile" in content ? content : { content };
    this.add(filePath, { ...text, mode, owner, kind: "file" }, after);
  }

  /** A symbolic link at `linkPath` to `target` (links are made after the VM's files). */
  symlink(linkPath: string, target: string, after: pulumi.Resource[] = []): void {
    this.add(linkPath, { content: target, mode: 0o777, owner: "root", kind: "symlink" }, after);
  }

  /** A managed block of a file shared with others (e.g. /rw/config/rc.local). */
  block(filePath: string, blockId: string, content: string, mode: number, owner = "root", after: pulumi.Resource[] = []): void {
    this.add(vmFileKey(filePath, blockId), { content, mode, owner, kind: "block" }, after);
  }

  /**
   * A service's configuration, checked against the schema the service parses it with: its input
   * type at compile time, and the value itself once known, so a field the service would refuse
   * fails the run here (naming the service and the field), not in the VM. The file holds the
   * value as given; the service applies its defaults.
   */
  config<S extends z.ZodType>(name: string, schema: S, value: pulumi.Input<z.input<S>>): void {
    this.file(serviceConfigPath(name), pulumi.output(value).apply((v) => json(checkedConfig(name, schema, v))));
  }

  /** The VM's VmFiles (created on the first call; nothing may be declared after). */
  done(): VmFiles {
    this.created ??= new VmFiles(`${this.name}:files`, { vm: this.name, ...tie(this.holder), files: this.files, services: this.services }, {
      parent: this.parent,
      dependsOn: [...new Set(["vm" in this.holder ? [this.holder.vm] : [], this.dependsOn, this.after].flat())],
    });
    return this.created;
  }
}

/** The stack config keys that name a planned VM's template and netvm, for messages. */
function configKeysOf(v: PlannedVm): Record<string, string> {
  const ns = "qubes-build-infra";
  switch (v.role) {
    case "logs": return { template: `${ns}:logsTemplate`, netvm: `${ns}:logsNetvm` };
    case "keys":
    case "win-keys": return { template: `${ns}:keysTemplate` };
    default: return { template: `${ns}:buildTemplate`, netvm: `${ns}:buildNetvm` };
  }
}

/**
 * A planned VM. `siteVms` are the VMs created before it that it may name (the disposable
 * templates): it names them through their uuid output, so that a preview before they exist does
 * not look them up in dom0.
 */
function vmResource(parent: pulumi.Resource, v: PlannedVm, dependsOn: pulumi.Resource[], siteVms: ReadonlyMap<string, QubesVm> = new Map()): QubesVm {
  const dvm = typeof v.defaultDispvm === "string" ? siteVms.get(v.defaultDispvm) : undefined;
  return new QubesVm(v.name, {
    name: v.name,
    klass: v.klass,
    template: v.template,
    label: v.label,
    netvm: v.netvm,
    ...(v.defaultDispvm !== undefined ? { defaultDispvm: dvm ? dvm.uuid.apply(() => v.defaultDispvm!) : v.defaultDispvm } : {}),
    ...(v.templateForDispvms !== undefined ? { templateForDispvms: v.templateForDispvms } : {}),
    ...(v.privateVolumeSize !== undefined ? { privateVolumeSize: v.privateVolumeSize } : {}),
    ...(v.virtMode !== undefined ? { virtMode: v.virtMode } : {}),
    ...(v.memory !== undefined ? { memory: v.memory } : {}),
    ...(v.maxmem !== undefined ? { maxmem: v.maxmem } : {}),
    features: {},
    tags: v.tags,
    configKeys: configKeysOf(v),
  }, { parent, dependsOn, protect: v.protect });
}

/** Inputs of one environment's component. */
export interface BuildEnvironmentArgs {
  config: SiteConfig;
  env: string;
  servicesDir: string;
  vms: Map<string, PlannedVm>;
  /** The logs VM resource this environment reports to, and the dispvm templates by name. */
  logsVm: QubesVm;
  dispvmTemplates: ReadonlyMap<string, QubesVm>;
  /** builder-github's API token ("" when none) and the openQA credentials, as secrets. */
  githubApiToken: pulumi.Output<string>;
  openqa?: { key: pulumi.Input<string>; secret: pulumi.Input<string> };
  /** The note verifier key of the logs VM's transparency log. */
  logVerifier: pulumi.Output<string>;
  /** qbi-tlog, by reference. */
  tlogProgram: ProjectFileRef;
}

/** build-ENV, keys-ENV (and win-keys-ENV) with everything placed in them. */
export class BuildEnvironment extends pulumi.ComponentResource {
  /** The build VM. */
  readonly buildVm: QubesVm;
  /** The keys VM (protected). */
  readonly keysVm: QubesVm;
  /** The env's signing key in keys-ENV. */
  readonly signingKey: SigningKey;
  /** build-ENV's ssh key for the upload hosts. */
  readonly uploadKey: SshKey;
  /** The verified builder checkouts in build-ENV, by plan key. */
  readonly checkouts: Record<string, BuilderCheckout> = {};
  /** The Windows keys VM (protected), for Windows environments. */
  readonly winKeysVm?: QubesVm;

  constructor(name: string, args: BuildEnvironmentArgs, opts?: pulumi.ComponentResourceOptions) {
    super("qubes-build-infra:site:BuildEnvironment", name, {}, opts);
    const { config: cfg, env, servicesDir } = args;
    const e = cfg.envs[env];
    const b = buildVm(env);
    const k = keysVm(env);
    const logs = e.logs;

    this.keysVm = vmResource(this, args.vms.get(k)!, []);
    this.buildVm = vmResource(this, args.vms.get(b)!, e.builderv2 || e.windows ? [...args.dispvmTemplates.values()] : [], args.dispvmTemplates);
    if (e.windows) this.winKeysVm = vmResource(this, args.vms.get(winKeysVm(env))!, []);

    // keys-ENV: the key, the acknowledgement service (it verifies what the logs VM logged) and the
    // signing gate (it signs exactly the logged bytes, once).
    const keys = new InVm(this, k, servicesDir, { vm: this.keysVm });
    this.signingKey = new SigningKey(`${k}:signing-key`, {
      vm: k, vmUuid: this.keysVm.uuid, uid: `Qubes OS build signing key (${env})`, expectFingerprint: e.signingKey,
    }, { parent: this, dependsOn: [this.keysVm], protect: cfg.protectKeys });
    keys.file(PATHS.tlog, args.tlogProgram, 0o755);
    keys.service("qubesbuilder.LogReceived", "log-received");
    keys.config("log-received", LogReceivedConfig, args.logVerifier.apply((verifier) => ({
      logsVms: [logs], buildVms: [b], self: k, verifier, entryTtlSeconds: cfg.signingWindowSeconds, tlogProgram: PATHS.tlog,
    })));
    keys.service("qubes.Gpg", "gpg-gate");
    keys.config("gpg-gate", GpgGateConfig, this.signingKey.fingerprint.apply((fpr) => ({ clients: [b], keys: [fpr], defaultKey: fpr, entryWaitSeconds: cfg.signingWaitSeconds })));

    let win: InVm | undefined;
    if (e.windows) {
      // win-keys-ENV: WinSign for existing keys only, each signature logged first (like qubes.Gpg).
      const wk = winKeysVm(env);
      win = new InVm(this, wk, servicesDir, { vm: this.winKeysVm! });
      new AuthenticodeKey(`${wk}:authenticode-key`, { vm: wk, vmUuid: this.winKeysVm!.uuid, name: cfg.windowsKeyName },
        { parent: this, dependsOn: [this.winKeysVm!], protect: cfg.protectKeys });
      win.file(PATHS.tlog, args.tlogProgram, 0o755);
      for (const op of WINSIGN_OPS) win.service(`qubesbuilder.WinSign.${op}`, "win-sign");
      win.config("win-sign", WinSignConfig, args.logVerifier.apply((verifier) => ({
        clients: [b], keys: [cfg.windowsKeyName], self: wk, verifier, entryTtlSeconds: cfg.signingWindowSeconds, tlogProgram: PATHS.tlog,
      })));
    }

    // build-ENV: split-GPG client side, builders, GitHub services, the ssh proxy.
    const build = new InVm(this, b, servicesDir, { vm: this.buildVm });
    build.file("/rw/config/gpg-split-domain", `${k}\n`);
    build.file(PATHS.gpgClient, program(servicesDir, "gpg-client"), 0o755);
    // rpm signs through the split-GPG client; the key's passphrase lives in the keys VM, so rpm's check of it is skipped.
    const rpmmacros = `%__gpg ${PATHS.gpgClient}\n%__gpg_check_password_cmd /bin/true true\n%_gpg_sign_cmd_extra_args --batch\n`;
    build.file("/home/user/.rpmmacros", rpmmacros, 0o644, "user");
    build.file(PATHS.buildersList, renderBuildersList(buildersListOf(e)), 0o644, "user");

    // The builders: verified checkouts first (nested ones after their parent), then the files that
    // live in or next to them.
    const checkouts = checkoutsOf(cfg, env);
    for (const c of checkouts) {
      this.checkouts[c.key] = new BuilderCheckout(`${b}:checkout:${c.key}`, {
        vm: b, vmUuid: this.buildVm.uuid, dir: c.dir, url: c.url, commit: c.commit, ...(c.tag ? { tag: c.tag } : {}), maintainers: c.maintainers,
        keys: cfg.maintainerKeys, submodules: c.key === "qubes-builderv2", label: c.label,
      }, { parent: this, dependsOn: [this.buildVm, ...(c.inside ? [this.checkouts[c.inside]] : [])] });
    }
    const fpr = this.signingKey.fingerprint;
    // A file goes after every checkout into its directory or below: both would create the directory
    // (the file's writer as root, then handing it to the user), and a checkout run as the user in
    // between would be refused (e.g. builderv2's config checkout beside builder.yml).
    const inBuilder = (dir: string) => checkouts.filter((c) => c.dir === dir || c.dir.startsWith(`${dir}/`)).map((c) => this.checkouts[c.key]);
    for (const bl of e.builders) {
      if (bl.components.length > 0) build.file(`${bl.dir}/qbi-components.json`, json({ components: bl.components }), 0o644, "user", inBuilder(bl.dir));
      if (e.builderv2) build.file(`${bl.dir}/builder.yml`, fpr.apply((f) => renderBuilderYml(cfg, env, bl, f)), 0o644, "user", inBuilder(bl.dir));
      else build.file(`${bl.dir}/builder.conf`, fpr.apply((f) => renderBuilderConf(cfg, env, bl, f)), 0o644, "user", inBuilder(bl.dir));
    }
    if (e.builderv2) {
      build.file(BUILDER_PATHS.githubYml, pulumi.secret(args.githubApiToken.apply((t) => renderBuilderGithubYml(cfg, env, t))), 0o600, "user");
      if (args.openqa) {
        const conf = pulumi.all([args.openqa.key, args.openqa.secret]).apply(([k, sec]) => renderOpenqaConf(cfg.openqa.server, k, sec));
        build.file(BUILDER_PATHS.openqaConf, pulumi.secret(conf), 0o600, "user");
      }
    } else {
      build.file(BUILDER_PATHS.githubConf, pulumi.secret(args.githubApiToken.apply((t) => renderBuilderGithubConf(cfg, t))), 0o600, "user");
      // builder-github's handlers source their functions from here, and template builds in
      // disposables copy back through qubes-builder's service (the formula's links to the last builder).
      const last = e.builders[e.builders.length - 1].dir;
      build.symlink(BUILDER_PATHS.v1Lib, `${last}/qubes-src/builder-github/lib`, [this.checkouts[`github:${last}`]]);
      build.symlink(`${PATHS.rpc}/qubesbuilder.CopyTemplateBack`, `${last}/rpc-services/qubesbuilder.CopyTemplateBack`, [this.checkouts[`builder:${last}`]]);
      // builder-github (v1) keeps its notification state here and does not create it.
      const readme = "builder-github's notification state (one file per component, release, dist and repository).\n";
      build.file(`${BUILDER_PATHS.notifyState}/README`, readme, 0o644, "user");
    }
    // Housekeeping timers (user units; systemd reads them at the VM's next start).
    // Links are made after the files: ~/.config/systemd/user is then the user's, not made by root for the link.
    for (const t of timerFiles(cfg, e)) {
      if (t.kind === "symlink") build.symlink(t.path, t.target);
      else build.file(t.path, t.content, 0o644, "user");
    }
    if (cfg.timers.builderCleanup.enabled) {
      build.file(CLEANUP_PROGRAM, program(servicesDir, "builder-cleanup"), 0o755);
      build.config("builder-cleanup", BuilderCleanupConfig, cleanupConfig(cfg, e));
    }
    const version = e.builderv2 ? 2 : 1;
    this.uploadKey = new SshKey(`${b}:upload-key`, {
      vm: b, vmUuid: this.buildVm.uuid, path: BUILDER_PATHS.sshKey, comment: `${b} upload key (qubes-build-infra)`,
      generation: e.uploadKeyGeneration ?? cfg.sshKeys.uploadKeyGeneration,
      // Not protected: it lives and goes with the build VM, which a destroy removes; a new one is
      // authorised on the upload hosts (stack output uploadKeys), unlike a signing key.
    }, { parent: this, dependsOn: [this.buildVm] });
    build.service("qubesbuilder.TriggerBuild", "trigger-build");
    build.config("trigger-build", TriggerBuildConfig, { buildersList: PATHS.buildersList, entryPoints: { [`v${version}`]: triggerEntryPoint(version) } });
    build.service("qubesbuilder.ProcessGithubCommand", "process-github-command");
    build.file(PATHS.trustedKeys, cfg.commands.trustedKeys);
    build.config("process-github-command", ProcessCommandConfig, {
      trustedKeysFile: PATHS.trustedKeys,
      maintainers: cfg.commands.maintainers,
      buildersList: PATHS.buildersList,
      ...(cfg.commands.notify ? { notify: cfg.commands.notify } : {}),
      actions: commandActions(version),
    });
    if (Object.keys(cfg.uploadHosts).length > 0) {
      new SshProxyConfig(`${b}:ssh`, {
        vm: b, vmUuid: this.buildVm.uuid, netvm: cfg.netvm, configKeys: { netvm: "qubes-build-infra:netvm" },
        hosts: Object.entries(cfg.uploadHosts).map(([host, h]) => ({ host, user: h.user, hostKeys: h.hostKeys })),
      }, { parent: this, dependsOn: [this.buildVm] });
    }
    keys.done();
    win?.done();
    build.done();
    this.registerOutputs({});
  }
}

/** The whole site: shared VMs, every environment, the net VM's services and the policy file. */
export class Site extends pulumi.ComponentResource {
  /** Every environment's component, by name. */
  readonly envs: Record<string, BuildEnvironment> = {};
  /** Fingerprint of each environment's signing key. */
  readonly signingKeys: Record<string, pulumi.Output<string>> = {};
  /** The site's policy files in dom0 (/etc/qubes/policy.d), in the order qrexec reads them. */
  readonly policyFiles: string[];
  /** The first of them (the only one unless the site outgrew one file). */
  readonly policyFile: string;
  private readonly policy: PlannedPolicyFile[];
  /** Each logs VM's deploy key (public): give it write access to the logs repository. */
  readonly deployKeys: Record<string, pulumi.Output<string>> = {};
  /** Each environment's upload key (public): authorise it on the upload hosts. */
  readonly uploadKeys: Record<string, pulumi.Output<string>> = {};
  /** Each logs VM's transparency log verifier key (`<origin>+<hash>+<key>`), to audit the log. */
  readonly logVerifiers: Record<string, pulumi.Output<string>> = {};

  constructor(name: string, args: SiteArgs, opts?: pulumi.ComponentResourceOptions) {
    super("qubes-build-infra:site:Site", name, {}, opts);
    const { config: cfg, servicesDir } = args;
    const plan = planSite(cfg);
    this.policy = policyFiles(plan.rules);
    this.policyFiles = this.policy.map((f) => `${f.name}.policy`);
    this.policyFile = this.policyFiles[0];
    const vms = new Map(plan.vms.map((v) => [v.name, v]));
    // Pins, config files and every builderv2 value, before anything is planned: errors name env and builder.
    for (const env of Object.keys(cfg.envs)) checkBuilders(cfg, env);
    if (args.githubApiToken === undefined) {
      void pulumi.log.warn("qubes-build-infra:githubApiToken is not set: builder-github will not report to GitHub (issues, labels, comments)");
    }
    const githubApiToken = pulumi.secret(pulumi.output(args.githubApiToken ?? ""));

    // Templates must carry what the services run on; a missing command fails the preview.
    const needs: Record<string, { cmds: string[]; why: string; keys: string[] }> = {};
    const need = (key: "buildTemplate" | "keysTemplate" | "logsTemplate" | "netTemplate", cmds: string[], why: string) => {
      const t = cfg[key];
      const cur = needs[t] ?? { cmds: [], why: "", keys: [] };
      needs[t] = { cmds: [...new Set([...cur.cmds, ...cmds])], why: cur.why ? `${cur.why}; ${why}` : why, keys: [...cur.keys, `qubes-build-infra:${key}`] };
    };
    const envs = Object.values(cfg.envs);
    need("buildTemplate", ["node", "git", "gpg", "flock", "ssh-keygen", "ssh"], "build VMs");
    if (envs.some((e) => e.builderv2)) need("buildTemplate", ["python3"], "builderv2");
    if (envs.some((e) => !e.builderv2)) need("buildTemplate", ["make"], "qubes-builder (v1)");
    need("keysTemplate", ["node", "gpg"], "keys VMs (signing gate)");
    if (envs.some((e) => e.windows)) {
      need("keysTemplate", ["osslsigncode", "openssl"], "win-keys VMs (Authenticode)");
      need("buildTemplate", ["osslsigncode"], "builder-dvm (WinSign.Timestamp)");
    }
    need("logsTemplate", ["node", "git", "gpg", "xz", "ssh-keygen", "ssh"], "logs VMs");
    need("netTemplate", ["node", "nginx"], "the net VM (ConnectSSH, webhooks)");
    const requirements = Object.entries(needs).map(([t, n]) =>
      new TemplateRequirement(`template:${t}`, { vm: t, commands: n.cmds, purpose: n.why, configKeys: { vm: n.keys.join(", ") } }, { parent: this }));

    const dispvmTemplates = new Map(plan.vms
      .filter((v) => v.role === "builder-dvm" || v.role === "windows-dvm" || v.role === "env-dvm")
      .map((v) => [v.name, vmResource(this, v, requirements)]));

    // builder-dvm: builderv2's in-disposable services from a verified checkout, /builder kept and mounted dev,suid.
    const dvmPieces = builderDvmFiles(cfg);
    const dvmVm = dispvmTemplates.get(BUILDER_DVM);
    if (dvmPieces && dvmVm) {
      const c = dvmPieces.checkout;
      const checkout = new BuilderCheckout(`${BUILDER_DVM}:checkout:${c.key}`, {
        vm: BUILDER_DVM, vmUuid: dvmVm.uuid, dir: c.dir, url: c.url, commit: c.commit, ...(c.tag ? { tag: c.tag } : {}), maintainers: c.maintainers,
        keys: cfg.maintainerKeys, submodules: false, label: c.label,
      }, { parent: this, dependsOn: [dvmVm] });
      const dvm = new InVm(this, BUILDER_DVM, servicesDir, { vm: dvmVm });
      for (const f of dvmPieces.files) dvm.file(f.path, f.content, f.mode);
      for (const l of dvmPieces.links) dvm.symlink(l.path, l.target, [checkout]);
      dvm.block("/rw/config/rc.local", "builder-mount", dvmPieces.boot, 0o755);
      dvm.done();
    }

    // One logs VM per distinct `logs` value, each with its keys (git commits; transparency log),
    // repository and services (BuildLog, LogDigest).
    const tlogProgram = projectFile(path.join(args.toolsDir, "qbi-tlog"));
    const logsVms = new Map<string, QubesVm>();
    for (const v of plan.vms.filter((x) => x.role === "logs")) {
      const vm = vmResource(this, v, requirements);
      logsVms.set(v.name, vm);
      const logs = logsOf(cfg, v.name);
      const inVm = new InVm(this, v.name, servicesDir, { vm });
      // The logs key is protected like the keys VMs' keys: the logs repository's history is signed by it.
      const key = new SigningKey(`${v.name}:logs-key`, {
        vm: v.name, vmUuid: vm.uuid, uid: `${cfg.logs.botName} <${cfg.logs.botEmail}>`, expectFingerprint: logs.keyFingerprint,
      }, { parent: this, dependsOn: [vm], protect: cfg.protectKeys });
      new LogsRepository(`${v.name}:logs-repo`, {
        vm: v.name, vmUuid: vm.uuid, dir: PATHS.logsRepo, remote: logs.repo, branch: logs.branch, previousKeys: logs.previousKeys,
        signingKey: key.fingerprint, authorName: cfg.logs.botName, authorEmail: cfg.logs.botEmail,
      }, { parent: this, dependsOn: [vm, key] });
      // The deploy key that pushes the logs, and github.com's pinned host keys for that push.
      const deploy = new SshKey(`${v.name}:deploy-key`, {
        vm: v.name, vmUuid: vm.uuid, path: BUILDER_PATHS.sshKey, comment: `${v.name} logs deploy key (qubes-build-infra)`,
        generation: cfg.sshKeys.deployKeyGeneration,
      }, { parent: this, dependsOn: [vm], protect: cfg.protectKeys });
      this.deployKeys[v.name] = deploy.publicKey;
      inVm.block("/home/user/.ssh/known_hosts", "github", cfg.github.hostKeys.map((k) => `github.com ${k.type} ${k.key}\n`).join(""), 0o644, "user", [deploy]);
      inVm.file(PATHS.tlog, tlogProgram, 0o755);
      const served = Object.fromEntries(Object.entries(cfg.envs).filter(([, e]) => e.logs === v.name).map(([env, e]) => [buildVm(env), {
        env, keysVm: keysVm(env), ...(e.windows ? { winKeysVm: winKeysVm(env) } : {}),
      }]));
      inVm.service("qubesbuilder.BuildLog", "build-log");
      inVm.service("qubesbuilder.LogDigest", "log-digest");
      inVm.config("build-log", LogsVmConfig, key.fingerprint.apply((fpr) => ({
        repoDir: PATHS.logsRepo, remote: logs.repo, branch: logs.branch, signingKey: fpr,
        authorName: cfg.logs.botName, authorEmail: cfg.logs.botEmail, buildVms: served,
        tlog: { program: PATHS.tlog, privateKey: PATHS.tlogKey, repoSubdir: `tlog/${v.name}` },
      })));
      // The transparency log's key is made by qbi-tlog, once the VM's files (the tool) are there.
      const tlogKey = new TransparencyLogKey(`${v.name}:tlog-key`, {
        vm: v.name, vmUuid: vm.uuid, origin: tlogOrigin(cfg, v.name), program: PATHS.tlog, privateKey: PATHS.tlogKey,
      }, { parent: this, dependsOn: [vm, inVm.done()], protect: cfg.protectKeys });
      this.logVerifiers[v.name] = tlogKey.verifier;
    }

    for (const env of Object.keys(cfg.envs)) {
      this.envs[env] = new BuildEnvironment(env, {
        config: cfg, env, servicesDir, vms, logsVm: logsVms.get(cfg.envs[env].logs)!, dispvmTemplates,
        githubApiToken, ...(args.openqa ? { openqa: args.openqa } : {}),
        logVerifier: this.logVerifiers[cfg.envs[env].logs], tlogProgram,
      }, { parent: this, dependsOn: requirements });
      this.signingKeys[env] = this.envs[env].signingKey.fingerprint;
      this.uploadKeys[env] = this.envs[env].uploadKey.publicKey;
    }

    // The net VM (not created here): ConnectSSH for the upload hosts, the webhook receiver.
    const netvm = cfg.netvm;
    const net = new InVm(this, netvm, servicesDir, { configKey: "qubes-build-infra:netvm" }, requirements);
    net.service("local.ConnectSSH", "connect-ssh");
    net.config("connect-ssh", ConnectSshConfig, {
      hosts: Object.fromEntries(Object.entries(cfg.uploadHosts).map(([h, u]) => [h, {
        ...(u.address ? { address: u.address } : {}), ...(u.port ? { port: u.port } : {}),
      }])),
    });
    net.file(`${PATHS.lib}/webhooks.js`, program(servicesDir, "webhooks"), 0o755);
    net.file(`${PATHS.lib}/supervise.js`, program(servicesDir, "supervise"), 0o755);
    net.file(serviceSecretPath("webhooks"), pulumi.secret(args.webhookSecret), 0o600, "user");
    net.config("webhooks", WebhooksConfig, {
      listen: { host: "127.0.0.1", port: cfg.webhooks.receiverPort },
      maxBodyBytes: cfg.webhooks.maxBodyBytes,
      buildVmsFile: PATHS.buildVmsList,
    });

    net.file(PATHS.buildVmsList, `${Object.keys(cfg.envs).map(buildVm).join("\n")}\n`, 0o644, "user");
    const cert = cfg.webhookTlsCertificate;
    if ((cert === undefined) !== (args.webhookTlsKey === undefined)) {
      throw new Error("qubes-build-infra:webhookTlsCertificate and the secret qubes-build-infra:webhookTlsKey go together: set both or neither");
    }
    if (cert !== undefined && args.webhookTlsKey !== undefined) {
      net.file(WEBHOOKS_TLS.certificate, cert.endsWith("\n") ? cert : `${cert}\n`, 0o644);
      // Read by nginx's master (root) only; a key that does not sign for the certificate fails here, at preview.
      net.file(WEBHOOKS_TLS.key, pulumi.secret(pulumi.output(args.webhookTlsKey).apply((k) => tlsKeyFor(cert, k))), 0o600);
    }
    const listenPort = cfg.webhooks.listenPort ?? (cert ? 443 : 80);
    const frontPorts = [listenPort, ...(cert && cfg.webhooks.httpPort !== null ? [cfg.webhooks.httpPort] : [])];
    net.block("/rw/config/rc.local", "webhooks", webhooksBoot({ ports: frontPorts, allowCidrs: cfg.webhooks.allowCidrs }), 0o755);
    net.file("/rw/config/qubes-build-infra/webhooks-nginx.conf", renderNginxConfig({
      listen: listenPort, upstreamSocketOrPort: cfg.webhooks.receiverPort, maxBodyBytes: cfg.webhooks.maxBodyBytes,
      ...(cfg.webhooks.allowCidrs.length ? { allowCidrs: cfg.webhooks.allowCidrs } : {}),
      ...(cert ? { tls: WEBHOOKS_TLS, ...(cfg.webhooks.httpPort !== null ? { httpRedirectPort: cfg.webhooks.httpPort } : {}) } : {}),
    }));
    net.done();

    // The policy files (one, unless the site outgrows one Admin API request), written after every
    // VM they name exists and removed before them.
    const allVms = [...dispvmTemplates.values(), ...logsVms.values(), ...Object.values(this.envs).flatMap((e) => [e.buildVm, e.keysVm])];
    for (const f of this.policy) {
      const resource = this.policy.length === 1 ? "policy" : `policy${f.name.slice(f.name.lastIndexOf("-"))}`;
      new QrexecPolicy(resource, { name: f.name, rules: f.rules }, { parent: this, dependsOn: allVms });
    }
    this.registerOutputs({ signingKeys: this.signingKeys, deployKeys: this.deployKeys, uploadKeys: this.uploadKeys, logVerifiers: this.logVerifiers });
  }
}
