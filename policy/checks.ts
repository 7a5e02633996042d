/**
 * The site's security model as checks: pure functions from the stack's resources to violations.
 *
 * Every qrexec question is asked of the qrexec module's evaluator over a synthetic system (see
 * `policy/model.ts`): the site's VMs with their tags and dispvm settings, the VMs it only refers
 * to, dom0, disposables, and an outsider AppVM — never by matching rule text. `policy/index.ts`
 * wires these into a CrossGuard pack.
 */
import { Rule, Verdict, evaluate, isDom0, ruleKey, servicesInPolicy } from "../qrexec";
import { OUTSIDER, ResourceInput, Site, Vm, readSite } from "./model";

export type { ResourceInput } from "./model";

/** The pack's policy names. */
export type PolicyName =
  | "site-resources-readable"
  | "keys-vm-isolated"
  | "gpg-only-from-own-build-vm"
  | "log-received-only-via-dom0-redirect"
  | "build-log-only-to-logs-vm"
  | "one-keys-vm-per-env"
  | "build-network-through-tor"
  | "dom0-and-admin-api-scoped"
  | "webhook-secret-is-secret"
  | "vm-hygiene";

/** A violation: which policy, a message naming the VM, the rule (`file:line`) and the fix. */
export interface Violation {
  policy: PolicyName;
  message: string;
  /** The resource to attach the violation to (the VM or the policy file), when known. */
  urn?: string;
}

/** Settings of the pack (each policy reads the keys it needs from its policy config). */
export interface PackConfig {
  /** The Tor gateway build VMs must use as netvm. */
  torGateway: string;
  /** The clearnet net VM (webhook receiver, ssh relay). */
  netvm: string;
  /** Floor of a build VM's private volume, bytes. */
  minBuildVolumeBytes: number;
  /** Maximum age of `last-updated` features, days; 0 or undefined: not checked. */
  templateMaxAgeDays?: number;
  /** "Now" in ms since the epoch, for the age check (tests). */
  now?: number;
}

export const DEFAULT_CONFIG: PackConfig = {
  torGateway: "sys-whonix",
  netvm: "sys-net",
  minBuildVolumeBytes: 20 * 2 ** 30,
  templateMaxAgeDays: 0,
};

/** Where the webhook receiver reads its HMAC secret (docs/layout.md: secrets path). */
export const WEBHOOK_SECRET_PATH = "/usr/local/etc/qubes-build-infra/secrets/webhooks";

const GPG = "qubes.Gpg";
const LOG_RECEIVED = "qubesbuilder.LogReceived";
const BUILD_LOG = "qubesbuilder.BuildLog";
const CONNECT_SSH = "local.ConnectSSH";
/** Admin calls a build VM may make about itself (read-only or its own loop devices). */
const SELF_ADMIN = new Set(["admin.vm.device.block.Available", "admin.vm.CurrentState"]);
/** A service name no rule names, to probe `*` rules. */
const PROBE_SERVICE = "qbi.Probe";
const PROBE_ARG = "+qbi-probe.invalid";

// ---------------------------------------------------------------------------------------------
// Helpers over the model and the evaluator.

const at = (r: Rule): string => `${r.file}:${r.line}`;
const cite = (r: Rule): string => `rule ${at(r)} \`${ruleKey(r)}\``;

/** Does the verdict let the call land on `vm` (allow resolving to it, or ask offering it)? */
function reaches(v: Verdict, vm: string): boolean {
  if (v.action === "allow") return v.target === vm;
  if (v.action === "ask") return v.target === vm || (v.targets ?? []).includes(vm);
  return false;
}

/** Where an allowed or asked call may land. */
function landings(v: Verdict): string[] {
  if (v.action === "allow") return v.target === undefined ? [] : [v.target];
  if (v.action === "ask") return [...new Set([...(v.targets ?? []), ...(v.target ? [v.target] : [])])];
  return [];
}

/** Every domain of the synthetic system that can be a caller (dom0 is never policy-checked), the pack's probes first. */
function callers(site: Site): string[] {
  const all = Object.keys(site.system.domains).filter((n) => !n.startsWith("uuid:") && !isDom0(n));
  return [...all.filter((n) => n.startsWith("qbi-probe-")), ...all.filter((n) => !n.startsWith("qbi-probe-"))];
}

