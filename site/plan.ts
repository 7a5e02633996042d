/**
 * The site plan: from validated stack configuration to the VMs and qrexec rules the site needs.
 *
 * Pure (no Pulumi, no I/O) so that it is unit-tested rule by rule; `site/components.ts` turns the
 * plan into resources. The rules reproduce the intent of the formula's policy files
 * (docs/formula.md) and drop or scope its over-broad ones: no `@anyvm` may reach dom0 or a build
 * VM (docs/formula.md W1, W2), disposable admin rules are limited to the env's own
 * `disp-created-by-build-E` disposables, the ssh proxy rules are in the current format
 * (docs/formula.md W18), and `qubes.Gpg` is fenced on both sides (docs/formula.md W35).
 */
import { renderPolicy, type PolicyRule } from "../qrexec";
import { roleTag, type Role, type VmClass } from "../contracts/vm";
import type { EnvConfig, SiteConfig } from "./config";

/** One qrexec policy rule of the plan (qrexec/rule.ts `policyRule`). */
export type PlannedRule = PolicyRule;


/** A VM the site creates and manages. */
export interface PlannedVm {
  name: string;
  role: Role;
  /** The environments this VM serves (one for build/keys VMs, several for a shared logs VM). */
  envs: string[];
  /** Every VM of the site is an AppVM: templates are the user's, disposables Qubes' own. */
  klass: Extract<VmClass, "AppVM">;
  template: string;
  label: "green" | "black" | "gray";
  /** `null`: explicitly no network. */
  netvm: string | null;
  defaultDispvm?: string | null;
  templateForDispvms?: boolean;
  privateVolumeSize?: number;
  /** Windows builders run in HVM with fixed memory. */
  virtMode?: "hvm";
  memory?: number;
  maxmem?: number;
  tags: string[];
  protect: boolean;
}

/** The whole plan of a site. */
export interface SitePlan {
  vms: PlannedVm[];
  rules: PlannedRule[];
  /** VMs that the site refers to but does not create (network VMs, templates). */
  external: string[];
}

/** The site's policy file; a site too big for one is split into `<POLICY_FILE>-00`, `-01`, ... */
export const POLICY_FILE = "20-qubes-build-infra";

/**
 * Bytes of rules one policy file takes, rendered without column alignment. qubesd takes at most
 * 64 KiB per Admin API request (admin.policy.Replace carries the whole file); this leaves room for
 * the header and the request's own lines, and a file that fits aligned is written aligned.
 */
export const POLICY_FILE_BUDGET = 48 * 1024;

/** One policy file of the site: its name (without `.policy`) and its rules, in order. */
export interface PlannedPolicyFile {
  name: string;
  rules: PlannedRule[];
}

/**
 * The site's rules as policy files. qrexec reads the files of policy.d in name order and takes the
 * first rule that matches, so consecutive slices of the one ordered list, named so that they sort
 * in that order, decide every call exactly as the single file would: the fences still come after
 * every rule they fence. One file keeps the historical name; several are `-00`, `-01`, ... (which
 * sort before the single name, so that while a site moves from one to several, the new files decide
 * and the old one, removed last, is never reached first).
 */
export function policyFiles(rules: readonly PlannedRule[], budget = POLICY_FILE_BUDGET): PlannedPolicyFile[] {
  const chunks: PlannedRule[][] = [[]];
  let used = 0;
  for (const r of rules) {
    const bytes = Buffer.byteLength(renderPolicy([{ ...r, file: "", line: 0 }], { header: false, align: false }));
    if (bytes > budget) throw new Error(`the rule ${r.service} ${r.argument} ${r.source} ${r.target} alone is ${bytes} bytes, over the policy file budget of ${budget}`);
    if (used + bytes > budget && chunks[chunks.length - 1].length > 0) {
      chunks.push([]);
      used = 0;
    }
    chunks[chunks.length - 1].push(r);
    used += bytes;
  }
  if (chunks.length === 1) return [{ name: POLICY_FILE, rules: chunks[0] }];
  if (chunks.length > 100) throw new Error(`the site's rules need ${chunks.length} policy files (at most 100): split the site into several stacks`);
  return chunks.map((c, i) => ({ name: `${POLICY_FILE}-${String(i).padStart(2, "0")}`, rules: c }));
}

