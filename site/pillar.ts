/**
 * `import-pillar`: turns the Salt formula's pillar (`build-infra:` YAML) into this project's stack
 * configuration, so that an existing site can move. Pure; the CLI does the file I/O.
 *
 * The formula spreads its pillar over several files (pillar/build-infra/init.sls for every minion,
 * logs.sls, build-vms.sls, logs-kernel*.sls for named VMs, as init.top targets them). Given the
 * directory (or its files with init.top), each VM's pillar is rebuilt as Salt would: the files
 * for every minion, then the files targeted at that VM. A logs VM whose `logs_repo` differs is
 * given its own repository (`logs.vms.<vm>`). Without a top file, the files are merged and a key
 * they disagree on is reported.
 *
 * Secrets are never copied into the stack config: each one found is named with what to do (the
 * command that stores it where this site reads it, or why this site does not need it). The result
 * goes through the full config checks (schema, cross-checks, plan) and their findings are listed.
 */
import { parseDocument } from "yaml";
import { z } from "zod";
import { formatConfigError, parseSiteConfig, siteConfigSchema } from "./config";
import { planSite } from "./plan";

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

/** The result of an import: stack config (namespaced keys) and what the operator must still do. */
export interface PillarImport {
  config: Record<string, unknown>;
  /** What was decided and why. */
  notes: string[];
  /** Each secret found, with the command that stores it or why it is not needed. */
  secrets: string[];
  /** What the full config checks refuse in the result (empty: `pulumi preview` can run). */
  findings: string[];
}

type Tree = Record<string, unknown>;
const NS = "qubes-build-infra";

// Salt reads YAML 1.1: `True`, `yes`, `on` are booleans there.
const TRUE = new Set(["true", "yes", "on", "y"]);
const FALSE = new Set(["false", "no", "off", "n", ""]);
const bool = (v: unknown, where: string): boolean => {
  const t = String(v).toLowerCase();
  if (TRUE.has(t)) return true;
  if (FALSE.has(t)) return false;
  throw new Error(`${where}: expected a boolean (true/false), got ${JSON.stringify(v)}`);
};

/** A list of single-key maps (Salt's ordered-dict form) or a map, as one map, recursively. */
function flatten(v: unknown): unknown {
  if (Array.isArray(v) && v.every((x) => typeof x === "object" && x !== null && !Array.isArray(x) && Object.keys(x).length === 1)) {
    return Object.fromEntries(v.flatMap((x) => Object.entries(x as Tree)).map(([k, x]) => [k, flatten(x)]));
  }
  if (typeof v === "object" && v !== null && !Array.isArray(v)) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, flatten(x)]));
  return v;
}