/** How a verdict reads in a message. */
function outcome(v: Verdict): string {
  const where = landings(v);
  return where.length ? `${v.action} to ${where.join(", ")} (${v.reason})` : v.reason;
}

/**
 * With parse errors qrexec refuses every call: the site is then safe but broken, and
 * `site-resources-readable` says why; the qrexec checks would only repeat it.
 */
const unusable = (site: Site): boolean => site.policy.errors.length > 0;

/** Every target a caller may request: each domain by name, the keywords, each disposable template. */
function requestTargets(site: Site): string[] {
  const names = Object.keys(site.system.domains).filter((n) => !n.startsWith("uuid:"));
  const tmpl = names.filter((n) => site.system.domains[n].template_for_dispvms).map((n) => `@dispvm:${n}`);
  return [...names, "@adminvm", "@default", "@dispvm", ...tmpl];
}

/** Arguments to try for a service: those the rules name, none, and one no rule names. */
function argsFor(site: Site, service: string, extra: readonly string[] = []): string[] {
  const named = servicesInPolicy(site.policy).get(service) ?? [""];
  return [...new Set([...named, "", PROBE_ARG, ...extra])];
}

/** Services to try: those the rules name, plus a probe for `*` rules. */
function probeServices(site: Site, extra: readonly string[] = []): string[] {
  return [...new Set([...servicesInPolicy(site.policy).keys(), PROBE_SERVICE, ...extra])];
}

function ask(site: Site, service: string, argument: string, source: string, target: string): Verdict {
  return evaluate(site.policy, { service, argument, source, target }, site.system);
}

const keysVms = (site: Site): Vm[] => site.vms.filter((v) => v.role === "keys");
const buildVms = (site: Site): Vm[] => site.vms.filter((v) => v.role === "build");
const overlaps = (a: readonly string[], b: readonly string[]) => a.some((x) => b.includes(x));

/** Collects findings per (subject, rule), listing the calls that hit each, into one message. */
class Findings {
  private readonly groups = new Map<string, { head: string; items: string[]; fix: string; urn?: string }>();
  constructor(private readonly policy: PolicyName) {}
  add(key: string, head: string, item: string, fix: string, urn?: string): void {
    const g = this.groups.get(key) ?? { head, items: [], fix, urn };
    if (!g.items.includes(item)) g.items.push(item);
    this.groups.set(key, g);
  }
  one(head: string, fix: string, urn?: string): void {
    this.groups.set(`${head}\0${fix}`, { head, items: [], fix, urn });
  }
  violations(): Violation[] {
    return [...this.groups.values()].map((g) => {
      const shown = g.items.slice(0, 6);
      const more = g.items.length > shown.length ? `, and ${g.items.length - shown.length} more` : "";
      const list = shown.length ? `: ${shown.join("; ")}${more}` : "";
      const v: Violation = { policy: this.policy, message: `${g.head}${list}. Fix: ${g.fix}` };
      if (g.urn) v.urn = g.urn;
      return v;
    });
  }
}

const policyUrn = (site: Site, r: Rule | undefined): string | undefined => (r ? site.policyUrns.get(r.file) : undefined);

/** A direct call to a keys VM must be decided by the site's own file, not left to later files. */
function undecided(site: Site, f: Findings, k: Vm, service: string, source: string, argument: string): void {
  const v = ask(site, service, argument, source, k.name);
  if (v.action === "deny" && v.rule === undefined) {
    f.add(`undecided\0${k.name}\0${service}`, `${k.name}: the site's policy (${site.policyFiles.join(", ") || "none"}) does not decide ${service} calls to it, so files loaded later (90-default.policy) would`,
      `from ${source}${argument ? ` with ${argument}` : ""}`,
      `keep the fence rule \`* * @anyvm ${k.name} deny\` after the site's allow rules`, k.urn);
  }
}

// ---------------------------------------------------------------------------------------------
// The policies.

/** Resources the pack cannot read, and qrexec policy text qrexec would refuse. */
export function checkReadable(site: Site): Violation[] {
  return site.problems.map((p) => ({
    policy: "site-resources-readable" as const,
    message: `${p.message}. Fix: correct the resource so the pack (and qrexec) can read it`,
    ...(p.urn ? { urn: p.urn } : {}),
  }));
}

