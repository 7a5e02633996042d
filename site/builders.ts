/**
 * The builders of an environment, from stack config to what goes into its build VM: the pinned
 * checkouts (builder code, builder-github code, the config repository of each builder), the
 * builder configuration files (builderv2 `builder.yml` + `builder-github.yml`, v1 `builder.conf`
 * + `builder-github.conf`), `builders.list`, the openQA client config, and the entry points that
 * TriggerBuild and ProcessGithubCommand start.
 *
 * Pure: no Pulumi, no I/O. Values only known at deploy time (the signing key's fingerprint, the
 * secrets) are parameters of the render functions. Every problem is reported with the
 * environment, the builder and the reason, at preview.
 */
import { stringify } from "yaml";
import type { BuildersListEntry } from "../contracts/buildersList";
import { builderGithubYmlSchema, builderYmlSchema, schemaProblems, type BuilderGithubYml, type BuilderYml } from "./builderv2Schema";
import type { EnvConfig, SiteConfig } from "./config";
import { BUILDER_DVM, keysVm } from "./plan";

/** Paths in build VMs that the builders use (formula layout, so that builder-github's scripts find them). */
export const BUILDER_PATHS = {
  v2Builder: "/home/user/qubes-builderv2",
  v2Github: "/home/user/qubes-builderv2-github",
  githubYml: "/home/user/builder-github.yml",
  githubConf: "/home/user/builder-github.conf",
  notifyState: "/home/user/github-notify-state",
  openqaConf: "/home/user/.config/openqa/client.conf",
  /** v1 builder-github's handlers source `functions.sh` from here (a symlink to a checkout's `lib`). */
  v1Lib: "/usr/local/lib/qubes-builder-github",
  buildersList: "/home/user/.config/qubes-builder-github/builders.list",
  gpgClient: "/usr/local/bin/qubes-gpg-client-wrapper",
  sshKey: "/home/user/.ssh/id_ed25519",
} as const;

type Builder = EnvConfig["builders"][number];
type GitSource = NonNullable<SiteConfig["builderSources"]["v2"]>["builder"];

/** One repository checked out at a pinned, verified commit (a BuilderCheckout). */
export interface PlannedCheckout {
  /** Unique within the env: `qubes-builderv2`, `config:/home/user/artifacts-r4.3`, ... */
  key: string;
  /** For messages: `env debian, builder /home/user/artifacts-r4.3, config repository release-configs`. */
  label: string;
  dir: string;
  url: string;
  commit: string;
  tag?: string;
  maintainers: string[];
  /** The checkout this one lives inside (it must exist first). */
  inside?: string;
}

/** Where a builder's problem is: `env debian, builder /home/user/artifacts-r4.3`. */
export const builderLabel = (env: string, b: Builder): string => `env ${env}, builder ${b.dir}`;

/** An error that names the environment, the builder and every reason. */
export class BuilderConfigError extends Error {}

const versionOf = (e: EnvConfig): 1 | 2 => (e.builderv2 ? 2 : 1);

/** The builder code of an environment: its own pins over the site's pins of its version. */
function codeOf(cfg: SiteConfig, env: string): { builder: GitSource; github: GitSource } {
  const e = cfg.envs[env];
  const v = versionOf(e);
  const site = v === 2 ? cfg.builderSources.v2 : cfg.builderSources.v1;
  const builder = e.builderSources?.builder ?? site?.builder;
  const github = e.builderSources?.github ?? site?.github;
  if (!builder || !github) {
    const missing = [!builder && "builder", !github && "github"].filter(Boolean).join(" and ");
    throw new BuilderConfigError(`env ${env}: no pinned ${missing} code for a v${v} environment: `
      + `set qubes-build-infra:builderSources.v${v} (url, commit, tag, maintainers) or envs.${env}.builderSources`);
  }
  return { builder, github };
}

/** The config repository's checkout directory of a builder. */
export function configRepoDir(e: EnvConfig, b: Builder): string {
  const comp = b.config.repository.component;
  return e.builderv2 ? `${b.dir}/config/${comp}` : `${b.dir}/qubes-src/${comp}`;
}

/** The config repository of a builder, or null when it uses none (v1 without `config.file`). */
function configCheckout(env: string, e: EnvConfig, b: Builder): PlannedCheckout | null {
  const r = b.config.repository;
  const label = `${builderLabel(env, b)}, config repository ${r.component}`;
  if (!b.config.file) {
    if (e.builderv2) throw new BuilderConfigError(`${label}: a builderv2 builder needs config.file (the builder configuration inside ${r.component})`);
    return null;
  }
  if (!r.commit) throw new BuilderConfigError(`${label}: pin it: set config.repository.commit (and tag, if its releases are signed tags)`);
  if (r.maintainers.length === 0) throw new BuilderConfigError(`${label}: name who signs it: config.repository.maintainers (fingerprints)`);
  return {
    key: `config:${b.dir}`, label, dir: configRepoDir(e, b), url: `${r.baseurl}${r.component}`, commit: r.commit,
    ...(r.tag ? { tag: r.tag } : {}), maintainers: r.maintainers, ...(e.builderv2 ? {} : { inside: `builder:${b.dir}` }),
  };
}