export const buildVm = (env: string): string => `build-${env}`;
export const keysVm = (env: string): string => `keys-${env}`;
export const winKeysVm = (env: string): string => `win-keys-${env}`;
export const dispTag = (env: string): string => `@tag:disp-created-by-${buildVm(env)}`;
/**
 * A v1 environment's own disposable template. qubes-builder v1 starts its template-build
 * disposables with `qvm-run-vm --dispvm`, which the qrexec policy daemon creates with dom0 as
 * creator (`disp-created-by-dom0`), so nothing but the template tells one env's disposables from
 * another's: each v1 env gets its own, and Qubes copies the template's tags into its disposables.
 */
export const envDvm = (env: string): string => `dvm-${env}`;
/** The tag of `envDvm(env)`, inherited by every disposable made from it. */
export const envDispTag = (env: string): string => `qbi-disp-of-${buildVm(env)}`;
/** Loop devices of a build VM that builderv2's Windows executor may give its disposables (the EWDK image). */
export const WINDOWS_LOOPS = 4;
export const BUILDER_DVM = "builder-dvm";
export const WINDOWS_DVM = "builder-windows-dvm";
export const SITE_TAG = "qbi-site";
/** The WinSign services a build VM may call: querying and using existing keys, never making them. */
export const WINSIGN_OPS = ["QueryKey", "GetCert", "Sign"] as const;
export const envTag = (env: string): string => `qbi-env-${env}`;

const rule = (
  service: string,
  argument: string,
  source: string,
  target: string,
  action: PlannedRule["action"],
  params: PlannedRule["params"] = {},
): PlannedRule => ({ service, argument, source, target, action, params });

function vmsOf(cfg: SiteConfig): PlannedVm[] {
  const vms: PlannedVm[] = [];
  const envs = Object.entries(cfg.envs);
  const tags = (role: Role, es: string[]) => [SITE_TAG, roleTag(role), ...es.map(envTag)];
  if (envs.some(([, e]) => e.builderv2)) {
    vms.push({
      name: BUILDER_DVM, role: "builder-dvm", envs: envs.filter(([, e]) => e.builderv2).map(([n]) => n),
      klass: "AppVM", template: cfg.buildTemplate, label: "green", netvm: cfg.buildNetvm,
      templateForDispvms: true, privateVolumeSize: cfg.builderDvmSize,
      tags: tags("builder-dvm", []), protect: false,
    });
  }
  if (envs.some(([, e]) => e.windows) && cfg.windowsTemplate !== undefined) {
    // builderv2's Windows executor: disposables of a Windows template, HVM, no memory balancing.
    vms.push({
      name: WINDOWS_DVM, role: "windows-dvm", envs: envs.filter(([, e]) => e.windows).map(([n]) => n),
      klass: "AppVM", template: cfg.windowsTemplate, label: "green", netvm: cfg.windowsNetvm,
      templateForDispvms: true, virtMode: "hvm", memory: 4096, maxmem: 0, tags: tags("windows-dvm", []), protect: false,
    });
  }
  for (const [name] of envs.filter(([, x]) => !x.builderv2)) {
    vms.push({
      name: envDvm(name), role: "env-dvm", envs: [name], klass: "AppVM", template: cfg.buildTemplate, label: "green",
      netvm: cfg.buildNetvm, templateForDispvms: true, // Not tagged with the env: its disposables must not pass for the env's build VM in rules by env tag.
      tags: [...tags("env-dvm", []), envDispTag(name)], protect: false,
    });
  }
  const logsVms = new Map<string, string[]>();
  for (const [name, e] of envs) logsVms.set(e.logs, [...(logsVms.get(e.logs) ?? []), name]);
  for (const [logs, served] of logsVms) {
    vms.push({
      name: logs, role: "logs", envs: served, klass: "AppVM", template: cfg.logsTemplate,
      // Protected like the keys VMs: it holds the logs key that signs the logs repository's history.
      label: "green", netvm: cfg.logsNetvm, tags: tags("logs", served), protect: cfg.protectKeys,
    });
  }
  for (const [name, e] of envs) {
    vms.push({
      name: buildVm(name), role: "build", envs: [name], klass: "AppVM", template: cfg.buildTemplate,
      label: "green", netvm: cfg.buildNetvm, defaultDispvm: e.builderv2 ? BUILDER_DVM : envDvm(name),
      privateVolumeSize: e.volumeSize, tags: tags("build", [name]), protect: false,
    });
    vms.push({
      name: keysVm(name), role: "keys", envs: [name], klass: "AppVM", template: cfg.keysTemplate,
      label: "black", netvm: null, tags: tags("keys", [name]), protect: cfg.protectKeys,
    });
    if (e.windows) {
      vms.push({
        name: winKeysVm(name), role: "win-keys", envs: [name], klass: "AppVM", template: cfg.keysTemplate,
        label: "black", netvm: null, tags: tags("win-keys", [name]), protect: cfg.protectKeys,
      });
    }
  }
  return vms;
}

