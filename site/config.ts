/**
 * The stack configuration of a site, validated with zod.
 *
 * Shaped after the Salt formula's pillar (`build-infra:` keys) so that an existing site can move
 * (`qubes-build-infra import-pillar`), with its known gaps closed: the webhook secret, upload-host
 * keys, the signing window and the command signers are all first-class, and nothing is derived by
 * substring replacement of VM names (docs/formula.md W22).
 */
import { X509Certificate } from "crypto";
import { z } from "zod";
import { fingerprintAsPrinted as fingerprint } from "../contracts/fingerprint";
import { commitId } from "../contracts/gitCommit";
import { vmName } from "../contracts/vmName";
import { adminConnection } from "../providers/connection";
import { MAX_SIZE_BYTES, parseSize, sizeSchema } from "../providers/size";


/** Environment names become `build-ENV` / `keys-ENV`, so they must leave room for the prefix. */
const envName = z
  .string()
  .regex(/^[a-z][a-z0-9]*(-[a-z0-9]+)*$/, "lower-case letters and digits, words joined by single '-'")
  .max(25, "at most 25 characters, so that build-ENV and keys-ENV fit Qubes' 31")
  .refine((s) => !/(^|-)(build|keys)(-|$)/.test(s), "must not contain the words 'build' or 'keys' (docs/formula.md W22)");

/** A volume size: bytes, or binary units (`20GiB`, `20G`); the providers read sizes the same way (providers/size.ts). */
const size = sizeSchema;
export { MAX_SIZE_BYTES, parseSize };

// YAML reads an unquoted 4.10 as 4.1, so releases must be quoted strings.
const release = z.string({ error: "a quoted release like \"4.2\" (YAML reads 4.10 as 4.1)" })
  .regex(/^\d+(\.\d+)*$/, "a release like \"4.2\"");

/** A commit: 40 (SHA-1) or 64 (SHA-256) lower-case hex digits. */
const commit = commitId;
/** A git tag name (no option-like or path-walking names). */
const tagName = z.string().regex(/^[A-Za-z0-9_][A-Za-z0-9._/-]*$/, "a tag name")
  .refine((s) => !s.includes("..") && !s.endsWith(".lock") && !s.endsWith("/"), "a tag name");
const gitUrl = z.string().min(1).refine((s) => !s.startsWith("-") && !/\s/.test(s), "a git URL (no leading '-', no white space)");

/**
 * Where a piece of builder code comes from: a repository, the commit pinned, and who must have
 * signed it. Checked out only after the signature verified (BuilderCheckout).
 */
const gitSource = z.strictObject({
  url: gitUrl,
  commit,
  /** A signed tag that must point at `commit`; absent: the commit itself must carry the signature. */
  tag: tagName.optional(),
  /** Primary fingerprints allowed to sign it; their public keys are in `maintainerKeys`. */
  maintainers: z.array(fingerprint).min(1, "name at least one maintainer key"),
});
const builderCode = z.strictObject({ builder: gitSource, github: gitSource });

const builder = z.strictObject({
  /** The builder directory (v1: qubes-builder checkout; v2: artifacts directory). */
  dir: z.string().regex(/^\/home\/user\/[A-Za-z0-9._/-]+$/, "an absolute path under /home/user").refine((s) => !s.split("/").includes(".."), "no '..'"),
  release,
  /** Components this builder builds on TriggerBuild (empty: every component of its configuration). */
  components: z.array(z.string().regex(/^[A-Za-z0-9_-]{1,64}$/)).default([]),
  config: z
    .strictObject({
      /** The builder configuration inside the config repository, e.g. `R4.3/qubes-os-r4.3-dom0.yml`. */
      file: z.string().regex(/^[A-Za-z0-9_][A-Za-z0-9._/-]*$/, "a relative path inside the config repository")
        .refine((s) => !s.split("/").includes(".."), "no '..'").optional(),
      repository: z
        .strictObject({
          baseurl: z.string().default("https://github.com/QubesOS/qubes-"),
          component: z.string().regex(/^[A-Za-z0-9_][A-Za-z0-9_-]{0,63}$/, "a component name").default("release-configs"),
          branch: z.string().default("master"),
          maintainers: z.array(fingerprint).default([]),
          /** The pinned commit of the config repository (required once `file` is set). */
          commit: commit.optional(),
          /** A signed tag at `commit`; absent: the commit itself must be signed. */
          tag: tagName.optional(),
        })
        .prefault({}),
    })
    .prefault({}),
  /** Extra source-signing keys (v1). */
  keys: z.array(fingerprint).default([]),
});