/** 1. Keys VMs are offline and nobody's netvm, template or disposable template. */
export function checkKeysIsolated(site: Site): Violation[] {
  const f = new Findings("keys-vm-isolated");
  for (const k of site.vms.filter((v) => v.role === "keys" || v.role === "win-keys")) {
    if (k.netvm !== null) {
      f.one(`${k.name}: netvm is ${k.netvm === undefined ? "unset (Qubes' default netvm applies)" : k.netvm}`, `set netvm: null on ${k.name}`, k.urn);
    }
    if (k.providesNetwork) f.one(`${k.name}: provides network to other VMs`, `set providesNetwork: false on ${k.name}`, k.urn);
    if (k.templateForDispvms) f.one(`${k.name}: is a disposable template (template_for_dispvms)`, `set templateForDispvms: false on ${k.name}`, k.urn);
    if (/Template/.test(k.klass)) f.one(`${k.name}: is a ${k.klass}`, `make ${k.name} an AppVM`, k.urn);
    for (const v of site.vms) {
      if (v.netvm === k.name) f.one(`${k.name}: is the netvm of ${v.name}`, `give ${v.name} another netvm`, v.urn);
      if (v.template === k.name) f.one(`${k.name}: is the template of ${v.name}`, `give ${v.name} another template`, v.urn);
      if (v.defaultDispvm === k.name) f.one(`${k.name}: is the default disposable template of ${v.name}`, `set defaultDispvm of ${v.name} to a dispvm template such as builder-dvm`, v.urn);
    }
  }
  return f.violations();
}

/** 2. qubes.Gpg reaches keys-ENV from build-ENV only. */
export function checkGpg(site: Site): Violation[] {
  const f = new Findings("gpg-only-from-own-build-vm");
  if (unusable(site)) return [];
  const targets = requestTargets(site);
  for (const k of keysVms(site)) {
    const allowed = buildVms(site).filter((b) => overlaps(b.envs, k.envs)).map((b) => b.name);
    const own = site.byName.get(k.name.replace(/^keys-/, "build-"));
    if (own && allowed.includes(own.name)) {
      for (const t of [k.name, "@default"]) {
        const v = ask(site, GPG, "", own.name, t);
        if (!reaches(v, k.name)) {
          f.add(`pos\0${k.name}`, `${k.name}: its build VM ${own.name} cannot use ${GPG} on it`,
            `requesting ${t}: ${outcome(v)}`, `allow \`${GPG} * ${own.name} ${k.name} allow\` and \`${GPG} * ${own.name} @default allow target=${k.name}\` before the fences`, k.urn);
        }
      }
    }
    for (const s of callers(site)) {
      if (allowed.includes(s)) continue;
      for (const t of targets) {
        const v = ask(site, GPG, "", s, t);
        if (reaches(v, k.name) && v.rule) {
          f.add(`neg\0${k.name}\0${at(v.rule)}`, `${k.name}: ${GPG} is ${v.action === "ask" ? "offered" : "allowed"} from VMs other than ${allowed.join(", ") || "its build VM"} by ${cite(v.rule)}`,
            `${s} requesting ${t}`, `narrow the rule's source to ${own?.name ?? "the env's build VM"} and keep \`* * @anyvm ${k.name} deny\` after it`, policyUrn(site, v.rule));
        }
      }
      undecided(site, f, k, GPG, s, "");
    }
  }
  return f.violations();
}

