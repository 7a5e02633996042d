/**
 * The site as the policy pack sees it: the stack's resources parsed (zod) into VMs, qrexec rules,
 * files and proxy configs, and a synthetic `internal.GetSystemInfo` for the qrexec evaluator.
 *
 * Pure: no Pulumi, no I/O. `policy/index.ts` feeds it the resources of a stack; the tests feed it
 * resources built from the site plan.
 */
import { z } from "zod";
import { isVmName } from "../contracts/names";
import { roleOfTag, type Role } from "../contracts/vm";
import { parseVmFileKey } from "../contracts/vmFileKey";
import { DOM0_UUID, DomainInfo, PolicySet, Rule, SystemInfo, loadPolicySet, policyRule, renderPolicy } from "../qrexec";

/** One resource of the stack, as the pack reads it (plain JSON props). */
export interface ResourceInput {
  /** Pulumi type token, e.g. `pulumi-nodejs:dynamic/qubes:QubesVm`. */
  type: string;
  urn: string;
  name: string;
  props: unknown;
  /**
   * Top-level prop names whose value is a Pulumi secret. `undefined`: the pack could not tell
   * (then a check that needs secretness fails closed).
   */
  secretKeys?: ReadonlySet<string>;
  /**
   * Where nested secrets sit: JSON-encoded paths (policy/secrets.ts `secretPathsOfRaw`), e.g.
   * `["files","/path","content"]`. `undefined`: the pack could not tell.
   */
  secretPaths?: ReadonlySet<string>;
}

/** True when the value at `path` is secret or lies inside a secret (`paths` as in `ResourceInput.secretPaths`). */
export function isSecretAt(paths: ReadonlySet<string>, path: readonly (string | number)[]): boolean {
  for (let n = 1; n <= path.length; n++) if (paths.has(JSON.stringify(path.slice(0, n)))) return true;
  return false;
}

/** The kinds of resource the site's providers create (those the pack reads). */
export type Kind = "QubesVm" | "QrexecPolicy" | "VmFiles" | "ManagedFile" | "RpcService" | "SshProxyConfig" | "AuthenticodeKey";
const KINDS: readonly Kind[] = ["QubesVm", "QrexecPolicy", "VmFiles", "ManagedFile", "RpcService", "SshProxyConfig", "AuthenticodeKey"];

/** Stands for a value the engine does not know yet (preview): `policy/index.ts` puts it in place of such a value. */
export const UNKNOWN_AT_PREVIEW = "<unknown at preview>";

export const QubesVmProps = z.looseObject({
  name: z.string(),
  klass: z.string(),
  template: z.string().nullish(),
  label: z.string().nullish(),
  netvm: z.string().nullable().optional(),
  providesNetwork: z.boolean().nullish(),
  defaultDispvm: z.string().nullish(),
  templateForDispvms: z.boolean().nullish(),
  privateVolumeSize: z.number().nullish(),
  features: z.record(z.string(), z.string()).nullish(),
  tags: z.array(z.string()).nullish(),
});

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

/** A rule as the provider takes it (qrexec/rule.ts); the pack also reads null params, and null values in them, as absent. */
const RuleProps = z.preprocess((r) => {
  if (!isRecord(r) || !("params" in r)) return r;
  const params = isRecord(r.params) ? Object.fromEntries(Object.entries(r.params).filter(([, x]) => x !== null)) : r.params ?? undefined;
  return { ...r, params };
}, policyRule);

export const QrexecPolicyProps = z.looseObject({ name: z.string(), rules: z.array(RuleProps) });
export const ManagedFileProps = z.looseObject({
  vm: z.string(),
  path: z.string(),
  content: z.string().nullish(),
  mode: z.union([z.string(), z.number()]).nullish(),
  owner: z.string().nullish(),
  kind: z.string().nullish(),
});
/** Every file and service the site places in one VM: files by path (a block: `path#blockId`), services by name. */
export const VmFilesProps = z.looseObject({
  vm: z.string(),
  files: z.record(z.string(), z.looseObject({ content: z.string().nullish(), kind: z.string().nullish() })).nullish(),
  services: z.record(z.string(), z.looseObject({})).nullish(),
});
export const RpcServiceProps = z.looseObject({
  vm: z.string(), service: z.string(), content: z.string().nullish(), mode: z.union([z.string(), z.number()]).nullish(),
});
/** A Windows code-signing key the site makes in a Windows keys VM (its name as builderv2 sends it). */
export const AuthenticodeKeyProps = z.looseObject({ vm: z.string(), name: z.string() });
export const SshProxyConfigProps = z.looseObject({
  vm: z.string(),
  netvm: z.string().nullish(),
  hosts: z.array(z.looseObject({ host: z.string(), user: z.string().nullish(), hostName: z.string().nullish() })),
});