const env = z.strictObject({
  /** The logs VM of this environment (several environments may share one). */
  logs: vmName,
  builderv2: z.boolean().default(false),
  windows: z.boolean().default(false),
  volumeSize: size.optional(),
  builders: z.array(builder).min(1, "at least one builder"),
  /** The signing key expected in keys-ENV; absent: one is generated there on first `up`. */
  signingKey: fingerprint.optional(),
  /** This environment's own pins of the builder code (default: `builderSources` of its version). */
  builderSources: builderCode.partial().optional(),
  /** Bump to replace build-ENV's upload key (the new public key is a stack output). */
  uploadKeyGeneration: z.number().int().min(1).optional(),
});

const hostKey = z.strictObject({
  type: z.enum(["ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa"]),
  key: z.string().regex(/^[A-Za-z0-9+/]+={0,2}$/, "the base64 key as in known_hosts"),
});

const hostname = z
  .string()
  .regex(/^(?=.{1,253}$)[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$/, "a DNS host name");

/** Where ConnectSSH connects: a host name (one label allowed) or an IPv4/IPv6 address, nothing else. */
const address = z.string().refine(
  (s) => z.ipv4().safeParse(s).success || z.ipv6().safeParse(s).success ||
    /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$/.test(s),
  "a host name or an IP address (letters, digits, '-' and '.'; or an IPv6 address)",
);

/** Repository kinds builderv2 uploads (`repository-upload-remote-host` keys). */
export const UPLOAD_KINDS = ["rpm", "deb", "archlinux", "windows", "iso"] as const;

const uploadHost = z.strictObject({
  user: z.string().regex(/^[a-z_][a-z0-9_-]*$/, "a Unix user name"),
  hostKeys: z.array(hostKey).min(1, "pin at least one host key"),
  /**
   * Directories on this host that builderv2 uploads each kind of repository to (rsync targets);
   * `{release}` is replaced by the builder's release, e.g. `/pub/qubes/repo/yum/r{release}`.
   */
  repositories: z.partialRecord(z.enum(UPLOAD_KINDS), z.string()
    .regex(/^\/([A-Za-z0-9._/-]|\{release\})*$/, "an absolute path of letters, digits and ._/-, with {release} for the builder's release")).default({}),
  /** For tests and odd networks: where ConnectSSH really connects (default: the host, port 22). */
  address: address.optional(),
  port: z.number().int().min(1).max(65535).optional(),
});

const maintainer = z.strictObject({
  components: z.union([z.literal("_all_"), z.array(z.string())]).default([]),
  templates: z.union([z.literal("_all_"), z.array(z.string())]).default([]),
  releases: z.union([z.literal("_all_"), z.array(release)]).default("_all_"),
  /** Distributions they may upload (`vm-bookworm`, `host-fc41`, ...). */
  distributions: z.union([z.literal("_all_"), z.array(z.string().regex(/^(host|vm|dom0)-[a-z][a-z0-9_-]*$/, "like vm-bookworm or host-fc41"))])
    .default("_all_"),
  iso: z.boolean().default(false),
});

const gitRef = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._/-]*$/, "a branch name");
const armoredKey = z.string().includes("BEGIN PGP PUBLIC KEY BLOCK", { message: "an armored OpenPGP public key (gpg --armor --export FINGERPRINT)" });
/**
 * Logs keys a logs repository may have been signed with before (fingerprint → armored public key):
 * naming one is the operator's decision to take over a head it signed (e.g. after the logs VM and
 * its key were destroyed); a handover commit signed by the current key goes on top.
 */
const previousKeys = z.record(fingerprint, armoredKey).default({});

/**
 * GitHub's published ssh host keys for github.com (public facts, as GitHub lists them since its
 * RSA key rotation of March 2023); the logs VM pushes over ssh and pins exactly these.
 */