/** 3. qubesbuilder.LogReceived reaches keys-ENV only from its logs VM, via dom0, with +build-ENV. */
export function checkLogReceived(site: Site): Violation[] {
  const f = new Findings("log-received-only-via-dom0-redirect");
  if (unusable(site)) return [];
  const targets = requestTargets(site);
  const buildArgs = buildVms(site).map((b) => `+${b.name}`);
  const keys = keysVms(site).map((k) => ({
    k,
    okArgs: buildVms(site).filter((b) => overlaps(b.envs, k.envs)).map((b) => `+${b.name}`),
    logs: site.vms.filter((v) => v.role === "logs" && overlaps(v.envs, k.envs)).map((v) => v.name),
  }));
  // Each call is evaluated once; the keys VMs it reaches are then judged one by one.
  for (const s of callers(site)) {
    for (const a of argsFor(site, LOG_RECEIVED, [...buildArgs, `+${s}`])) {
      for (const t of targets) {
        const v = ask(site, LOG_RECEIVED, a, s, t);
        if (!v.rule || v.action === "deny") continue;
        for (const { k, okArgs, logs } of keys) {
          if (!reaches(v, k.name)) continue;
          const why = !logs.includes(s) ? `from ${s}, which is not the logs VM of ${k.envs.join(", ")} (${logs.join(", ") || "none"})`
            : !isDom0(t) ? `from ${s} requesting ${t} directly instead of @adminvm (no dom0 redirect)`
            : !okArgs.includes(a) ? `from ${s} with argument ${a || "(none)"}, not ${okArgs.join(" or ") || "+build-ENV"}` : undefined;
          if (why === undefined) continue;
          f.add(`${k.name}\0${at(v.rule)}`, `${k.name}: ${LOG_RECEIVED} reaches it by ${cite(v.rule)}`, why,
            `allow only \`${LOG_RECEIVED} ${okArgs[0] ?? "+build-ENV"} ${logs[0] ?? "LOGS"} @adminvm allow target=${k.name}\` and deny the rest`, policyUrn(site, v.rule));
        }
      }
    }
    for (const { k, okArgs } of keys) undecided(site, f, k, LOG_RECEIVED, s, okArgs[0] ?? "");
  }
  return f.violations();
}

/** 4. qubesbuilder.BuildLog from a build VM lands only on its env's logs VM. */
export function checkBuildLog(site: Site): Violation[] {
  const f = new Findings("build-log-only-to-logs-vm");
  if (unusable(site)) return [];
  const targets = requestTargets(site);
  for (const b of buildVms(site)) {
    const logs = site.vms.filter((v) => v.role === "logs" && overlaps(v.envs, b.envs)).map((v) => v.name);
    for (const a of argsFor(site, BUILD_LOG)) {
      for (const t of targets) {
        const v = ask(site, BUILD_LOG, a, b.name, t);
        const bad = landings(v).filter((x) => !logs.includes(x));
        if (bad.length === 0 || !v.rule) continue;
        f.add(`${b.name}\0${at(v.rule)}`, `${b.name}: ${BUILD_LOG} lands on ${bad.join(", ")}, not only on its logs VM ${logs.join(", ") || "(none)"}, by ${cite(v.rule)}`,
          `requesting ${t}${a ? ` with ${a}` : ""}`, `redirect ${b.name}'s BuildLog to its logs VM only: \`${BUILD_LOG} * ${b.name} @adminvm allow target=${logs[0] ?? "LOGS"}\``, policyUrn(site, v.rule));
      }
    }
  }
  return f.violations();
}

/** 5. One keys VM per environment; no VM but the logs VM serves several environments. */
export function checkEnvSeparation(site: Site): Violation[] {
  const f = new Findings("one-keys-vm-per-env");
  const envs = new Set(site.vms.flatMap((v) => v.envs));
  for (const e of envs) {
    const keys = keysVms(site).filter((k) => k.envs.includes(e));
    const hasBuild = buildVms(site).some((b) => b.envs.includes(e));
    if (keys.length > 1) f.one(`environment ${e}: has ${keys.length} keys VMs (${keys.map((k) => k.name).join(", ")})`, `keep only keys-${e}`, keys[1].urn);
    if (keys.length === 0 && hasBuild) f.one(`environment ${e}: has a build VM but no keys VM`, `create keys-${e}`);
  }
  for (const v of site.vms) {
    if (v.envs.length > 1 && v.role !== "logs") {
      f.one(`${v.name}: serves several environments (${v.envs.join(", ")}); only a logs VM may`, `give each environment its own ${v.role ?? "VM"} (tag it with one qbi-env-<ENV> only)`, v.urn);
    }
  }
  return f.violations();
}

