/**
 * The site's security model as checks: pure functions from the stack's resources to violations.
 *
 * Every qrexec question is asked of the qrexec module's evaluator over a synthetic system (see
 * `policy/model.ts`): the site's VMs with their tags and dispvm settings, the VMs it only refers
 * to, dom0, disposables, and an outsider AppVM — never by matching rule text. `policy/index.ts`
 * wires these into a CrossGuard pack.
 */
import { Rule, Verdict, evaluate, isDom0, ruleKey, servicesInPolicy } from "../qrexec";
import { z } from "zod";
import { serviceConfigPath, serviceSecretPath } from "../contracts/vmPaths";
import { OUTSIDER, ResourceInput, Site, UNKNOWN_AT_PREVIEW, Vm, readSite } from "./model";

export type { ResourceInput } from "./model";

/** The pack's policy names. */
export type PolicyName =
  | "site-resources-readable"
  | "keys-vm-isolated"
  | "gpg-only-from-own-build-vm"
  | "log-received-only-via-dom0-redirect"
  | "build-log-only-to-logs-vm"
  | "log-digest-only-from-own-envs"
  | "winsign-existing-keys-only"
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
export const WEBHOOK_SECRET_PATH = serviceSecretPath("webhooks");
/** The webhook front's TLS private key in the net VM (site/components.ts writes it there). */
export const WEBHOOK_TLS_KEY_PATH = "/rw/config/qubes-build-infra/webhooks-tls.key";

const GPG = "qubes.Gpg";
const LOG_RECEIVED = "qubesbuilder.LogReceived";
const BUILD_LOG = "qubesbuilder.BuildLog";
const LOG_DIGEST = "qubesbuilder.LogDigest";
const WINSIGN = "qubesbuilder.WinSign";
/** What a build VM may ask of its Windows keys VM: use existing keys. */
const WINSIGN_USE = ["QueryKey", "GetCert", "Sign"].map((op) => `${WINSIGN}.${op}`);
/** Key creation and deletion: the site's job (AuthenticodeKey), never a VM's. */
const WINSIGN_MAKE = ["CreateKey", "DeleteKey"].map((op) => `${WINSIGN}.${op}`);
/** The Windows keys VM's WinSign configuration (services/win-sign.ts): `keys` lists the key names its services use. */
export const WIN_SIGN_CONFIG_PATH = serviceConfigPath("win-sign");
const WinSignKeys = z.looseObject({ keys: z.array(z.string().regex(/^[A-Za-z0-9_]{1,64}$/, "a key name")).min(1) });
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

/**
 * A call must be decided by the site's own file, not left to files loaded later (they could allow
 * it): an undecided call is denied by the evaluator without a rule.
 */
function undecidedCall(
  site: Site, f: Findings, subject: string, service: string, source: string, argument: string, target: string, fix: string,
  urn?: string, what = service,
): void {
  const v = ask(site, service, argument, source, target);
  if (v.action !== "deny" || v.rule !== undefined) return;
  const files = site.policyFiles.join(", ") || "none";
  const calls = target === subject ? "to it" : `requesting ${target}`;
  const item = what === service ? `from ${source}${argument ? ` with ${argument}` : ""}` : `${service}${argument} from ${source}`;
  f.add(`undecided\0${subject}\0${what}\0${target}`,
    `${subject}: the site's policy (${files}) does not decide ${what} calls ${calls}, so files loaded later (90-default.policy) would`, item, fix, urn);
}

/** A direct call to a keys VM must be decided by the site's own file. */
function undecided(site: Site, f: Findings, k: Vm, service: string, source: string, argument: string): void {
  undecidedCall(site, f, k.name, service, source, argument, k.name, `keep the fence rule \`* * @anyvm ${k.name} deny\` after the site's allow rules`, k.urn);
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
  if (!unusable(site)) servicesOnKeysVms(site, f);
  return f.violations();
}

/** What may reach a keys VM at all: signing and the logs VM's hand-over (judged in detail by their own policies). */
const KEYS_VM_SERVICES = [GPG, LOG_RECEIVED];

