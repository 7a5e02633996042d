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
    out.push({
      type: type("RpcService"), urn: urn("RpcService", `${b}-TriggerBuild`), name: `${b}-TriggerBuild`,
      props: { admin: ADMIN, vm: b, service: "qubesbuilder.TriggerBuild", content: "#!/usr/bin/env node\n", mode: "0755" }, secretKeys: new Set(),
    });
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
    out.push({
      type: type("ManagedFile"), urn: urn("ManagedFile", `${wk}:${WIN_SIGN_CONFIG_PATH}`), name: `${wk}:${WIN_SIGN_CONFIG_PATH}`,
      props: { admin: ADMIN, vm: wk, path: WIN_SIGN_CONFIG_PATH, ...(content !== undefined ? { content } : {}), mode: 420, owner: "root", kind: "file" },
      secretKeys: new Set(),
    });
  }
  out.push({
    type: type("ManagedFile"), urn: urn("ManagedFile", "webhook-secret"), name: "webhook-secret",
    props: { admin: ADMIN, vm: cfg.netvm, path: WEBHOOK_SECRET_PATH, content: "s3cr3t-hmac-key", mode: "0600", owner: "user", kind: "secret" },
    secretKeys: new Set(o.secretWebhook === false ? [] : ["content"]),
  });
  return out;
}

/** The plan of a config (raw stack config, validated as the site does). */
export function planOf(raw: unknown = baseConfig): { plan: SitePlan; cfg: ReturnType<typeof parseSiteConfig> } {
  const cfg = parseSiteConfig(raw);
  return { plan: planSite(cfg), cfg };
}