/** 6. Build VMs reach the network only through the Tor gateway; the only clearnet path is ConnectSSH to configured hosts. */
export function checkBuildNetwork(site: Site, cfg: PackConfig): Violation[] {
  const f = new Findings("build-network-through-tor");
  const builders = site.vms.filter((v) => v.role === "build" || v.role === "builder-dvm" || v.role === "windows-dvm");
  for (const b of builders) {
    if (b.netvm === undefined || (b.netvm !== null && b.netvm !== cfg.torGateway)) {
      f.one(`${b.name}: netvm is ${b.netvm ?? "unset (Qubes' default netvm, clearnet)"}, not the Tor gateway ${cfg.torGateway}`, `set netvm of ${b.name} to ${cfg.torGateway}`, b.urn);
    }
  }
  const netVms = new Set<string>([cfg.netvm]);
  for (const v of site.vms) {
    if (v.netvm) netVms.add(v.netvm);
    if (v.providesNetwork) netVms.add(v.name);
  }
  for (const p of site.proxies) if (p.netvm) netVms.add(p.netvm);
  netVms.delete(cfg.torGateway);
  if (unusable(site)) return f.violations();
  const targets = requestTargets(site);
  const services = probeServices(site, [CONNECT_SSH]);
  for (const b of buildVms(site)) {
    const proxy = site.proxies.filter((p) => p.vm === b.name);
    const hosts = proxy.flatMap((p) => p.hosts);
    for (const p of proxy) {
      if (p.netvm !== undefined && p.netvm !== cfg.netvm) f.one(`${b.name}: its ssh proxy config relays through ${p.netvm}, not the net VM ${cfg.netvm}`, `set the SshProxyConfig netvm to ${cfg.netvm}`, p.urn);
    }
    const sources = [b.name, ...(site.disposablesOf.has(b.name) ? [site.disposablesOf.get(b.name) as string] : [])];
    for (const s of sources) {
      for (const svc of services) {
        for (const a of argsFor(site, svc, svc === CONNECT_SSH ? hosts.map((h) => `+${h}`) : [])) {
          for (const t of targets) {
            const v = ask(site, svc, a, s, t);
            const out = landings(v).filter((x) => netVms.has(x));
            if (out.length === 0 || !v.rule) continue;
            const fine = s === b.name && svc === CONNECT_SSH && out.every((x) => x === cfg.netvm) && hosts.some((h) => `+${h}` === a);
            if (fine) continue;
            const what = svc === CONNECT_SSH && s === b.name ? `${CONNECT_SSH}${a} (not a configured upload host: ${hosts.join(", ") || "none"})` : `${svc}${a}`;
            f.add(`${b.name}\0${at(v.rule)}`, `${b.name}: a clearnet path to ${out.join(", ")} is open by ${cite(v.rule)}`,
              `${s === b.name ? "" : `its disposable ${s}: `}${what} requesting ${t}`,
              `allow ${b.name} only \`${CONNECT_SSH} +HOST ${b.name} ${cfg.netvm} allow\` for each configured upload host, and nothing else to a network VM`, policyUrn(site, v.rule));
          }
        }
      }
    }
    for (const h of hosts) {
      const v = ask(site, CONNECT_SSH, `+${h}`, b.name, cfg.netvm);
      if (!reaches(v, cfg.netvm)) {
        f.one(`${b.name}: configured upload host ${h} is not reachable through ${CONNECT_SSH} (${v.reason})`, `add \`${CONNECT_SSH} +${h} ${b.name} ${cfg.netvm} allow\`, or drop ${h} from the ssh proxy config`, proxy[0]?.urn);
      }
    }
  }
  return f.violations();
}