const fromSource = (s: GitSource) => ({ url: s.url, commit: s.commit, ...(s.tag ? { tag: s.tag } : {}), maintainers: s.maintainers });

/** Every checkout of an environment, parents before what lives inside them. */
/** The qubes-builderv2 checkout of a builderv2 environment alone (without its builders' config repositories). */
export function v2BuilderCheckout(cfg: SiteConfig, env: string): PlannedCheckout {
  return { key: "qubes-builderv2", label: `env ${env}, qubes-builderv2`, dir: BUILDER_PATHS.v2Builder, ...fromSource(codeOf(cfg, env).builder) };
}

export function checkoutsOf(cfg: SiteConfig, env: string): PlannedCheckout[] {
  const e = cfg.envs[env];
  const code = codeOf(cfg, env);
  const out: PlannedCheckout[] = [];
  if (e.builderv2) {
    out.push(v2BuilderCheckout(cfg, env));
    out.push({ key: "qubes-builderv2-github", label: `env ${env}, qubes-builderv2-github`, dir: BUILDER_PATHS.v2Github, ...fromSource(code.github) });
    for (const b of e.builders) out.push(configCheckout(env, e, b)!);
  } else {
    for (const b of e.builders) {
      out.push({ key: `builder:${b.dir}`, label: `${builderLabel(env, b)}, qubes-builder`, dir: b.dir, ...fromSource(code.builder) });
      out.push({
        key: `github:${b.dir}`, label: `${builderLabel(env, b)}, qubes-builder-github`, dir: `${b.dir}/qubes-src/builder-github`,
        ...fromSource(code.github), inside: `builder:${b.dir}`,
      });
      const c = configCheckout(env, e, b);
      if (c) out.push(c);
    }
  }
  return out;
}

/** The entries of an env's `builders.list`: a v1 builder's dir, or qubes-builderv2 with `<dir>/builder.yml` (format: contracts/buildersList.ts). */
export function buildersListOf(e: EnvConfig): BuildersListEntry[] {
  return e.builders.map((b) => (e.builderv2 ? { release: b.release, builderDir: BUILDER_PATHS.v2Builder, conf: `${b.dir}/builder.yml` }
    : { release: b.release, builderDir: b.dir }));
}

/** The upload destinations of a builder of `release` (`repository-upload-remote-host`), from the upload hosts. */
export function uploadTargets(cfg: SiteConfig, release: string): Partial<Record<string, string>> {
  const out: Record<string, string> = {};
  const by: Record<string, string> = {};
  for (const [host, h] of Object.entries(cfg.uploadHosts)) {
    for (const [kind, dir] of Object.entries(h.repositories)) {
      if (by[kind]) {
        throw new BuilderConfigError(`qubes-build-infra:uploadHosts: ${kind} repositories are uploaded to both ${by[kind]} and ${host}; `
          + "builderv2 takes one host per kind");
      }
      by[kind] = host;
      out[kind] = `${h.user}@${host}:${dir.replaceAll("{release}", release)}`;
    }
  }
  return out;
}

/** The logs repository as `owner/name` (for log links in GitHub comments). */
export function logsRepoName(cfg: SiteConfig): string {
  if (cfg.github.logsRepo) return cfg.github.logsRepo;
  const m = /github\.com[:/]([A-Za-z0-9_.-]+\/[A-Za-z0-9_.-]+?)(\.git)?$/.exec(cfg.logs.repo);
  return m ? m[1] : "QubesOS/build-logs";
}

/** A builder's `builder.yml` (v2) as a document; `signingKey` is the env's key fingerprint. */
export function builderYmlDoc(cfg: SiteConfig, b: Builder, signingKey: string): BuilderYml {
  const comp = b.config.repository.component;
  return {
    include: [`config/${comp}/${b.config.file ?? ""}`, BUILDER_PATHS.githubYml],
    "artifacts-dir": b.dir,
    "qubes-release": `r${b.release}`,
    executor: { type: "qubes", options: { dispvm: BUILDER_DVM } },
    "gpg-client": BUILDER_PATHS.gpgClient,
    "sign-key": { rpm: signingKey, deb: signingKey, archlinux: signingKey, iso: signingKey },
    "repository-upload-remote-host": uploadTargets(cfg, b.release),
  };
}