export const GITHUB_HOST_KEYS = [
  { type: "ssh-ed25519", key: "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl" },
  {
    type: "ecdsa-sha2-nistp256",
    key: "AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBEmKSENjQEezOmxkZMy7opKgwFB9nkt5YRrYMjNuG5N87uRgg6CLrbo5wAdT/y6v0mKV" +
      "0U2w0WZ2YB/++Tpockg=",
  },
  {
    type: "ssh-rsa",
    key: "AAAAB3NzaC1yc2EAAAADAQABAAABgQCj7ndNxQowgcQnjshcLrqPEiiphnt+VTTvDP6mHBL9j1aNUkY4Ue1gvwnGLVlOhGeYrnZaMgRK6+PKCUXaDbC7qtbW" +
      "8gIkhL7aGCsOr/C56SJMy/BCZfxd1nWzAOxSDPgVsmerOBYfNqltV9/hWCqBywINIR+5dIg6JTJ72pcEpEjcYgXkE2YEFXV1JHnsKgbLWNlhScqb2UmyRkQy" +
      "ytRLtL+38TGxkxCflmO+5Z8CSSNY7GidjMIZ7Q4zMjA2n1nGrlTDkzwDCsw+wqFPGQA179cnfGWOWRVruj16z6XyvxvjJwbz0wQZ75XK5tKSb7FNyeIEs4TT" +
      "4jk+S4dhPeAUC5y+bDYirYgM4GC7uEnztnZyaVWQ7B381AK4Qdrwt51ZqExKbQpTUNn+EjqoTwvqNj4kqx5QUCI0ThS/YkOxJCXmPUWZbhjpCg56i+2aB6Cm" +
      "K2JGhn57K5mj0MNdBXA4/WnwH6XoPWJzK5Nyu2zB3nAZp+S5hpQs+p1vN1/wsjk=",
  },
] as const;