/** A VM the stack manages. */
export interface Vm {
  name: string;
  urn: string;
  klass: string;
  template?: string;
  label?: string;
  /** `null`: no network; `undefined`: Qubes' default netvm. */
  netvm: string | null | undefined;
  providesNetwork: boolean;
  defaultDispvm?: string;
  templateForDispvms: boolean;
  privateVolumeSize?: number;
  features: Record<string, string>;
  tags: string[];
  role?: Role;
  envs: string[];
}

/** A managed file, with whether its content is a Pulumi secret (undefined: unknown). */
export interface FileRes {
  urn: string;
  vm: string;
  path: string;
  content?: string;
  contentSecret?: boolean;
}

/** A Windows code-signing key made by the site. */
export interface AuthenticodeKeyRes {
  urn: string;
  vm: string;
  name: string;
}

export interface ProxyRes {
  urn: string;
  vm: string;
  netvm?: string;
  hosts: string[];
}

/** One parse problem: a resource the pack cannot read. */
export interface Problem {
  urn: string;
  message: string;
}

/** Everything the checks need. */
export interface Site {
  vms: Vm[];
  byName: Map<string, Vm>;
  policy: PolicySet;
  /** Policy file names, for messages and for `rule.file` (e.g. `20-qubes-build-infra.policy`). */
  policyFiles: string[];
  policyUrns: Map<string, string>;
  files: FileRes[];
  rpcServices: { urn: string; vm: string; service: string }[];
  proxies: ProxyRes[];
  authenticodeKeys: AuthenticodeKeyRes[];
  problems: Problem[];
  system: SystemInfo;
  /** Names of domains of the synthetic system that belong to the site (managed VMs and their disposables). */
  siteDomains: Set<string>;
  /** The synthetic disposables, by the VM that created them. */
  disposablesOf: Map<string, string>;
}

/** The pack's own probe domains in the synthetic system (the `qbi-probe-` prefix keeps them apart from real names). */
export const OUTSIDER = "qbi-probe-outsider";
export const OUTSIDER_DVM_TEMPLATE = "qbi-probe-default-dvm";
export const OUTSIDER_DISP = "qbi-probe-disp-outsider";

/** The kind of a resource: from the dynamic type token, or guessed from props for plain `dynamic:Resource`. */
export function kindOf(type: string, props: unknown): Kind | undefined {
  const m = /^pulumi-nodejs:dynamic\/[^:]+:(\w+)$/.exec(type);
  if (m) return (KINDS as readonly string[]).includes(m[1]) ? (m[1] as Kind) : undefined;
  if (type !== "pulumi-nodejs:dynamic:Resource" || typeof props !== "object" || props === null) return undefined;
  const has = (k: string) => Object.prototype.hasOwnProperty.call(props, k);
  if (has("klass") && has("tags")) return "QubesVm";
  if (has("rules")) return "QrexecPolicy";
  if (has("vm") && has("files") && has("services")) return "VmFiles";
  if (has("hosts")) return "SshProxyConfig";
  if (has("vm") && has("name") && has("days")) return "AuthenticodeKey";
  const hasContent = has("content") || has("contentFile");
  if (has("service") && hasContent) return "RpcService";
  if (has("path") && hasContent) return "ManagedFile";
  return undefined;
}

function roleOf(name: string, tags: readonly string[]): Role | undefined {
  for (const t of tags) {
    const r = roleOfTag(t);
    if (r !== undefined) return r;
  }
  // Without the role tag, the naming convention still marks the VMs that matter most.
  if (/^keys-/.test(name)) return "keys";
  if (/^win-keys-/.test(name)) return "win-keys";
  if (/^build-/.test(name)) return "build";
  return undefined;
}

function envsOf(name: string, tags: readonly string[]): string[] {
  const envs = tags.flatMap((t) => /^qbi-env-(.+)$/.exec(t)?.[1] ?? []);
  if (envs.length > 0) return envs;
  const m = /^(?:build|keys|win-keys)-(.+)$/.exec(name);
  return m ? [m[1]] : [];
}