/** Rules that let one environment work: its logs, signing, disposables and uploads. */
function envRules(cfg: SiteConfig, name: string, e: EnvConfig): PlannedRule[] {
  const b = buildVm(name);
  const k = keysVm(name);
  const disp = dispTag(name);
  const r: PlannedRule[] = [
    // The build log goes to the logs VM only; the build VM calls dom0 and is redirected (P6).
    rule("qubesbuilder.BuildLog", "*", b, "@adminvm", "allow", { target: e.logs }),
    // Sign-if-logged: build-E asks its logs VM to log a digest before any signature; the logs VM
    // hands the logged entry to keys-E only: the argument pins the env (the formula's P2).
    rule("qubesbuilder.LogDigest", "*", b, "@adminvm", "allow", { target: e.logs }),
    rule("qubesbuilder.LogReceived", `+${b}`, e.logs, "@adminvm", "allow", { target: k }),
    // Split-GPG: build-E to its own keys VM, directly or through @default (P3, P4).
    rule("qubes.Gpg", "*", b, k, "allow"),
    rule("qubes.Gpg", "*", b, "@default", "allow", { target: k }),
    // GitHub events reach build VMs only from the net VM running the webhook receiver.
    rule("qubesbuilder.TriggerBuild", "*", cfg.netvm, b, "allow"),
    rule("qubesbuilder.ProcessGithubCommand", "*", cfg.netvm, b, "allow"),
  ];
  // Uploads leave in clear through the net VM, one rule per configured host, in the current policy
  // format (the formula's legacy files are read only through a compatibility layer Qubes will drop).
  for (const host of Object.keys(cfg.uploadHosts)) r.push(rule("local.ConnectSSH", `+${host}`, b, cfg.netvm, "allow"));

  if (e.builderv2) {
    // Disposables from builder-dvm only, and only this env's own disposables may be driven (P8–P15,
    // P18). The formula's `CreateDisposable * build-E dom0 allow` (P7) is not needed: builderv2 names
    // its dispvm template, and the explicit rule below is narrower.
    r.push(rule("admin.vm.CreateDisposable", "*", b, BUILDER_DVM, "allow", { target: "@adminvm" }));
    // builderv2's executor starts, watches, kills and, once halted, removes each of its disposables
    // (qubesbuilder/executors/qrexec.py); only those this build VM created carry its tag.
    for (const svc of ["admin.vm.Start", "admin.vm.Kill", "admin.vm.CurrentState", "admin.vm.Remove"]) {
      r.push(rule(svc, "*", b, disp, "allow", { target: "@adminvm" }));
    }
    for (const svc of ["qubes.Filecopy", "qubesbuilder.FileCopyIn", "qubesbuilder.FileCopyOut", "qubes.WaitForSession", "qubes.VMShell"]) {
      r.push(rule(svc, "*", b, disp, "allow"));
    }
  } else {
    // v1 template builds: build-E exports a disk image, starts a disposable of its own template
    // (`qvm-run-vm --dispvm`), which attaches the image through dom0 and sends the template back.
    // The disposable is the policy daemon's (creator dom0), so it is known by its template's tag;
    // dom0's AttachDisk then needs the one-time key ExportDisk gave build-E.
    const own = `@tag:${envDispTag(name)}`;
    r.push(rule("qubes.VMShell", "*", b, `@dispvm:${envDvm(name)}`, "allow"));
    r.push(rule("qubesbuilder.ExportDisk", "*", b, "@adminvm", "allow"));
    r.push(rule("qubesbuilder.AttachDisk", "*", own, "@adminvm", "allow"));
    r.push(rule("qubesbuilder.CopyTemplateBack", "*", own, b, "allow"));
    r.push(rule("admin.vm.CurrentState", "*", b, disp, "allow", { target: "@adminvm" }));
  }
  if (e.windows) {
    const wk = winKeysVm(name);
    r.push(rule("admin.vm.CreateDisposable", "*", b, WINDOWS_DVM, "allow", { target: "@adminvm" }));
    r.push(rule("admin.vm.device.block.Available", "*", b, b, "allow", { target: "@adminvm" }));
    // The EWDK image on one of build-E's loop devices goes to its Windows disposable: attached
    // (R4.2 qubesadmin: `<backend>+<port>`) or assigned before start (R4.3: `<backend>+<port>+<device id>`,
    // `_` for any device id), never another VM's device.
    for (let i = 0; i < WINDOWS_LOOPS; i++) {
      r.push(rule("admin.vm.device.block.Attach", `+${b}+loop${i}`, b, disp, "allow", { target: "@adminvm" }));
      r.push(rule("admin.vm.device.block.Assign", `+${b}+loop${i}+_`, b, disp, "allow", { target: "@adminvm" }));
    }
    for (const svc of ["qubesbuilder.WinSign.Timestamp", "qubesbuilder.WinFileCopyIn", "qubesbuilder.WinFileCopyOut"]) {
      r.push(rule(svc, "*", b, disp, "allow"));
    }
    // Windows signing: existing keys only (no CreateKey/DeleteKey from a build VM), and the
    // Windows keys VM logs each request with the logs VM before it signs (for build-E only).
    for (const op of WINSIGN_OPS) {
      r.push(rule(`qubesbuilder.WinSign.${op}`, `+${cfg.windowsKeyName}`, b, wk, "allow"));
      r.push(rule(`qubesbuilder.WinSign.${op}`, `+${cfg.windowsKeyName}`, b, "@default", "allow", { target: wk }));
    }
    r.push(rule("qubesbuilder.LogDigest", `+${b}`, wk, "@adminvm", "allow", { target: e.logs }));
  }
  return r;
}

