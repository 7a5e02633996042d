/** The stack's resources as the policy pack sees them, built from the real site plan. */
import type { ResourceInput } from "../../policy/checks";
import { parseSiteConfig } from "../../site/config";
import { POLICY_FILE, PlannedRule, PlannedVm, SitePlan, buildVm, planSite, winKeysVm } from "../../site/plan";
import { WEBHOOK_SECRET_PATH, WIN_SIGN_CONFIG_PATH } from "../../policy/checks";

/** A realistic site: a v1 and a v2+Windows environment sharing one logs VM, one upload host. */
export const baseConfig = {
  admin: { transport: "sim", socket: "/tmp/qbi-policy-test.sock" },
  logs: { repo: "file:///srv/logs.git" },
  uploadHosts: { "yum.qubes-os.org": { user: "user", hostKeys: [{ type: "ssh-ed25519", key: "AAAAC3NzaC1lZDI1NTE5AAAAIE" }] } },
  windowsTemplate: "windows-10",
  envs: {
    fedora: { logs: "logs", volumeSize: "40GiB", builders: [{ dir: "/home/user/builder-r4.2", release: "4.2" }] },
    debian: { logs: "logs", builderv2: true, windows: true, volumeSize: "60GiB", builders: [{ dir: "/home/user/artifacts", release: "4.3" }] },
  },
};

const ADMIN = { transport: "sim", socket: "/tmp/qbi-policy-test.sock" };
const t = (kind: string) => `pulumi-nodejs:dynamic/qubes:${kind}`;
const urn = (kind: string, name: string) => `urn:pulumi:test::qubes-build-infra::qubes-build-infra:site:Site$${t(kind)}::${name}`;

export interface Options {
  /** Whether the webhook secret's content is marked secret (default true). */
  secretWebhook?: boolean;
  /** Use the generic `pulumi-nodejs:dynamic:Resource` type token (kinds told apart by props). */
  genericType?: boolean;
  /** The WinSign config's content as the pack would see it (default: the JSON the site writes). */
  winSignContent?: (wk: string, json: string) => string | undefined;
  /** Files and services as stacks written before VmFiles hold them: a ManagedFile or RpcService each (default false). */
  legacyFiles?: boolean;
  /** More files in the net VM, in plain text (path → content). */
  netPlainFiles?: Record<string, string>;
  /** Leave the webhook secret out. */
  noWebhookSecret?: boolean;
}

/** A VM's files and services as the site declares them: one VmFiles, or (legacyFiles) a resource each. */
type FileSpec = { content?: string; mode: number; owner: string; secret?: boolean };
function filesOf(vm: string, files: Record<string, FileSpec>, services: string[], o: Options): ResourceInput[] {
  const type = (k: string) => (o.genericType ? "pulumi-nodejs:dynamic:Resource" : t(k));
  if (!o.legacyFiles) {
    const secretPaths = new Set(Object.entries(files).filter(([, f]) => f.secret).map(([p]) => JSON.stringify(["files", p, "content"])));
    return [{
      type: type("VmFiles"), urn: urn("VmFiles", `${vm}:files`), name: `${vm}:files`,
      props: {
        vm,
        files: Object.fromEntries(Object.entries(files).map(([p, f]) => [p, { ...(f.content !== undefined ? { content: f.content } : {}), mode: f.mode, owner: f.owner, kind: "file" }])),
        services: Object.fromEntries(services.map((sv) => [sv, { contentFile: "dist/services/x.js", contentSha256: "0".repeat(64), mode: 0o755 }])),
      },
      secretKeys: new Set(secretPaths.size > 0 ? ["files"] : []),
      secretPaths,
    }];
  }
  return [
    ...Object.entries(files).map(([p, f]) => ({
      type: type("ManagedFile"), urn: urn("ManagedFile", `${vm}:${p}`), name: `${vm}:${p}`,
      props: { admin: ADMIN, vm, path: p, ...(f.content !== undefined ? { content: f.content } : {}), mode: f.mode, owner: f.owner, kind: "file" },
      secretKeys: new Set(f.secret ? ["content"] : []),
    })),
    ...services.map((sv) => ({
      type: type("RpcService"), urn: urn("RpcService", `${vm}:${sv}`), name: `${vm}:${sv}`,
      props: { admin: ADMIN, vm, service: sv, content: "#!/usr/bin/env node\n", mode: "0755" }, secretKeys: new Set<string>(),
    })),
  ];
}