function issues(e: z.ZodError): string {
  return e.issues.map((i) => `${i.path.join(".") || "(props)"}: ${i.message}`).join("; ");
}

/** Number of lines the renderer writes before the first rule (computed, not assumed). */
export const HEADER_LINES = renderPolicy([]).split("\n").length - 1;

/** Parse the stack's resources into the site model, with the synthetic system. */
export function readSite(resources: readonly ResourceInput[]): Site {
  const vms: Vm[] = [];
  const files: FileRes[] = [];
  const rpcServices: Site["rpcServices"] = [];
  const proxies: ProxyRes[] = [];
  const authenticodeKeys: AuthenticodeKeyRes[] = [];
  const problems: Problem[] = [];
  const policyTexts: { name: string; text: string }[] = [];
  const policyUrns = new Map<string, string>();

  for (const r of resources) {
    const kind = kindOf(r.type, r.props);
    if (kind === undefined) continue;
    const bad = (e: z.ZodError) => problems.push({ urn: r.urn, message: `${kind} ${r.name}: cannot read its props (${issues(e)})` });
    if (kind === "QubesVm") {
      const p = QubesVmProps.safeParse(r.props);
      if (!p.success) { bad(p.error); continue; }
      const v = p.data;
      const tags = v.tags ?? [];
      vms.push({
        name: v.name, urn: r.urn, klass: v.klass, template: v.template ?? undefined, label: v.label ?? undefined,
        netvm: v.netvm, providesNetwork: v.providesNetwork === true, defaultDispvm: v.defaultDispvm ?? undefined,
        templateForDispvms: v.templateForDispvms === true, privateVolumeSize: v.privateVolumeSize ?? undefined,
        features: v.features ?? {}, tags, role: roleOf(v.name, tags), envs: envsOf(v.name, tags),
      });
    } else if (kind === "QrexecPolicy") {
      const p = QrexecPolicyProps.safeParse(r.props);
      if (!p.success) { bad(p.error); continue; }
      const rules: Rule[] = p.data.rules.map((x) => ({ ...x, file: "", line: 0 }));
      const file = `${p.data.name}.policy`;
      // Lines are those of the text the provider writes: the rendered file.
      policyTexts.push({ name: file, text: renderPolicy(rules) });
      policyUrns.set(file, r.urn);
    } else if (kind === "ManagedFile") {
      const p = ManagedFileProps.safeParse(r.props);
      if (!p.success) { bad(p.error); continue; }
      files.push({
        urn: r.urn, vm: p.data.vm, path: p.data.path, content: p.data.content ?? undefined,
        contentSecret: r.secretKeys === undefined ? undefined : r.secretKeys.has("content"),
      });
    } else if (kind === "VmFiles") {
      const p = VmFilesProps.safeParse(r.props);
      if (!p.success) { bad(p.error); continue; }
      for (const [key, f] of Object.entries(p.data.files ?? {})) {
        files.push({
          urn: r.urn, vm: p.data.vm, path: parseVmFileKey(key)?.path ?? key, content: f.content ?? undefined,
          contentSecret: r.secretPaths === undefined ? undefined : isSecretAt(r.secretPaths, ["files", key, "content"]),
        });
      }
      for (const service of Object.keys(p.data.services ?? {})) rpcServices.push({ urn: r.urn, vm: p.data.vm, service });
    } else if (kind === "RpcService") {
      const p = RpcServiceProps.safeParse(r.props);
      if (!p.success) { bad(p.error); continue; }
      rpcServices.push({ urn: r.urn, vm: p.data.vm, service: p.data.service });
    } else if (kind === "AuthenticodeKey") {
      const p = AuthenticodeKeyProps.safeParse(r.props);
      if (!p.success) { bad(p.error); continue; }
      authenticodeKeys.push({ urn: r.urn, vm: p.data.vm, name: p.data.name });
    } else {
      const p = SshProxyConfigProps.safeParse(r.props);
      if (!p.success) { bad(p.error); continue; }
      proxies.push({ urn: r.urn, vm: p.data.vm, netvm: p.data.netvm ?? undefined, hosts: p.data.hosts.map((h) => h.host) });
    }
  }
  const policy = loadPolicySet(policyTexts);
  for (const e of policy.errors) {
    problems.push({ urn: policyUrns.get(e.file) ?? "", message: `qrexec policy ${e.file}:${e.line}: ${e.message}` });
  }
  const byName = new Map(vms.map((v) => [v.name, v]));
  const { system, siteDomains, disposablesOf } = syntheticSystem(vms, policy, proxies, [...files, ...rpcServices, ...authenticodeKeys]);
  return {
    vms, byName, policy, policyFiles: policyTexts.map((t) => t.name), policyUrns, files, rpcServices, proxies, authenticodeKeys, problems,
    system, siteDomains, disposablesOf,
  };
}