/** Closing rules: whatever the allows above did not grant is denied here, not left to defaults. */
function fenceRules(cfg: SiteConfig): PlannedRule[] {
  const r: PlannedRule[] = [];
  for (const [name, e] of Object.entries(cfg.envs)) {
    // A build VM asks only its own keys VM to sign: no other qube is offered what it wants signed.
    r.push(rule("qubes.Gpg", "*", buildVm(name), "@anyvm", "deny"));
    r.push(rule("qubes.Gpg", "*", buildVm(name), "@default", "deny"));
    // Nothing else reaches a keys VM: no other VM, tag, type or disposable, whatever the service.
    r.push(rule("*", "*", "@anyvm", keysVm(name), "deny"));
    if (e.windows) r.push(rule("*", "*", "@anyvm", winKeysVm(name), "deny"));
  }
  for (const svc of ["qubesbuilder.BuildLog", "qubesbuilder.LogDigest", "qubesbuilder.LogReceived", "local.ConnectSSH",
    "qubesbuilder.TriggerBuild", "qubesbuilder.ProcessGithubCommand", "qubesbuilder.AttachDisk",
    "qubesbuilder.ExportDisk", "qubesbuilder.CopyTemplateBack"]) {
    r.push(rule(svc, "*", "@anyvm", "@anyvm", "deny"));
    r.push(rule(svc, "*", "@anyvm", "@adminvm", "deny"));
  }
  return r;
}

/** The plan of a site: its VMs, then every rule in evaluation order (first match wins). */
export function planSite(cfg: SiteConfig): SitePlan {
  const rules: PlannedRule[] = [];
  for (const [name, e] of Object.entries(cfg.envs)) rules.push(...envRules(cfg, name, e));
  rules.push(...fenceRules(cfg));
  const windows = Object.values(cfg.envs).some((e) => e.windows);
  const external = [...new Set([cfg.netvm, cfg.buildNetvm, cfg.logsNetvm, cfg.buildTemplate, cfg.keysTemplate, cfg.logsTemplate, cfg.netTemplate,
    ...(windows && cfg.windowsTemplate ? [cfg.windowsTemplate] : []), ...(windows && cfg.windowsNetvm ? [cfg.windowsNetvm] : [])])];
  return { vms: vmsOf(cfg), rules, external };
}