/** 7. Nothing outside the site calls dom0 with allow; admin.vm.* only on the env's own disposables or dispvm template. */
export function checkDom0(site: Site): Violation[] {
  const f = new Findings("dom0-and-admin-api-scoped");
  if (unusable(site)) return [];
  const targets = requestTargets(site);
  const outsiders = callers(site).filter((s) => !site.siteDomains.has(s));
  for (const s of outsiders) {
    for (const svc of probeServices(site, ["admin.vm.List"])) {
      for (const a of argsFor(site, svc)) {
        for (const t of targets) {
          const v = ask(site, svc, a, s, t);
          if (v.action !== "allow" || v.target !== "dom0" || !v.rule) continue;
          const outsider = s === OUTSIDER || s.startsWith("qbi-probe-") ? `any VM (e.g. ${s})` : s;
          f.add(`out\0${at(v.rule)}`, `dom0: a VM outside the site may call it with allow by ${cite(v.rule)}`,
            `${outsider} calling ${svc}${a} requesting ${t}`, `restrict the rule's source to the site VM that needs it (never @anyvm) or remove it`, policyUrn(site, v.rule));
        }
      }
    }
  }
  const dispTemplates = new Set(site.vms.filter((v) => v.role === "builder-dvm" || v.role === "windows-dvm").map((v) => v.name));
  const adminServices = probeServices(site, ["admin.vm.Remove"]).filter((s) => s.startsWith("admin."));
  for (const s of callers(site)) {
    const src = site.byName.get(s);
    for (const svc of adminServices) {
      for (const a of argsFor(site, svc)) {
        for (const t of targets) {
          const v = ask(site, svc, a, s, t);
          if (v.action === "deny" || !v.rule || !landings(v).includes("dom0")) continue;
          const d = site.system.domains[t];
          const ok = src?.role === "build" && (
            (d !== undefined && d.type === "DispVM" && d.tags.includes(`disp-created-by-${s}`)) ||
            dispTemplates.has(t) || (t === s && SELF_ADMIN.has(svc)));
          if (ok) continue;
          const who = src?.role === "build" ? s : s.startsWith("qbi-probe-") ? `any VM (e.g. ${s})` : s;
          f.add(`adm\0${at(v.rule)}`, `dom0: ${svc} is ${v.action === "ask" ? "offered" : "allowed"} beyond a build VM's own disposables and dispvm template by ${cite(v.rule)}`,
            `${who} on ${t}${a ? ` with ${a}` : ""}`, `scope the rule to \`${svc} * build-ENV @tag:disp-created-by-build-ENV allow target=@adminvm\` (or the env's dispvm template)`, policyUrn(site, v.rule));
        }
      }
    }
  }
  return f.violations();
}

/** 8. The webhook receiver's HMAC secret is set, and set as a Pulumi secret. */
export function checkWebhookSecret(site: Site, cfg: PackConfig): Violation[] {
  const f = new Findings("webhook-secret-is-secret");
  if (site.vms.length === 0) return [];
  const file = site.files.find((x) => x.path === WEBHOOK_SECRET_PATH && x.vm === cfg.netvm);
  const fix = `set the webhook secret with \`pulumi config set --secret qubes-build-infra:webhookSecret ...\` and pass it as a Pulumi secret`;
  if (file === undefined) {
    f.one(`${cfg.netvm}: the webhook receiver has no secret file ${WEBHOOK_SECRET_PATH}`, fix);
  } else if (file.contentSecret === undefined) {
    f.one(`${cfg.netvm}: cannot tell whether ${WEBHOOK_SECRET_PATH} is a Pulumi secret (the pack saw no secret markers)`, `run the pack through policy/index.ts with @pulumi/policy 1.21 (see policy/README.md)`, file.urn);
  } else if (!file.contentSecret) {
    f.one(`${cfg.netvm}: the webhook secret ${WEBHOOK_SECRET_PATH} is plain text in the stack`, fix, file.urn);
  } else if (file.content !== undefined && file.content.trim() === "") {
    f.one(`${cfg.netvm}: the webhook secret ${WEBHOOK_SECRET_PATH} is empty`, fix, file.urn);
  }
  return f.violations();
}