/** Plain VM names a rule token or redirect names (not `@` keywords, not `uuid:`). */
function plainName(token: string | undefined): string | undefined {
  if (token === undefined || token === "*" || token.startsWith("@") || token.startsWith("uuid:") || token === "dom0") return undefined;
  return isVmName(token) ? token : undefined;
}

/**
 * The system qrexec would see: dom0, the managed VMs with their tags and dispvm settings, one
 * disposable per VM that has a dispvm template (tagged `disp-created-by-<vm>` as Qubes does), every
 * VM the stack only refers to (netvms, templates, names in rules), and an outsider AppVM with its
 * own dispvm template and disposable to probe `@anyvm` and `@dispvm`.
 */
function syntheticSystem(
  vms: readonly Vm[], policy: PolicySet, proxies: readonly ProxyRes[], placed: readonly { vm: string }[],
): { system: SystemInfo; siteDomains: Set<string>; disposablesOf: Map<string, string> } {
  const domains: Record<string, DomainInfo> = {};
  let n = 0;
  const uuid = () => `00000000-0000-4000-8000-${(++n).toString(16).padStart(12, "0")}`;
  const add = (name: string, d: Partial<DomainInfo>) => {
    if (Object.prototype.hasOwnProperty.call(domains, name)) return;
    domains[name] = {
      name, type: "AppVM", tags: [], default_dispvm: null, template_for_dispvms: false, power_state: "Running",
      label: "red", uuid: uuid(), ...d,
    };
  };
  domains.dom0 = {
    name: "dom0", type: "AdminVM", tags: [], default_dispvm: null, template_for_dispvms: false, power_state: "Running",
    label: "black", uuid: DOM0_UUID,
  };
  const siteDomains = new Set<string>();
  for (const v of vms) {
    add(v.name, {
      type: v.klass, tags: [...v.tags], default_dispvm: v.defaultDispvm ?? null, template_for_dispvms: v.templateForDispvms,
      label: v.label ?? "red",
    });
    siteDomains.add(v.name);
  }
  // Referenced VMs: templates, netvms and dispvm templates of managed VMs, VMs files, keys and proxies live in.
  const templates = new Set(vms.flatMap((v) => v.template ?? []));
  for (const t of templates) add(t, { type: "TemplateVM" });
  for (const v of vms) {
    if (v.netvm) add(v.netvm, {});
    if (v.defaultDispvm) add(v.defaultDispvm, { template_for_dispvms: true });
  }
  for (const p of proxies) { add(p.vm, {}); if (p.netvm) add(p.netvm, {}); }
  for (const f of placed) add(f.vm, {});
  for (const r of policy.rules) {
    for (const t of [r.source, r.target, r.params.target, r.params.default_target]) {
      const name = plainName(t);
      if (name !== undefined) add(name, {});
    }
  }
  // Disposables the site's VMs create (Qubes tags them `disp-created-by-<creator>`).
  const disposablesOf = new Map<string, string>();
  for (const v of vms) {
    const tmpl = v.defaultDispvm ?? (v.role === "build" ? vms.find((x) => x.templateForDispvms)?.name : undefined);
    if (tmpl === undefined) continue;
    const d = `qbi-probe-disp-${v.name}`;
    add(d, { type: "DispVM", tags: [`disp-created-by-${v.name}`], default_dispvm: tmpl, label: domains[tmpl]?.label ?? "red" });
    siteDomains.add(d);
    disposablesOf.set(v.name, d);
  }
  add(OUTSIDER_DVM_TEMPLATE, { template_for_dispvms: true });
  add(OUTSIDER, { default_dispvm: OUTSIDER_DVM_TEMPLATE });
  add(OUTSIDER_DISP, { type: "DispVM", tags: [`disp-created-by-${OUTSIDER}`], default_dispvm: OUTSIDER_DVM_TEMPLATE });
  return { system: { domains }, siteDomains, disposablesOf };
}