/** The shared `builder-github.yml` (v2) as a document; `apiToken` may be empty (no notifications). */
export function builderGithubYmlDoc(cfg: SiteConfig, apiToken: string): BuilderGithubYml {
  const list = (l: "_all_" | string[]) => (l === "_all_" ? l : [...l]);
  return {
    github: {
      "state-dir": BUILDER_PATHS.notifyState,
      "api-key": apiToken,
      "build-report-repo": cfg.github.reportRepo,
      "build-issues-repo": cfg.github.issuesRepo,
      "logs-repo": logsRepoName(cfg),
      ...(cfg.github.isoBaseUrl ? { "iso-base-url": cfg.github.isoBaseUrl } : {}),
      maintainers: Object.fromEntries(Object.entries(cfg.commands.maintainers).map(([f, m]) => [f, {
        components: list(m.components), distributions: list(m.distributions), templates: list(m.templates), iso: m.iso,
      }])),
    },
  };
}

const header = (what: string) => `# ${what}\n# Written by qubes-build-infra from the stack configuration: edits are overwritten.\n`;

function checked<T>(schema: Parameters<typeof schemaProblems>[0], doc: T, where: string, file: string): T {
  const problems = schemaProblems(schema, doc);
  if (problems.length) throw new BuilderConfigError(`${where}: ${file} would not load as builderv2 expects:\n  ${problems.join("\n  ")}`);
  return doc;
}

/** `builder.yml` text of a v2 builder, checked against what builderv2's loader accepts. */
export function renderBuilderYml(cfg: SiteConfig, env: string, b: Builder, signingKey: string): string {
  const doc = checked(builderYmlSchema, builderYmlDoc(cfg, b, signingKey), builderLabel(env, b), "builder.yml");
  return header(`builderv2 configuration of ${b.dir} (env ${env})`) + stringify(doc, { lineWidth: 0 });
}

/** `builder-github.yml` text (v2), checked; mode 0600: it holds the API token. */
export function renderBuilderGithubYml(cfg: SiteConfig, env: string, apiToken: string): string {
  const doc = checked(builderGithubYmlSchema, builderGithubYmlDoc(cfg, apiToken), `env ${env}`, "builder-github.yml");
  return header("builderv2-github settings, included by every builder.yml") + stringify(doc, { lineWidth: 0 });
}

/** v1 `ALLOWED_DISTS_<fpr>` values: `vm-X` → `X`, host/dom0 → `dom0`; `_all_` → every configured dist. */
function v1AllowedDists(d: "_all_" | string[]): string {
  if (d === "_all_") return "$(DISTS_VM) dom0";
  return [...new Set(d.map((x) => (x.startsWith("vm-") ? x.slice(3) : "dom0")))].join(" ");
}

/** `builder.conf` of a v1 builder (a Makefile fragment read by qubes-builder). */
export function renderBuilderConf(cfg: SiteConfig, env: string, b: Builder, signingKey: string): string {
  const e = cfg.envs[env];
  const lines = [header(`qubes-builder (v1) configuration of ${b.dir} (env ${env})`).trimEnd()];
  if (b.config.file) {
    lines.push("# The release configuration, from the pinned and verified config repository:");
    lines.push(`include ${configRepoDir(e, b)}/${b.config.file}`);
  }
  lines.push(`# Packages and repositories are signed through split-GPG in ${keysVm(env)} (~/.rpmmacros, gpg-split-domain).`);
  lines.push(`SIGN_KEY = ${signingKey}`, `DEBIAN_SIGN_KEY = ${signingKey}`);
  const m = Object.entries(cfg.commands.maintainers);
  if (m.length) lines.push("# Distributions each command signer may upload (Upload commands):");
  for (const [f, x] of m) lines.push(`ALLOWED_DISTS_${f} = ${v1AllowedDists(x.distributions)}`);
  lines.push(`include ${BUILDER_PATHS.githubConf}`);
  return lines.join("\n") + "\n";
}

/** The shared v1 `builder-github.conf` (Makefile fragment); mode 0600: it holds the API token. */
export function renderBuilderGithubConf(cfg: SiteConfig, apiToken: string): string {
  if (!/^[A-Za-z0-9_-]*$/.test(apiToken)) {
    throw new BuilderConfigError("qubes-build-infra:githubApiToken: a GitHub token has only letters, digits, '_' and '-'");
  }
  return [
    header("qubes-builder-github (v1) settings, included by every builder.conf").trimEnd(),
    'ifeq "$(origin COMPONENTS)" "file"',
    "COMPONENTS += builder-github",
    "endif",
    "BUILDER_PLUGINS += builder-github",
    `GITHUB_STATE_DIR = ${BUILDER_PATHS.notifyState}`,
    `GITHUB_API_KEY = ${apiToken}`,
    `GITHUB_BUILD_REPORT_REPO = ${cfg.github.reportRepo}`,
    `GITHUB_BUILD_ISSUES_REPO = ${cfg.github.issuesRepo}`,
    `GITHUB_LOGS_REPO = ${logsRepoName(cfg)}`,
    "",
  ].join("\n");
}

