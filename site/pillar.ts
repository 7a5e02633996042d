/**
 * `import-pillar`: turns the Salt formula's pillar (`build-infra:` YAML) into this project's stack
 * configuration, so that an existing site can move. Pure; the CLI does the file I/O.
 *
 * Secrets are never copied into plain stack config: each one found is reported with the
 * `pulumi config set --secret` command that stores it encrypted.
 */
import { z } from "zod";
import { parseDocument } from "yaml";
import { formatConfigError, siteConfigSchema } from "./config";

const str = z.union([z.string(), z.number()]).transform(String);
const pillarSchema = z.object({
  "build-infra": z.looseObject({
    netvm: z.string().optional(),
    "logs-template": z.string().optional(),
    "logs-netvm": z.string().optional(),
    "build-template": z.string().optional(),
    "build-netvm": z.string().optional(),
    "keys-template": z.string().optional(),
    "build-envs": z.record(z.string(), z.looseObject({
      logs: z.string().optional(),
      builderv2: z.boolean().optional(),
      windows: z.boolean().optional(),
      "volume-size": str.optional(),
      "builders-list": z.record(z.string(), z.looseObject({
        release: str.optional(),
        // Salt accepts a map or a list of single-key maps here.
        config: z.union([z.record(z.string(), z.unknown()), z.array(z.record(z.string(), z.unknown()))]).optional(),
        keys: z.array(z.string()).optional(),
      })).optional(),
    })),
    "remote-hosts": z.record(z.string(), z.looseObject({
      ssh_user: z.string().optional(),
      ssh_host_enc: z.string().optional(),
      ssh_host_key: z.string().optional(),
    })).optional(),
    logs_repo: z.string().optional(),
    logs_key_fpr: z.string().optional(),
    build_bot_name: z.string().optional(),
    build_bot_email: z.string().optional(),
    commands_public_keys: z.string().optional(),
  }),
});

/** The upstream key that signs the `mm_` tags of the formula's pins. */
const MAREK = "0064428F455451B3EBE78A7F063938BA42CFA724";
const pin = (repo: string, commit: string) => ({ url: `https://github.com/QubesOS/${repo}`, commit, tag: `mm_${commit.slice(0, 8)}`, maintainers: [MAREK] });
/** The builder code the formula pinned (its submodules and `safe-checkout-sha` arguments). */
const FORMULA_BUILDER_SOURCES = {
  v1: {
    builder: pin("qubes-builder", "3d3e766de05b37cd858f0d3cb2c6ebf716510cd8"),
    github: pin("qubes-builder-github", "a48840cb18aa0c423697220861bc44f7a27d7454"),
  },
  v2: {
    builder: pin("qubes-builderv2", "bcb20f285b9fc729217d3efb60c56dd55b152c80"),
    github: pin("qubes-builderv2-github", "afc53f0b7c24a45be4dcca9b354c526edaf102f9"),
  },
};

const SECRET_KEYS = ["github_api_key", "github_ssh_key", "mirror_ssh_key", "openqa_key", "openqa_secret", "webhook_secret"];

/** The result of an import: stack config (namespaced keys) and what the operator must still do. */
export interface PillarImport {
  config: Record<string, unknown>;
  notes: string[];
}