/** An IPv4 or IPv6 range in CIDR notation. */
const cidr = z.string().regex(
  /^(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\/(?:3[0-2]|[12]?\d)$|^[0-9a-fA-F:]+\/(?:12[0-8]|1[01]\d|[1-9]?\d)$/,
  "a range like 192.30.252.0/22 or 2a0a:a440::/29");

/** GitHub's published webhook source ranges (the `hooks` list of api.github.com/meta). */
export const GITHUB_HOOK_RANGES = ["192.30.252.0/22", "185.199.108.0/22", "140.82.112.0/20", "143.55.64.0/20", "2a0a:a440::/29", "2606:50c0::/32"] as const;

/** A systemd calendar expression (OnCalendar=): `weekly`, `daily`, `Sun *-*-* 03:00:00`, ... */
const calendar = z.string().regex(/^[A-Za-z0-9*:,./~ -]{1,64}$/, "a systemd OnCalendar= expression like weekly or 'Sun *-*-* 03:00'");

const githubRepo = z.string().regex(/^[A-Za-z0-9_.-]+\/[A-Za-z0-9_.-]+$/, "owner/name");

/** The whole site; every key is under the `qubes-build-infra:` config namespace. */
export const siteConfigSchema = z.strictObject({
  admin: adminConnection,
  netvm: vmName.default("sys-net"),
  buildNetvm: vmName.default("sys-whonix"),
  logsNetvm: vmName.default("sys-firewall"),
  buildTemplate: vmName.default("fedora-43-xfce"),
  keysTemplate: vmName.default("fedora-43-minimal"),
  logsTemplate: vmName.default("fedora-43-xfce"),
  netTemplate: vmName.default("fedora-43-xfce"),
  builderDvmSize: size.default(30 * 2 ** 30),
  /** Seconds a logged signature request may be used by the keys VM it was handed to (once). */
  signingWindowSeconds: z.number().int().min(10).max(3600).default(300),
  /** Seconds a keys VM's gate waits for the logged entry of data it received (logging runs alongside). */
  signingWaitSeconds: z.number().int().min(1).max(600).default(60),
  /** The Authenticode key of Windows environments (`__` for a space, as builderv2 sends it). */
  windowsKeyName: z.string().regex(/^[A-Za-z0-9_]{1,64}$/, "letters, digits and _ (with __ for a space)").default("Qubes__Windows__Tools"),
  /**
   * The template of `builder-windows-dvm`, the disposable template builderv2's Windows executor
   * builds in (a Windows template with Qubes Windows Tools); required once an environment builds
   * Windows.
   */
  windowsTemplate: vmName.optional(),
  /** NetVM of the Windows build disposables (default none: sources and the EWDK come in through qrexec and a block device). */
  windowsNetvm: vmName.nullable().default(null),
  /** Keys VMs are `protect`ed: `pulumi destroy` refuses to delete signing keys. */
  protectKeys: z.boolean().default(true),
  envs: z.record(z.string(), env).superRefine((envs, ctx) => {
    if (Object.keys(envs).length === 0) ctx.addIssue({ code: "custom", message: "at least one environment" });
    for (const name of Object.keys(envs)) {
      const r = envName.safeParse(name);
      if (!r.success) ctx.addIssue({ code: "custom", path: [name], message: `environment name: ${r.error.issues[0].message}` });
    }
    // Names are checked even when an environment's values are wrong too: every finding at once.
  }, { when: () => true }),
  uploadHosts: z.record(hostname, uploadHost).default({}),
  logs: z.strictObject({
    /** Git URL of the public build-logs repository (ssh in production). */
    repo: z.string().min(1),
    branch: gitRef.default("main"),
    /** The logs signing key expected in the logs VM; absent: one is generated there. */
    keyFingerprint: fingerprint.optional(),
    previousKeys,
    /**
     * Origin of the logs VMs' transparency logs (their checkpoints' first line), followed by
     * `/<logs VM>`; default: the repository's host and path, e.g. `github.com/QubesOS/build-logs`.
     */
    tlogOrigin: z.string().regex(/^[\x21-\x2a\x2c-\x7e]{1,200}$/, "printable ASCII without spaces or '+'").optional(),
    botName: z.string().default("Qubes OS build bot"),
    botEmail: z.string().default("builder-bot@qubes-os.org"),
    /** Per logs VM, where it differs from the above: its own repository (e.g. the kernel logs). */
    vms: z.record(vmName, z.strictObject({
      repo: z.string().min(1).optional(),
      branch: gitRef.optional(),
      keyFingerprint: fingerprint.optional(),
      previousKeys: z.record(fingerprint, armoredKey).optional(),
    })).default({}),
  }),
  commands: z
    .strictObject({
      /** Armored public keys allowed to sign GitHub commands: the only trust set (no keys from a builder's repository). */
      trustedKeys: z.string().default(""),
      maintainers: z.record(fingerprint, maintainer).default({}),
      /** Command told about every refused command (a JSON line on stdin), e.g. a GitHub commenter. */
      notify: z.array(z.string().min(1)).min(1).optional(),
    })
    .prefault({}),
  /** Armored public keys of every maintainer named in `builderSources` and the config repositories. */
  maintainerKeys: z.string().default(""),
  /** Pinned builder code per builder version; an environment may override its own. */
  builderSources: z.strictObject({ v1: builderCode.optional(), v2: builderCode.optional() }).prefault({}),
  /** What builder-github(v2) needs of GitHub (the API token is the secret `githubApiToken`). */
  github: z
    .strictObject({
      reportRepo: githubRepo.default("QubesOS/updates-status"),
      issuesRepo: githubRepo.default("QubesOS/build-issues"),
      /** The logs repository as owner/name, for log links (default: taken from `logs.repo`). */
      logsRepo: githubRepo.optional(),
      isoBaseUrl: z.url().optional(),
      /** github.com's ssh host keys, pinned in the logs VM's known_hosts. */
      hostKeys: z.array(hostKey).min(1).default(GITHUB_HOST_KEYS.map((k) => ({ ...k }))),
    })
    .prefault({}),
  /** openQA server of the v2 builders (credentials: the secrets `openqaKey` and `openqaSecret`). */
  openqa: z.strictObject({ server: hostname.default("openqa.qubes-os.org") }).prefault({}),
  /** Bump a generation to replace those ssh keys (new public keys are stack outputs). */
  sshKeys: z
    .strictObject({
      deployKeyGeneration: z.number().int().min(1).default(1),
      uploadKeyGeneration: z.number().int().min(1).default(1),
    })
    .prefault({}),
  webhooks: z
    .strictObject({
      /** Port nginx listens on in the net VM (default 443 with `webhookTlsCertificate`, else 80). */
      listenPort: z.number().int().min(1).max(65535).optional(),
      /** With TLS: the plain-HTTP port nginx redirects to HTTPS (null: plain HTTP not served at all). */
      httpPort: z.number().int().min(1).max(65535).nullable().default(80),
      /** Loopback port of the receiver behind nginx, inside the net VM. */
      receiverPort: z.number().int().min(1024).max(65535).default(8099),
      maxBodyBytes: z.number().int().min(1024).default(1024 * 1024),
      /**
       * Source ranges nginx in the net VM accepts webhooks from (empty: any; HMAC is checked
       * either way). Default: GitHub's published `hooks` ranges (api.github.com/meta).
       */
      allowCidrs: z.array(cidr).default([...GITHUB_HOOK_RANGES]),
    })
    .prefault({}),
  /**
   * The webhook front's TLS certificate chain (PEM, leaf first); its private key is the secret
   * `webhookTlsKey`. Unset: nginx serves plain HTTP (behind a TLS-terminating proxy, or for tests).
   */
  /** The build VMs' housekeeping timers (systemd user units in each build VM's home). */
  timers: z
    .strictObject({
      builderCleanup: z.strictObject({
        enabled: z.boolean().default(true),
        onCalendar: calendar.default("weekly"),
        /** Files in ~/builder-github-logs older than this are deleted. */
        logRetentionDays: z.number().int().min(1).max(3650).default(30),
        /** ISO pre-releases (`<builder>/iso/*pre*.iso`) older than this are deleted. */
        isoRetentionDays: z.number().int().min(1).max(3650).default(7),
      }).prefault({}),
      releaseStatus: z.strictObject({
        enabled: z.boolean().default(true),
        onCalendar: calendar.default("daily"),
        /** The upload host the status page goes to (default: the first of `uploadHosts`). */
        host: hostname.optional(),
      }).prefault({}),
    })
    .prefault({}),
  webhookTlsCertificate: z.string().regex(/^-----BEGIN CERTIFICATE-----[\s\S]+-----END CERTIFICATE-----\s*$/, "a PEM certificate chain").optional(),
});

export type SiteConfig = z.output<typeof siteConfigSchema>;

/** The origin of a logs VM's transparency log: `<logs.tlogOrigin or that VM's repository>/<logs VM>`. */
export function tlogOrigin(cfg: SiteConfig, logsVm: string): string {
  if (cfg.logs.tlogOrigin) return `${cfg.logs.tlogOrigin}/${logsVm}`;
  const repo = logsOf(cfg, logsVm).repo.replace(/^file:\/\//, "local");
  const m = /^(?:[a-z+]+:\/\/)?(?:[^@/]+@)?([^:/]+)[:/](.+?)(?:\.git)?\/?$/.exec(repo);
  const base = m ? `${m[1]}/${m[2].replace(/^\/+/, "")}` : repo;
  return `${base.replace(/[^\x21-\x2a\x2c-\x7e]/g, "_")}/${logsVm}`;
}
export type EnvConfig = SiteConfig["envs"][string];

/** The logs repository of one logs VM: the site's `logs`, with that VM's overrides. */
export interface LogsOfVm {
  repo: string;
  branch: string;
  keyFingerprint?: string;
  previousKeys: Record<string, string>;
}

export function logsOf(cfg: SiteConfig, vm: string): LogsOfVm {
  const o = cfg.logs.vms[vm] ?? {};
  const keyFingerprint = o.keyFingerprint ?? cfg.logs.keyFingerprint;
  return {
    repo: o.repo ?? cfg.logs.repo,
    branch: o.branch ?? cfg.logs.branch,
    ...(keyFingerprint !== undefined ? { keyFingerprint } : {}),
    previousKeys: o.previousKeys ?? cfg.logs.previousKeys,
  };
}

/** Formats zod issues as `qubes-build-infra:<key path>: <message>` lines. */
export function formatConfigError(error: z.ZodError, namespace = "qubes-build-infra"): string {
  return error.issues
    .map((i) => `${namespace}:${i.path.map(String).join(".") || "(root)"}: ${i.message}`)
    .join("\n");
}

/** Validates raw stack config; throws an Error listing every problem by key path. */
export function parseSiteConfig(raw: unknown): SiteConfig {
  const r = siteConfigSchema.safeParse(raw);
  if (!r.success) throw new Error(`invalid stack configuration:\n${formatConfigError(r.error)}`);
  const cfg = r.data;
  const problems: string[] = [];
  const names = new Map<string, string>();
  const claim = (vm: string, role: string) => {
    const prev = names.get(vm);
    if (prev) problems.push(`qubes-build-infra:envs: VM ${vm} would be both ${prev} and ${role}`);
    names.set(vm, role);
  };
  for (const [e, ec] of Object.entries(cfg.envs)) {
    claim(`build-${e}`, `the build VM of ${e}`);
    claim(`keys-${e}`, `the keys VM of ${e}`);
    if (ec.windows) claim(`win-keys-${e}`, `the Windows keys VM of ${e}`);
    if (!ec.builderv2) claim(`dvm-${e}`, `the disposable template of ${e}`);
    if (ec.windows && !ec.builderv2) {
      problems.push(`qubes-build-infra:envs.${e}.windows: Windows is built by qubes-builderv2's Windows executor: set envs.${e}.builderv2 to true`);
    }
  }
  const windows = Object.entries(cfg.envs).filter(([, ec]) => ec.windows).map(([e]) => e);
  if (windows.length > 0 && cfg.windowsTemplate === undefined) {
    problems.push(`qubes-build-infra:windowsTemplate: ${windows.join(", ")} build${windows.length === 1 ? "s" : ""} Windows, so builder-windows-dvm ` +
      "needs a Windows template (with Qubes Windows Tools) to run builderv2's Windows executor: name it here");
  }
  if (cfg.webhookTlsCertificate !== undefined) {
    try {
      const leaf = new X509Certificate(cfg.webhookTlsCertificate);
      if (new Date(leaf.validTo).getTime() < Date.now()) problems.push(`qubes-build-infra:webhookTlsCertificate: expired on ${leaf.validTo}`);
    } catch (e) {
      problems.push(`qubes-build-infra:webhookTlsCertificate: not a certificate nginx could load (${(e as Error).message})`);
    }
    const port = cfg.webhooks.listenPort ?? 443;
    if (cfg.webhooks.httpPort === port) problems.push(`qubes-build-infra:webhooks.httpPort: ${port} is the HTTPS port; pick another or null (no plain HTTP)`);
  }
  const statusHost = cfg.timers.releaseStatus.host;
  if (statusHost !== undefined && !(statusHost in cfg.uploadHosts)) {
    problems.push(`qubes-build-infra:timers.releaseStatus.host: ${statusHost} is not one of uploadHosts (${Object.keys(cfg.uploadHosts).join(", ") || "none"}), ` +
      "the hosts the build VMs can reach over ssh");
  }
  const logs = new Set(Object.values(cfg.envs).map((e) => e.logs));
  for (const l of logs) if (names.has(l)) problems.push(`qubes-build-infra:envs: logs VM ${l} is also ${names.get(l)}`);
  for (const v of Object.keys(cfg.logs.vms)) {
    if (!logs.has(v)) problems.push(`qubes-build-infra:logs.vms.${v}: no environment has ${v} as its logs VM (they use ${[...logs].join(", ")})`);
  }
  // Logs VMs pushing to one repository verify each other's commits: they must share one key.
  const byRepo = new Map<string, string[]>();
  for (const l of logs) byRepo.set(logsOf(cfg, l).repo, [...(byRepo.get(logsOf(cfg, l).repo) ?? []), l]);
  for (const [repo, vms] of byRepo) {
    const keys = new Set(vms.map((v) => logsOf(cfg, v).keyFingerprint));
    if (vms.length > 1 && (keys.size > 1 || keys.has(undefined))) {
      problems.push(`qubes-build-infra:logs.keyFingerprint: the logs VMs ${vms.join(", ")} share the logs repository ${repo}, so they must share one logs key: import it into each and name it here (a key generated per VM would not verify the others' commits)`);
    }
  }
  for (const fixed of [cfg.netvm, cfg.buildNetvm, cfg.logsNetvm]) {
    if (names.has(fixed) || logs.has(fixed)) problems.push(`qubes-build-infra: ${fixed} is a network VM and cannot be a site VM`);
  }
  if (problems.length) throw new Error(`invalid stack configuration:\n${problems.join("\n")}`);
  return cfg;
}