/** Any other service that lands on keys-ENV (by any caller, argument or requested target) is a violation. */
function servicesOnKeysVms(site: Site, f: Findings): void {
  const targets = requestTargets(site);
  const services = probeServices(site).filter((svc) => !KEYS_VM_SERVICES.includes(svc));
  for (const s of callers(site)) {
    for (const svc of services) {
      for (const a of argsFor(site, svc)) {
        for (const t of targets) {
          const v = ask(site, svc, a, s, t);
          if (!v.rule || v.action === "deny") continue;
          for (const k of keysVms(site)) {
            if (!reaches(v, k.name)) continue;
            const what = svc === PROBE_SERVICE ? "any service" : svc;
            f.add(`${k.name}\0svc\0${at(v.rule)}`, `${k.name}: ${what} is ${v.action === "ask" ? "offered" : "allowed"} on it by ${cite(v.rule)}; only ${KEYS_VM_SERVICES.join(" and ")} may reach a keys VM`,
              `${s} calling ${svc}${a} requesting ${t}`, `remove the rule or narrow its target; keep \`* * @anyvm ${k.name} deny\` after the allows`, policyUrn(site, v.rule));
          }
        }
      }
    }
  }
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

/**
 * 5. qubesbuilder.LogDigest (sign-if-logged: nothing is signed before the logs VM logged its
 * digest) lands only on a logs VM, and there only from a build VM of an environment it serves, or
 * from that environment's Windows keys VM on behalf of its own build VM (`+build-ENV`), both
 * through dom0 (`@adminvm`). Keys VMs never call it. Each build VM (and Windows keys VM) does
 * reach its logs VM: without that rule nothing could be signed.
 */
export function checkLogDigest(site: Site): Violation[] {
  const f = new Findings("log-digest-only-from-own-envs");
  if (unusable(site)) return [];
  const targets = requestTargets(site);
  const logsVms = site.vms.filter((v) => v.role === "logs");
  const logsOf = (envs: readonly string[]) => logsVms.filter((l) => overlaps(l.envs, envs)).map((l) => l.name);
  const buildsOf = (envs: readonly string[]) => buildVms(site).filter((b) => overlaps(b.envs, envs)).map((b) => b.name);
  const fences = `\`${LOG_DIGEST} * @anyvm @anyvm deny\` and \`${LOG_DIGEST} * @anyvm @adminvm deny\``;
  const fix = (logs: string) =>
    `allow only \`${LOG_DIGEST} * build-ENV @adminvm allow target=${logs}\` and ` +
    `\`${LOG_DIGEST} +build-ENV win-keys-ENV @adminvm allow target=${logs}\` for the environments ${logs} serves, then keep the fences ${fences}`;

  /** Why a call landing on logs VM `l` is not one the site means, or undefined when it is. */
  const wrong = (l: Vm, s: string, a: string, t: string): string | undefined => {
    const src = site.byName.get(s);
    const served = l.envs.join(", ");
    if (src?.role !== "build" && src?.role !== "win-keys") return `${s} is neither a build VM nor a Windows keys VM of ${served}`;
    const kind = src.role === "build" ? "build VM" : "Windows keys VM";
    if (!overlaps(src.envs, l.envs)) return `${s} is the ${kind} of ${src.envs.join(", ")}, which ${l.name} does not serve (${served})`;
    if (!isDom0(t)) return `requested ${t} directly instead of @adminvm (no dom0 redirect)`;
    if (src.role === "win-keys") {
      const ok = buildsOf(src.envs).map((b) => `+${b}`);
      if (!ok.includes(a)) return `argument ${a || "(none)"}, not its own build VM ${ok.join(" or ") || "(none)"}`;
    }
    return undefined;
  };

  const buildArgs = buildVms(site).map((b) => `+${b.name}`);
  for (const s of callers(site)) {
    const src = site.byName.get(s);
    for (const a of argsFor(site, LOG_DIGEST, [...buildArgs, `+${s}`])) {
      for (const t of targets) {
        const v = ask(site, LOG_DIGEST, a, s, t);
        if (!v.rule || v.action === "deny") continue;
        const call = `${s} requesting ${t}${a ? ` with ${a}` : ""}`;
        const urn = policyUrn(site, v.rule);
        if (src?.role === "keys") {
          f.add(`keys\0${s}\0${at(v.rule)}`, `${s}: a keys VM may call ${LOG_DIGEST} (it only receives logged entries, through LogReceived) by ${cite(v.rule)}`,
            `${call} (lands on ${landings(v).join(", ")})`, `narrow the rule's source to build VMs and Windows keys VMs, and keep the fences ${fences}`, urn);
          continue;
        }
        for (const x of landings(v)) {
          const l = site.byName.get(x);
          if (l?.role !== "logs") {
            f.add(`where\0${x}\0${at(v.rule)}`, `${x}: ${LOG_DIGEST} lands on it, and it is not a logs VM, by ${cite(v.rule)}`, call,
              `redirect ${LOG_DIGEST} only to the logs VM of the caller's environment`, urn);
            continue;
          }
          const why = wrong(l, s, a, t);
          if (why !== undefined) f.add(`${x}\0${at(v.rule)}`, `${x}: ${LOG_DIGEST} lands on it by ${cite(v.rule)}`, `${call} (${why})`, fix(x), urn);
        }
      }
    }
  }

  // Without its rule a build VM (or a Windows keys VM) cannot log, so nothing it asks for is ever signed.
  const mustReach = (vm: Vm, argument: string, what: string) => {
    const logs = logsOf(vm.envs);
    if (logs.length === 0) {
      f.one(`${vm.name}: no logs VM serves ${vm.envs.join(", ") || "its environment"}, so ${what} cannot be logged and nothing is signed`,
        `set envs.<ENV>.logs`, vm.urn);
      return;
    }
    const v = ask(site, LOG_DIGEST, argument, vm.name, "@adminvm");
    if (logs.some((l) => reaches(v, l))) return;
    f.add(`pos\0${vm.name}`, `${vm.name}: cannot log ${what} with its logs VM ${logs.join(", ")} (so nothing is signed)`,
      `requesting @adminvm${argument ? ` with ${argument}` : ""}: ${outcome(v)}`,
      `add \`${LOG_DIGEST} ${argument || "*"} ${vm.name} @adminvm allow target=${logs[0]}\` before the fences`, vm.urn);
  };
  for (const b of buildVms(site)) mustReach(b, "", "the digests it wants signed");
  for (const w of site.vms.filter((v) => v.role === "win-keys")) {
    for (const b of buildsOf(w.envs)) mustReach(w, `+${b}`, `what ${b} asks it to sign`);
  }

  // Calls to dom0 and to the logs VMs must be decided by the site's own file.
  for (const s of callers(site)) {
    for (const a of ["", PROBE_ARG]) {
      undecidedCall(site, f, "dom0", LOG_DIGEST, s, a, "@adminvm", `keep the fence \`${LOG_DIGEST} * @anyvm @adminvm deny\` after the site's allow rules`);
      for (const l of logsVms) {
        undecidedCall(site, f, l.name, LOG_DIGEST, s, a, l.name, `keep the fence \`${LOG_DIGEST} * @anyvm @anyvm deny\` after the site's allow rules`, l.urn);
      }
    }
  }
  return f.violations();
}

/**
 * The key names a Windows keys VM signs with: the `keys` of its WinSign configuration (what its
 * services accept); while that file's content is not known yet (a preview before the logs VM's
 * verifier key exists), the names of the AuthenticodeKey resources the site makes in it.
 */
function windowsKeyNames(site: Site, wk: Vm): { keys: string[] } | { problem: string } {
  const file = site.files.find((x) => x.vm === wk.name && x.path === WIN_SIGN_CONFIG_PATH);
  if (file?.content !== undefined && file.content !== UNKNOWN_AT_PREVIEW) {
    let json: unknown;
    try {
      json = JSON.parse(file.content);
    } catch {
      return { problem: `its ${WIN_SIGN_CONFIG_PATH} is not JSON` };
    }
    const p = WinSignKeys.safeParse(json);
    if (p.success) return { keys: p.data.keys };
    return { problem: `its ${WIN_SIGN_CONFIG_PATH}: ${p.error.issues.map((i) => `${i.path.join(".") || "(file)"}: ${i.message}`).join("; ")}` };
  }
  const made = site.authenticodeKeys.filter((k) => k.vm === wk.name).map((k) => k.name);
  if (made.length > 0) return { keys: [...new Set(made)] };
  return { problem: `has neither a readable ${WIN_SIGN_CONFIG_PATH} nor an AuthenticodeKey, so the pack cannot tell which keys exist` };
}

/**
 * 6. A Windows keys VM is reached only by its own build VM's qubesbuilder.WinSign.QueryKey, GetCert
 * and Sign, with an existing key's name as argument (the `+Qubes__Windows__Tools` builderv2 sends):
 * no CreateKey or DeleteKey from any VM, nothing from another environment, no other service. The
 * build VM does reach it directly and through `@default`, and direct calls to it are decided by
 * the site's own file.
 */
export function checkWinSign(site: Site): Violation[] {
  const f = new Findings("winsign-existing-keys-only");
  if (unusable(site)) return [];
  const targets = requestTargets(site);
  const wks = site.vms.filter((v) => v.role === "win-keys").map((w) => {
    const k = windowsKeyNames(site, w);
    if ("problem" in k) {
      f.one(`${w.name}: ${k.problem}`, `give ${w.name} its WinSign configuration (keys: the configured windowsKeyName) and its AuthenticodeKey`, w.urn);
    }
    return {
      w,
      /** undefined: the keys cannot be told (reported above), so arguments are not judged. */
      keyArgs: "keys" in k ? k.keys.map((x) => `+${x}`) : undefined,
      own: buildVms(site).filter((b) => overlaps(b.envs, w.envs)).map((b) => b.name),
    };
  });
  if (wks.length === 0) return f.violations();
  const allKeyArgs = [...new Set(wks.flatMap((x) => x.keyArgs ?? []))];
  const services = probeServices(site, [...WINSIGN_USE, ...WINSIGN_MAKE, `${WINSIGN}.Timestamp`]);
  // Each call is evaluated once; the Windows keys VMs it lands on are then judged one by one.
  for (const s of callers(site)) {
    for (const svc of services) {
      for (const a of argsFor(site, svc, svc.startsWith(`${WINSIGN}.`) ? allKeyArgs : [])) {
        for (const t of targets) {
          const v = ask(site, svc, a, s, t);
          if (!v.rule || v.action === "deny") continue;
          for (const { w, keyArgs, own } of wks) {
            if (!reaches(v, w.name)) continue;
            const call = `${s} calling ${svc}${a} requesting ${t}`;
            const key = `${w.name}\0${at(v.rule)}`;
            const urn = policyUrn(site, v.rule);
            const keep = `keep \`* * @anyvm ${w.name} deny\` after the allows`;
            const allowed = `${v.action === "ask" ? "offered" : "allowed"}`;
            if (WINSIGN_MAKE.includes(svc)) {
              f.add(`make\0${key}`, `${w.name}: key creation or deletion (${WINSIGN_MAKE.join(", ")}) is ${allowed} by ${cite(v.rule)}`, call,
                `remove the rule: Windows keys are made by the site (AuthenticodeKey), never on a VM's request; ${keep}`, urn);
            } else if (!WINSIGN_USE.includes(svc)) {
              const what = svc === PROBE_SERVICE ? "any service" : svc;
              f.add(`svc\0${key}`, `${w.name}: ${what} is ${allowed} on it by ${cite(v.rule)}; only ${WINSIGN_USE.join(", ")} may reach it`, call,
                `remove the rule or narrow its service; ${keep}`, urn);
            } else if (!own.includes(s)) {
              f.add(`src\0${key}`, `${w.name}: ${WINSIGN} is ${allowed} from VMs other than ${own.join(", ") || "its build VM"} by ${cite(v.rule)}`, call,
                `narrow the rule's source to ${own[0] ?? "the env's build VM"}; ${keep}`, urn);
            } else if (keyArgs !== undefined && !keyArgs.includes(a)) {
              const shown = keyArgs.join(" or ");
              f.add(`arg\0${key}`, `${w.name}: ${WINSIGN} is ${allowed} with arguments other than the existing key ${shown} by ${cite(v.rule)}`, call,
                `set the rule's argument to ${shown}`, urn);
            }
          }
        }
      }
    }
  }
  for (const { w, keyArgs, own } of wks) {
    const key = keyArgs?.[0];
    for (const b of own) {
      if (key === undefined) break;
      for (const svc of WINSIGN_USE) {
        for (const t of [w.name, "@default"]) {
          const v = ask(site, svc, key, b, t);
          if (reaches(v, w.name)) continue;
          f.add(`pos\0${w.name}`, `${w.name}: its build VM ${b} cannot use it for Windows signing`, `${svc}${key} requesting ${t}: ${outcome(v)}`,
            `allow \`${svc} ${key} ${b} ${w.name} allow\` and \`${svc} ${key} ${b} @default allow target=${w.name}\` before the fences`, w.urn);
        }
      }
    }
    const fence = `keep the fence rule \`* * @anyvm ${w.name} deny\` after the site's allow rules`;
    for (const s of callers(site)) {
      for (const svc of [...WINSIGN_USE, ...WINSIGN_MAKE, PROBE_SERVICE]) {
        for (const a of [key ?? "", PROBE_ARG]) undecidedCall(site, f, w.name, svc, s, a, w.name, fence, w.urn, "any service's");
      }
    }
  }
  return f.violations();
}

/** 7. One keys VM per environment; no VM but the logs VM serves several environments. */
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

/** 8. Build VMs reach the network only through the Tor gateway; the only clearnet path is ConnectSSH to configured hosts. */
export function checkBuildNetwork(site: Site, cfg: PackConfig): Violation[] {
  const f = new Findings("build-network-through-tor");
  // Dispvm templates too: their disposables build (builderv2's executors, a v1 env's template builds) on their netvm.
  const builders = site.vms.filter((v) => v.role === "build" || v.role === "builder-dvm" || v.role === "windows-dvm" || v.role === "env-dvm");
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

/** 9. Nothing outside the site calls dom0 with allow; admin.vm.* only on the env's own disposables or dispvm template. */
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
          // A dispvm template is shared by every env that builds in it: no build VM may remove it.
          const ok = src?.role === "build" && (
            (d !== undefined && d.type === "DispVM" && d.tags.includes(`disp-created-by-${s}`)) ||
            (dispTemplates.has(t) && svc !== "admin.vm.Remove") || (t === s && SELF_ADMIN.has(svc)));
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

/** 10. The webhook receiver's HMAC secret is set, and set as a Pulumi secret. */
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
  // The front's TLS key, when there is one, is a secret too.
  const key = site.files.find((x) => x.path === WEBHOOK_TLS_KEY_PATH && x.vm === cfg.netvm);
  if (key !== undefined && key.contentSecret === false) {
    f.one(`${cfg.netvm}: the webhook front's TLS key ${WEBHOOK_TLS_KEY_PATH} is plain text in the stack`,
      "set it with `pulumi config set --secret qubes-build-infra:webhookTlsKey ...` and pass it as a Pulumi secret", key.urn);
  }
  return f.violations();
}

/** 11 (advisory). Labels, volume sizes, template freshness. */
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
  {
    name: "log-digest-only-from-own-envs",
    description: "qubesbuilder.LogDigest lands only on a logs VM, from build VMs of the envs it serves (via @adminvm) and from win-keys-ENV with " +
      "+build-ENV; keys VMs never call it; every build VM reaches its logs VM.",
    enforcementLevel: "mandatory", check: checkLogDigest, config: [],
  },
  {
    name: "winsign-existing-keys-only",
    description: "Only build-ENV's qubesbuilder.WinSign QueryKey/GetCert/Sign with an existing key reach win-keys-ENV; CreateKey/DeleteKey reach " +
      "no VM; the site's file decides direct calls.",
    enforcementLevel: "mandatory", check: checkWinSign, config: [],
  },
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