/** `~/.config/openqa/client.conf`: a section named after the server with the API key and secret. */
export function renderOpenqaConf(server: string, key: string, secret: string): string {
  for (const [name, v] of [["openqaKey", key], ["openqaSecret", secret]] as const) {
    if (!/^[A-Za-z0-9]+$/.test(v)) throw new BuilderConfigError(`qubes-build-infra:${name}: openQA API keys and secrets are hex strings (letters and digits)`);
  }
  return `[${server}]\nkey = ${key}\nsecret = ${secret}\n`;
}

/** How TriggerBuild starts a build (services/trigger-build.ts `entryPoints`). */
export interface EntryPoint {
  command: string[];
  lock: string;
  env?: Record<string, string>;
  listComponents?: string[];
  listComponentUrls?: string[];
}

/** TriggerBuild's entry point of a builder version: v1 `scripts/auto-build`, v2 `github-command.py action build-component`. */
export function triggerEntryPoint(version: 1 | 2): EntryPoint {
  if (version === 1) {
    return {
      command: ["{dir}/scripts/auto-build", "{component}"],
      lock: "{dir}/builder.lock",
      listComponents: ["make", "-s", "-C", "{dir}", "get-var", "GET_VAR=COMPONENTS"],
    };
  }
  const qb = ["{builderDir}/qb", "--builder-conf", "{conf}", "config", "get-components"];
  return {
    command: [`${BUILDER_PATHS.v2Github}/github-command.py`, "action", "--no-signer-github-command-check", "build-component",
      "{builderDir}", "{conf}", "{component}"],
    lock: "{builderDir}/builder.lock",
    env: { PYTHONPATH: "{builderDir}" },
    listComponents: qb,
    listComponentUrls: [...qb, "--attribute", "url"],
  };
}

/** How ProcessGithubCommand runs an accepted command (services/process-github-command.ts `actions`). */
export interface CommandAction {
  command: string[];
  scope: "builder" | "vm";
  lock?: string;
  env?: Record<string, string>;
}

/**
 * ProcessGithubCommand's actions: v2 `github-command.py action <subcommand>` per builder of the
 * release under the qubes-builderv2 lock; v1 builder-github's handlers, once (they take each
 * builder's lock themselves).
 */
export function commandActions(version: 1 | 2): Record<string, CommandAction> {
  if (version === 1) {
    return {
      Upload: { command: [`${BUILDER_PATHS.v1Lib}/github-command-upload`, "{commandFile}", "{signer}"], scope: "vm" },
      "Build-template": { command: [`${BUILDER_PATHS.v1Lib}/github-command-build-template`, "{commandFile}", "{signer}"], scope: "vm" },
    };
  }
  const action = (sub: string, ...args: string[]): CommandAction => ({
    command: [`${BUILDER_PATHS.v2Github}/github-command.py`, "action", "--signer-fpr", "{signer}", sub, "{builderDir}", "{conf}", ...args],
    scope: "builder", lock: "{builderDir}/builder.lock", env: { PYTHONPATH: "{builderDir}" },
  });
  return {
    "Upload-component": action("upload-component", "{component}", "{commit}", "{repo}", "--distribution", "{dists...}"),
    "Build-template": action("build-template", "{template}", "{timestamp}"),
    "Upload-template": action("upload-template", "{template}", "{version}", "{repo}"),
    "Build-iso": action("build-iso", "{version}", "{timestamp}"),
  };
}

/**
 * Everything checkable about an environment's builders before anything is deployed: the pins,
 * and every generated builderv2 file against builderv2's loader rules (with a stand-in key and
 * token: the real ones only change values the schema already admits).
 */
export function checkBuilders(cfg: SiteConfig, env: string): void {
  const e = cfg.envs[env];
  checkoutsOf(cfg, env);
  uploadTargets(cfg, "0");
  const placeholder = "0".repeat(40);
  if (e.builderv2) {
    for (const b of e.builders) renderBuilderYml(cfg, env, b, placeholder);
    renderBuilderGithubYml(cfg, env, "");
  } else {
    for (const b of e.builders) renderBuilderConf(cfg, env, b, placeholder);
    renderBuilderGithubConf(cfg, "");
  }
}