/** Converts pillar YAML text; throws with `file:line` or key-path messages on bad input. */
export function importPillar(text: string, file: string): PillarImport {
  const doc = parseDocument(text, { prettyErrors: false });
  if (doc.errors.length) {
    const e = doc.errors[0];
    const line = e.linePos?.[0]?.line ?? 0;
    throw new Error(`${file}:${line}: not valid YAML (${e.code}); Jinja templates must be rendered first`);
  }
  const parsed = pillarSchema.safeParse(doc.toJS());
  if (!parsed.success) throw new Error(`${file}: not a build-infra pillar:\n${formatConfigError(parsed.error, "pillar")}`);
  const p = parsed.data["build-infra"];
  const notes: string[] = [];

  const envs: Record<string, unknown> = {};
  for (const [name, e] of Object.entries(p["build-envs"])) {
    if (!e.logs) notes.push(`envs.${name}: the pillar has no logs VM; set one (the formula silently rendered an empty target, W24)`);
    const builders = Object.entries(e["builders-list"] ?? {}).map(([dir, b]) => {
      const cfgEntries = Array.isArray(b.config) ? Object.assign({}, ...b.config) : (b.config ?? {});
      const repo = (cfgEntries.repository ?? {}) as Record<string, unknown>;
      return {
        dir,
        release: b.release ?? "",
        config: { ...(cfgEntries.file ? { file: cfgEntries.file } : {}), repository: repo },
        ...(b.keys ? { keys: b.keys } : {}),
      };
    });
    envs[name] = {
      logs: e.logs ?? "",
      ...(e.builderv2 !== undefined ? { builderv2: e.builderv2 } : {}),
      ...(e.windows ? { windows: true } : {}),
      ...(e["volume-size"] ? { volumeSize: e["volume-size"] } : {}),
      builders,
    };
  }
  const uploadHosts: Record<string, unknown> = {};
  for (const [host, h] of Object.entries(p["remote-hosts"] ?? {})) {
    uploadHosts[host] = { user: h.ssh_user ?? "user", hostKeys: h.ssh_host_key ? [{ type: h.ssh_host_enc ?? "ssh-rsa", key: h.ssh_host_key }] : [] };
  }
  const site: Record<string, unknown> = {
    admin: { transport: "socket", socket: "/var/run/qubesd.sock" },
    ...(p.netvm ? { netvm: p.netvm } : {}),
    ...(p["logs-template"] ? { logsTemplate: p["logs-template"] } : {}),
    ...(p["logs-netvm"] ? { logsNetvm: p["logs-netvm"] } : {}),
    ...(p["build-template"] ? { buildTemplate: p["build-template"] } : {}),
    ...(p["build-netvm"] ? { buildNetvm: p["build-netvm"] } : {}),
    ...(p["keys-template"] ? { keysTemplate: p["keys-template"] } : {}),
    envs,
    uploadHosts,
    logs: {
      repo: `git@github.com:${p.logs_repo ?? "QubesOS/build-logs"}.git`,
      ...(p.logs_key_fpr ? { keyFingerprint: p.logs_key_fpr } : {}),
      ...(p.build_bot_name ? { botName: p.build_bot_name } : {}),
      ...(p.build_bot_email ? { botEmail: p.build_bot_email } : {}),
    },
    commands: { trustedKeys: p.commands_public_keys ?? "" },
    builderSources: FORMULA_BUILDER_SOURCES,
  };
  notes.push("builderSources are the formula's pins (qubes-infrastructure 4.2.9), each signed by tag: put the public key of "
    + `${MAREK} (qubes-developers-keys.asc) in qubes-build-infra:maintainerKeys`);
  for (const [name, e] of Object.entries(envs) as [string, { builders: { config: { file?: string } }[] }][]) {
    e.builders.forEach((b, i) => {
      if (b.config.file) {
        notes.push(`envs.${name}.builders.${i}.config.repository: pin it (commit, tag) and name its signers (maintainers); `
          + "the formula fetched whatever was newest");
      }
    });
  }
  for (const k of SECRET_KEYS) {
    if (k in p) notes.push(`${k} was not imported in plain text: pulumi config set --secret qubes-build-infra:${k} <value>`);
  }
  if (Object.values(p["build-envs"]).some((e) => e.windows)) {
    notes.push("set qubes-build-infra:windowsTemplate to the Windows template builderv2's Windows executor builds in "
      + "(the formula made builder-windows-dvm from the Fedora build template, which cannot run it)");
  }
  notes.push("set the webhook secret: pulumi config set --secret qubes-build-infra:webhookSecret <value> (the formula had none, W5)");
  const check = siteConfigSchema.safeParse(site);
  if (!check.success) notes.push(`still to fix before pulumi up:\n${formatConfigError(check.error)}`);
  const config: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(site)) config[`qubes-build-infra:${k}`] = v;
  return { config, notes };
}