/** Parses one pillar file, every scalar as text (a release `4.10` stays "4.10"). */
function parsePillar(text: string, file: string): Tree {
  if (/\{[{%#]/.test(text)) throw new Error(`${file}: holds Jinja ({{ }}, {% %}): render it first (salt-call pillar.items --out yaml), then import that`);
  const doc = parseDocument(text, { schema: "failsafe", prettyErrors: false });
  if (doc.errors.length) {
    const e = doc.errors[0];
    const line = text.slice(0, e.pos[0]).split("\n").length;
    throw new Error(`${file}:${line}: not valid YAML (${e.code}: ${e.message.split("\n")[0]})`);
  }
  const js = (doc.toJS() ?? {}) as unknown;
  if (typeof js !== "object" || js === null || Array.isArray(js)) throw new Error(`${file}: not a pillar (a YAML map)`);
  const bi = (js as Tree)["build-infra"];
  if (bi === undefined) return {};
  if (typeof bi !== "object" || bi === null || Array.isArray(bi)) throw new Error(`${file}: build-infra: expected a map`);
  return bi as Tree;
}

/** Salt's recursive merge; records where two files disagree on a value. */
function merge(into: Tree, from: Tree, file: string, origin: Map<string, string>, conflicts: string[], at = ""): void {
  for (const [k, v] of Object.entries(from)) {
    const key = at ? `${at}:${k}` : k;
    const cur = into[k];
    if (typeof cur === "object" && cur !== null && !Array.isArray(cur) && typeof v === "object" && v !== null && !Array.isArray(v)) {
      merge(cur as Tree, v as Tree, file, origin, conflicts, key);
      continue;
    }
    if (cur !== undefined && JSON.stringify(cur) !== JSON.stringify(v)) conflicts.push(`build-infra:${key} is set differently in ${origin.get(key)} and ${file} (kept ${file}'s)`);
    into[k] = structuredClone(v);
    origin.set(key, file);
  }
}

const pillarSchema = z.looseObject({
  netvm: z.string().optional(),
  "logs-template": z.string().optional(),
  "logs-netvm": z.string().optional(),
  "build-template": z.string().optional(),
  "build-netvm": z.string().optional(),
  "keys-template": z.string().optional(),
  "build-envs": z.record(z.string(), z.looseObject({
    logs: z.string().optional(),
    builderv2: z.string().optional(),
    windows: z.string().optional(),
    "volume-size": z.string().optional(),
    "builders-list": z.record(z.string(), z.looseObject({
      release: z.string().optional(),
      config: z.unknown().optional(),
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
});
type Pillar = z.infer<typeof pillarSchema>;

const logsUrl = (repo: string | undefined) => `git@github.com:${repo ?? "QubesOS/build-logs"}.git`;

/**
 * What to do with each secret of the formula's pillar. This site stores only the webhook secret
 * in the stack; the others stay where the formula put them (its states wrote them into the VMs).
 */
function secretAdvice(key: string, vms: string[]): string {
  const at = vms.length > 0 ? vms.join(", ") : "the VMs it was targeted at";
  const place = (file: string) => `(the key saved from the pillar as ./${key}) ` + vms.map((vm) => `qvm-run --pass-io --no-gui --user user ${vm} 'umask 077 && mkdir -p ~/.ssh && cat > ~/.ssh/${file}' < ${key}`).join("; ");
  switch (key) {
    case "github_ssh_key":
      return `${key} (${at}): the deploy key that pushes the logs repository; this site does not store it: put it in place in dom0 with ${place("id_rsa")}`;
    case "mirror_ssh_key":
      return `${key} (${at}): the key build VMs upload with; this site does not store it: put it in place in dom0 with ${place("id_rsa")}`;
    case "github_api_key":
      return `${key} (${at}): used by the formula's builder-github notifications, which this site does not run: nothing to store (a qubes-build-infra:commands.notify program that posts to GitHub keeps its own token)`;
    case "openqa_key":
    case "openqa_secret":
      return `${key} (${at}): openQA submission is not part of this site: nothing to store`;
    default:
      return `${key} (${at}): not used by this site: nothing to store`;
  }
}
const SECRET_KEYS = ["github_api_key", "github_ssh_key", "mirror_ssh_key", "openqa_key", "openqa_secret", "webhook_secret"];

/** The top file's targeting: minion → SLS names (`build-infra.logs`). */
function parseTop(text: string, file: string): Map<string, string[]> {
  const doc = parseDocument(text, { schema: "failsafe", prettyErrors: false });
  if (doc.errors.length) throw new Error(`${file}: not valid YAML (${doc.errors[0].code})`);
  const base = ((doc.toJS() ?? {}) as Tree).base;
  if (typeof base !== "object" || base === null) throw new Error(`${file}: expected a top file with a 'base:' environment`);
  const out = new Map<string, string[]>();
  for (const [minion, sls] of Object.entries(base as Tree)) {
    if (!Array.isArray(sls)) throw new Error(`${file}: base:${minion}: expected a list of pillar files`);
    out.set(minion, sls.map(String));
  }
  return out;
}

/** Imports pillar files and directories (a directory: its *.sls, targeted by its init.top when present). */
export function importPillarFiles(
  paths: string[],
  read: (file: string) => string,
  list: (dir: string) => string[],
  isDir: (p: string) => boolean,
): PillarImport {
  const files = new Map<string, string>();
  let top: { text: string; file: string; dir: string } | undefined;
  for (const p of paths) {
    if (isDir(p)) {
      for (const n of list(p).sort()) {
        const f = `${p.replace(/\/$/, "")}/${n}`;
        if (n === "init.top") top = { text: read(f), file: f, dir: p };
        else if (n.endsWith(".sls")) files.set(f, read(f));
      }
    } else if (p.endsWith(".top")) {
      top = { text: read(p), file: p, dir: p.replace(/\/[^/]*$/, "") };
    } else {
      files.set(p, read(p));
    }
  }
  if (files.size === 0) throw new Error(`no pillar files (*.sls) in ${paths.join(", ")}`);
  const parsed = new Map([...files].map(([f, t]) => [f, parsePillar(t, f)]));
  const notes: string[] = [];
  const conflicts: string[] = [];

  // Which files every minion reads, and which only some VMs read.
  const everyone: string[] = [];
  const targeted = new Map<string, string[]>();
  if (top) {
    const byName = (sls: string) => {
      const rel = sls === "build-infra" ? "init.sls" : `${sls.replace(/^build-infra\./, "").replace(/\./g, "/")}.sls`;
      return [...files.keys()].find((f) => f.endsWith(`/${rel}`) || f === rel);
    };
    for (const [minion, sls] of parseTop(top.text, top.file)) {
      for (const s of sls) {
        const f = byName(s);
        if (!f) {
          notes.push(`${top.file}: ${minion} reads ${s}, which is not among the files given`);
          continue;
        }
        if (minion === "*") everyone.push(f);
        else targeted.set(minion, [...(targeted.get(minion) ?? []), f]);
      }
    }
    const used = new Set([...everyone, ...[...targeted.values()].flat()]);
    for (const f of files.keys()) if (!used.has(f)) notes.push(`${f}: not targeted by ${top.file}; ignored`);
  } else {
    everyone.push(...files.keys());
    if (files.size > 1) notes.push(`no top file given: the ${files.size} files were merged as if every VM read them all (give the pillar directory, with its init.top, to keep per-VM values apart)`);
  }
  const pillarFor = (vm?: string): Tree => {
    const out: Tree = {};
    const origin = new Map<string, string>();
    for (const f of [...everyone, ...(vm ? targeted.get(vm) ?? [] : [])]) merge(out, parsed.get(f)!, f, origin, vm ? [] : conflicts);
    return out;
  };

  const shape = pillarSchema.safeParse(flatten(pillarFor()));
  if (!shape.success) throw new Error(`not a build-infra pillar:\n${formatConfigError(shape.error, "pillar:build-infra")}`);
  const p: Pillar = shape.data;
  notes.push(...conflicts);

  const envs: Tree = {};
  for (const [name, e] of Object.entries(p["build-envs"])) {
    const where = `pillar:build-infra:build-envs:${name}`;
    if (!e.logs) notes.push(`envs.${name}: the pillar has no logs VM (the formula rendered an empty target): set qubes-build-infra:envs.${name}.logs`);
    const builders = Object.entries(e["builders-list"] ?? {}).map(([dir, b]) => {
      const cfg = (flatten(b.config ?? {}) ?? {}) as Tree;
      const repo = (cfg.repository ?? undefined) as Tree | undefined;
      return {
        dir,
        release: b.release ?? "",
        ...(cfg.file || repo ? { config: { ...(cfg.file ? { file: cfg.file } : {}), ...(repo ? { repository: repo } : {}) } } : {}),
        ...(b.keys ? { keys: b.keys } : {}),
      };
    });
    envs[name] = {
      logs: e.logs ?? "",
      ...(e.builderv2 !== undefined ? { builderv2: bool(e.builderv2, `${where}:builderv2`) } : {}),
      ...(e.windows !== undefined && bool(e.windows, `${where}:windows`) ? { windows: true } : {}),
      ...(e["volume-size"] ? { volumeSize: e["volume-size"] } : {}),
      builders,
    };
  }
  const uploadHosts: Tree = {};
  for (const [host, h] of Object.entries(p["remote-hosts"] ?? {})) {
    uploadHosts[host] = { user: h.ssh_user ?? "user", hostKeys: h.ssh_host_key ? [{ type: h.ssh_host_enc ?? "ssh-rsa", key: h.ssh_host_key }] : [] };
  }

  // Per-VM values: a logs VM's own repository, the build VMs' command signers and every secret.
  const logsVms = [...new Set(Object.values(p["build-envs"]).map((e) => e.logs).filter((l): l is string => !!l))];
  const perLogs: Tree = {};
  for (const l of logsVms) {
    const own = pillarSchema.partial().safeParse(flatten(pillarFor(l)));
    if (!own.success) continue;
    const o: Tree = {};
    if (own.data.logs_repo !== p.logs_repo) o.repo = logsUrl(own.data.logs_repo);
    if (own.data.logs_key_fpr && own.data.logs_key_fpr !== p.logs_key_fpr) o.keyFingerprint = own.data.logs_key_fpr;
    if (Object.keys(o).length > 0) {
      perLogs[l] = o;
      notes.push(`logs.vms.${l}: ${l} has its own logs repository (${String(o.repo ?? logsUrl(p.logs_repo))}), as the pillar targeted at it says`);
    }
  }
  const buildVms = Object.keys(p["build-envs"]).map((e) => `build-${e}`);
  const perVm = buildVms.map((b) => pillarFor(b).commands_public_keys as string | undefined);
  const signers = new Set([p.commands_public_keys, ...perVm].filter((x): x is string => !!x));
  if (signers.size > 1) notes.push("commands_public_keys differs between build VMs: this site has one set of command signers (qubes-build-infra:commands.trustedKeys); the union was kept");
  // Each secret: the files holding it decide which VMs had it (every VM for a file every minion reads).
  const defaultHolders: Record<string, string[]> = { github_ssh_key: logsVms, mirror_ssh_key: buildVms };
  const secrets: string[] = [];
  for (const k of SECRET_KEYS) {
    const holders = [...parsed].filter(([, t]) => k in t).map(([f]) => f);
    if (holders.length === 0) continue;
    const vms = holders.some((f) => everyone.includes(f))
      ? defaultHolders[k] ?? []
      : [...targeted].filter(([, fs]) => fs.some((f) => holders.includes(f))).map(([vm]) => vm);
    secrets.push(secretAdvice(k, vms));
  }
  secrets.push(`webhookSecret: the GitHub webhook HMAC secret (the formula had none): pulumi config set --secret ${NS}:webhookSecret "$(head -c 32 /dev/urandom | base64)", and give the same value to GitHub's webhook settings`);
  const unused = ["build_report_repo", "build_issues_repo", "iso_base_url", "openqa_server", "logs_repo_public_key"].filter((k) => [...parsed.values()].some((t) => k in t));
  if (unused.length > 0) notes.push(`not used by this site, not imported: ${unused.join(", ")} (the logs VM holds the logs key itself; GitHub reporting and openQA are not part of this site)`);
  if (p.logs_key_fpr === undefined) notes.push("the pillar names no logs key (logs_key_fpr): the logs VM will generate one on the first pulumi up");

  const site: Tree = {
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
      repo: logsUrl(p.logs_repo),
      ...(p.logs_key_fpr ? { keyFingerprint: p.logs_key_fpr } : {}),
      ...(p.build_bot_name ? { botName: p.build_bot_name } : {}),
      ...(p.build_bot_email ? { botEmail: p.build_bot_email } : {}),
      ...(Object.keys(perLogs).length > 0 ? { vms: perLogs } : {}),
    },
    commands: { trustedKeys: [...signers].join("") },
    builderSources: FORMULA_BUILDER_SOURCES,
  };
  notes.push("builderSources are the formula's pins (qubes-infrastructure 4.2.9), each signed by tag: put the public key of "
    + `${MAREK} (qubes-developers-keys.asc) in ${NS}:maintainerKeys`);
  for (const [name, e] of Object.entries(envs) as [string, { builders: { config?: { file?: unknown } }[] }][]) {
    e.builders.forEach((b, i) => {
      if (b.config?.file) {
        notes.push(`envs.${name}.builders.${i}.config.repository: pin it (commit, tag) and name its signers (maintainers); `
          + "the formula fetched whatever was newest");
      }
    });
  }
  if (Object.values(p["build-envs"]).some((e) => e.windows)) {
    notes.push("set qubes-build-infra:windowsTemplate to the Windows template builderv2's Windows executor builds in "
      + "(the formula made builder-windows-dvm from the Fedora build template, which cannot run it)");
  }
  const config: Tree = {};
  for (const [k, v] of Object.entries(site)) config[`${NS}:${k}`] = v;
  return { config, notes, secrets, findings: checkSite(site) };
}

/** The full config checks on an imported site: the schema, the cross-checks and the plan. */
export function checkSite(site: Tree): string[] {
  const schema = siteConfigSchema.safeParse(site);
  if (!schema.success) return formatConfigError(schema.error).split("\n");
  try {
    planSite(parseSiteConfig(site));
    return [];
  } catch (e) {
    return (e as Error).message.split("\n").filter((l) => l !== "" && !/^invalid stack configuration:$/.test(l));
  }
}

/** One pillar file (for callers holding its text). */
export function importPillar(text: string, file: string): PillarImport {
  return importPillarFiles([file], () => text, () => [], () => false);
}