/** A note verifier key of the shape the logs VM's transparency log has. */
const VERIFIER = "logs.example+0a1b2c3d+AeNmT3l2ZXJpZmllcmtleWZvcnRlc3RzcGxlYXNlMDAwMDAw";

export function vmResource(v: PlannedVm, o: Options = {}): ResourceInput {
  return {
    type: o.genericType ? "pulumi-nodejs:dynamic:Resource" : t("QubesVm"),
    urn: urn("QubesVm", v.name),
    name: v.name,
    props: {
      admin: ADMIN, name: v.name, klass: v.klass, template: v.template, label: v.label, netvm: v.netvm,
      ...(v.defaultDispvm !== undefined ? { defaultDispvm: v.defaultDispvm } : {}),
      ...(v.templateForDispvms !== undefined ? { templateForDispvms: v.templateForDispvms } : {}),
      ...(v.privateVolumeSize !== undefined ? { privateVolumeSize: v.privateVolumeSize } : {}),
      features: {}, tags: v.tags,
    },
    secretKeys: new Set(),
  };
}

export function policyResource(rules: readonly PlannedRule[], o: Options = {}): ResourceInput {
  return {
    type: o.genericType ? "pulumi-nodejs:dynamic:Resource" : t("QrexecPolicy"),
    urn: urn("QrexecPolicy", POLICY_FILE),
    name: POLICY_FILE,
    props: { admin: ADMIN, name: POLICY_FILE, rules },
    secretKeys: new Set(),
  };
}

/** Every resource the site creates that the pack reasons about, from a plan. */
export function resourcesOf(plan: SitePlan, cfg = parseSiteConfig(baseConfig), o: Options = {}): ResourceInput[] {
  const type = (k: string) => (o.genericType ? "pulumi-nodejs:dynamic:Resource" : t(k));
  const out: ResourceInput[] = [...plan.vms.map((v) => vmResource(v, o)), policyResource(plan.rules, o)];
  const hosts = Object.entries(cfg.uploadHosts).map(([host, h]) => ({ host, user: h.user, hostKeys: h.hostKeys.map((k) => `${k.type} ${k.key}`) }));
  for (const env of Object.keys(cfg.envs)) {
    const b = buildVm(env);
    out.push({
      type: type("SshProxyConfig"), urn: urn("SshProxyConfig", `${b}-ssh`), name: `${b}-ssh`,
      props: { admin: ADMIN, vm: b, netvm: cfg.netvm, hosts }, secretKeys: new Set(),
    });
    out.push(...filesOf(b, {}, ["qubesbuilder.TriggerBuild"], o));
    // win-keys-ENV of a Windows env: the key the site makes, and WinSign's config naming it (as site/components.ts does).
    const wk = winKeysVm(env);
    if (!plan.vms.some((v) => v.name === wk)) continue;
    out.push({
      type: type("AuthenticodeKey"), urn: urn("AuthenticodeKey", `${wk}:authenticode-key`), name: `${wk}:authenticode-key`,
      props: { admin: ADMIN, vm: wk, name: cfg.windowsKeyName, days: 3650 }, secretKeys: new Set(),
    });
    const winSign = { clients: [b], keys: [cfg.windowsKeyName], self: wk, verifier: VERIFIER, entryTtlSeconds: cfg.signingWindowSeconds };
    const json = `${JSON.stringify(winSign, null, 2)}\n`;
    const content = o.winSignContent ? o.winSignContent(wk, json) : json;
    out.push(...filesOf(wk, { [WIN_SIGN_CONFIG_PATH]: { ...(content !== undefined ? { content } : {}), mode: 0o644, owner: "root" } }, [], o));
  }
  const net: Parameters<typeof filesOf>[1] = {};
  if (!o.noWebhookSecret) net[WEBHOOK_SECRET_PATH] = { content: "s3cr3t-hmac-key", mode: 0o600, owner: "user", secret: o.secretWebhook !== false };
  for (const [p, content] of Object.entries(o.netPlainFiles ?? {})) net[p] = { content, mode: 0o600, owner: "root" };
  out.push(...filesOf(cfg.netvm, net, [], o));
  return out;
}

/** The plan of a config (raw stack config, validated as the site does). */
export function planOf(raw: unknown = baseConfig): { plan: SitePlan; cfg: ReturnType<typeof parseSiteConfig> } {
  const cfg = parseSiteConfig(raw);
  return { plan: planSite(cfg), cfg };
}