/** 9 (advisory). Labels, volume sizes, template freshness. */
export function checkHygiene(site: Site, cfg: PackConfig): Violation[] {
  const f = new Findings("vm-hygiene");
  const gib = (n: number) => `${(n / 2 ** 30).toFixed(1).replace(/\.0$/, "")} GiB`;
  for (const v of site.vms) {
    if ((v.role === "keys" || v.role === "win-keys") && v.label !== "black") {
      f.one(`${v.name}: label is ${v.label ?? "unset"}, keys VMs are black`, `set label: black on ${v.name}`, v.urn);
    }
    if (v.role === "build" && (v.privateVolumeSize ?? 0) < cfg.minBuildVolumeBytes) {
      f.one(`${v.name}: private volume ${v.privateVolumeSize === undefined ? "is Qubes' default (2 GiB)" : `is ${gib(v.privateVolumeSize)}`}, below the floor of ${gib(cfg.minBuildVolumeBytes)}`,
        `set envs.<ENV>.volumeSize to at least ${gib(cfg.minBuildVolumeBytes)}`, v.urn);
    }
    const maxDays = cfg.templateMaxAgeDays ?? 0;
    if (maxDays > 0) {
      const raw = v.features["last-updated"];
      if (raw === undefined) {
        if (/Template/.test(v.klass)) f.one(`${v.name}: has no last-updated feature`, `update ${v.name} and record the date in its last-updated feature`, v.urn);
        continue;
      }
      const t = /^\d+$/.test(raw) ? Number(raw) * 1000 : Date.parse(raw);
      const days = ((cfg.now ?? Date.now()) - t) / 86_400_000;
      if (!Number.isFinite(days) || days > maxDays) {
        f.one(`${v.name}: last updated ${Number.isFinite(days) ? `${Math.floor(days)} days ago` : `at an unreadable time (${raw})`}, more than ${maxDays} days`, `update ${v.name}`, v.urn);
      }
    }
  }
  return f.violations();
}

/** The pack's policies, in order; `policy/index.ts` turns each into a stack policy. */
export const POLICIES: readonly {
  name: PolicyName;
  description: string;
  enforcementLevel: "mandatory" | "advisory";
  check: (site: Site, cfg: PackConfig) => Violation[];
  /** Which config keys the policy reads. */
  config: readonly (keyof PackConfig)[];
}[] = [
  { name: "site-resources-readable", description: "The pack can read every site resource, and the qrexec policy parses.", enforcementLevel: "mandatory", check: checkReadable, config: [] },
  { name: "keys-vm-isolated", description: "Keys VMs have no netvm and are nobody's netvm, template or disposable template.", enforcementLevel: "mandatory", check: checkKeysIsolated, config: [] },
  { name: "gpg-only-from-own-build-vm", description: "qubes.Gpg reaches keys-ENV from build-ENV only (any source, any requested target).", enforcementLevel: "mandatory", check: checkGpg, config: [] },
  { name: "log-received-only-via-dom0-redirect", description: "qubesbuilder.LogReceived reaches keys-ENV only from the env's logs VM, via @adminvm with target=keys-ENV, with +build-ENV.", enforcementLevel: "mandatory", check: checkLogReceived, config: [] },
  { name: "build-log-only-to-logs-vm", description: "qubesbuilder.BuildLog from build VMs lands only on their logs VM.", enforcementLevel: "mandatory", check: checkBuildLog, config: [] },
  { name: "one-keys-vm-per-env", description: "One keys VM per environment; no VM but the logs VM serves several environments.", enforcementLevel: "mandatory", check: checkEnvSeparation, config: [] },
  { name: "build-network-through-tor", description: "Build VMs use the Tor gateway as netvm; the only clearnet path is local.ConnectSSH to the net VM for the configured upload hosts.", enforcementLevel: "mandatory", check: checkBuildNetwork, config: ["torGateway", "netvm"] },
  { name: "dom0-and-admin-api-scoped", description: "No VM outside the site may call dom0 with allow; admin.vm.* only on the env's own disposables or dispvm template.", enforcementLevel: "mandatory", check: checkDom0, config: [] },
  { name: "webhook-secret-is-secret", description: "The webhook receiver's secret file exists and its content is a Pulumi secret.", enforcementLevel: "mandatory", check: checkWebhookSecret, config: ["netvm"] },
  { name: "vm-hygiene", description: "Keys VMs are labelled black, build VMs have a large enough private volume, VMs were updated recently.", enforcementLevel: "advisory", check: checkHygiene, config: ["minBuildVolumeBytes", "templateMaxAgeDays"] },
];

/** Run the policies (all, or those named) on the stack's resources. */
export function runChecks(resources: readonly ResourceInput[], cfg: Partial<PackConfig> = {}, only?: readonly PolicyName[]): Violation[] {
  const site = readSite(resources);
  const full: PackConfig = { ...DEFAULT_CONFIG, ...cfg };
  return POLICIES.filter((p) => only === undefined || only.includes(p.name)).flatMap((p) => p.check(site, full));
}
