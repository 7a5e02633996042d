// The pack's checks on the real site plan (clean), and one violating variant per policy.
import { PolicyName, ResourceInput, Violation, runChecks } from "../../policy/checks";
import { UNKNOWN_AT_PREVIEW, readSite } from "../../policy/model";
import { PlannedRule, PlannedVm, SitePlan } from "../../site/plan";
import { baseConfig, planOf, resourcesOf } from "./siteResources";

const clone = <T>(x: T): T => JSON.parse(JSON.stringify(x)) as T;
const policiesOf = (vs: readonly Violation[]) => [...new Set(vs.map((v) => v.policy))].sort();

/** Resources of the base site after a change to its plan. */
function withPlan(change: (p: SitePlan) => void, raw: unknown = baseConfig): ResourceInput[] {
  const { plan, cfg } = planOf(raw);
  const p = clone(plan);
  change(p);
  return resourcesOf(p, cfg);
}
const vmOf = (p: SitePlan, name: string): PlannedVm => {
  const v = p.vms.find((x) => x.name === name);
  if (!v) throw new Error(`no VM ${name} in the plan`);
  return v;
};
const ruleOf = (p: SitePlan, pred: (r: PlannedRule) => boolean): PlannedRule => {
  const r = p.rules.find(pred);
  if (!r) throw new Error("no such rule in the plan");
  return r;
};
/** Both environments build Windows tools (each with its own win-keys VM). */
const twoWindows = { ...baseConfig, envs: { ...baseConfig.envs, fedora: { ...baseConfig.envs.fedora, builderv2: true, windows: true } } };
/** Each environment with its own logs VM. */
const twoLogs = {
  ...baseConfig,
  logs: { ...baseConfig.logs, keyFingerprint: "0123456789ABCDEF0123456789ABCDEF01234567" },
  envs: { ...baseConfig.envs, fedora: { ...baseConfig.envs.fedora, logs: "logs-fedora" } },
};
const isLogDigestOf = (source: string) => (r: PlannedRule) => r.service === "qubesbuilder.LogDigest" && r.source === source;
const WIN_KEY = "+Qubes__Windows__Tools";

const rule = (service: string, argument: string, source: string, target: string, action: PlannedRule["action"], params: PlannedRule["params"] = {}): PlannedRule =>
  ({ service, argument, source, target, action, params });

describe("the real site plan", () => {
  it("passes every policy, mandatory and advisory", () => {
    const { plan, cfg } = planOf();
    expect(runChecks(resourcesOf(plan, cfg))).toEqual([]);
  });

  it("passes for a stack written before VmFiles (a ManagedFile or RpcService per file)", () => {
    const { plan, cfg } = planOf();
    expect(runChecks(resourcesOf(plan, cfg, { legacyFiles: true }))).toEqual([]);
    expect(runChecks(resourcesOf(plan, cfg, { legacyFiles: true, genericType: true }))).toEqual([]);
  });

  it("passes with the generic dynamic type token (kinds told apart by props)", () => {
    const { plan, cfg } = planOf();
    const res = resourcesOf(plan, cfg, { genericType: true });
    expect(readSite(res).vms).toHaveLength(plan.vms.length);
    expect(runChecks(res)).toEqual([]);
  });

  it("passes for a single v1 environment with its own logs VM", () => {
    const raw = { ...baseConfig, envs: { fedora: { ...baseConfig.envs.fedora, logs: "logs-fedora" } } };
    const { plan, cfg } = planOf(raw);
    expect(runChecks(resourcesOf(plan, cfg))).toEqual([]);
  });

  it("passes with two Windows environments and with two logs VMs (sign-if-logged kept apart per env)", () => {
    for (const raw of [twoWindows, twoLogs]) {
      const { plan, cfg } = planOf(raw);
      expect(runChecks(resourcesOf(plan, cfg))).toEqual([]);
    }
  });

  it("reads back every VM's role from its role tag", () => {
    const { plan, cfg } = planOf();
    const site = readSite(resourcesOf(plan, cfg));
    expect(site.vms.map((v) => [v.name, v.role])).toEqual(plan.vms.map((v) => [v.name, v.role]));
    expect(plan.vms.map((v) => v.role)).toContain("env-dvm");
  });

  it("exercises the Windows signing rules (the tested site has a Windows environment)", () => {
    const { plan, cfg } = planOf();
    const site = readSite(resourcesOf(plan, cfg));
    expect(site.vms.filter((v) => v.role === "win-keys").map((v) => v.name)).toEqual(["win-keys-debian"]);
    expect(site.authenticodeKeys).toEqual([expect.objectContaining({ vm: "win-keys-debian", name: "Qubes__Windows__Tools" })]);
    expect(plan.rules.filter((r) => r.target === "win-keys-debian" && r.action === "allow").map((r) => `${r.service}${r.argument}`))
      .toEqual(["QueryKey", "GetCert", "Sign"].map((op) => `qubesbuilder.WinSign.${op}${WIN_KEY}`));
  });

  it("reads the key names from the AuthenticodeKey while the WinSign config is unknown (preview), and fails closed without either", () => {
    const { plan, cfg } = planOf();
    const unknown = resourcesOf(plan, cfg, { winSignContent: () => UNKNOWN_AT_PREVIEW });
    expect(runChecks(unknown)).toEqual([]);
    const neither = unknown.filter((r) => !r.name.endsWith(":authenticode-key"));
    expect(runChecks(neither).map((v) => [v.policy, v.message])).toEqual([
      ["winsign-existing-keys-only", expect.stringMatching(/^win-keys-debian: has neither a readable .*win-sign.json nor an AuthenticodeKey.*Fix:/)],
    ]);
  });

  it("takes the key names from the WinSign config when it is known", () => {
    const { plan, cfg } = planOf();
    const other = resourcesOf(plan, cfg, { winSignContent: (_wk, json) => json.replace("Qubes__Windows__Tools", "Other__Key") });
    const vs = runChecks(other);
    expect(policiesOf(vs)).toEqual(["winsign-existing-keys-only"]);
    expect(vs.map((v) => v.message).join("\n")).toMatch(
      /win-keys-debian: qubesbuilder.WinSign is allowed with arguments other than the existing key \+Other__Key by rule 20-qubes-build-infra.policy:\d+ `/);
    const bad = resourcesOf(plan, cfg, { winSignContent: () => "{\"keys\": []}" });
    expect(runChecks(bad).map((v) => v.message).join("\n")).toMatch(/win-keys-debian: its \/usr\/local\/etc\/qubes-build-infra\/win-sign.json: keys: /);
    const garbled = resourcesOf(plan, cfg, { winSignContent: () => "keys: [Qubes__Windows__Tools]" });
    expect(runChecks(garbled).map((v) => v.message).join("\n")).toMatch(/win-keys-debian: its \/usr\/local\/etc\/qubes-build-infra\/win-sign.json is not JSON/);
  });

  it("evaluates rules at the lines the renderer writes", () => {
    const { plan, cfg } = planOf();
    const site = readSite(resourcesOf(plan, cfg));
    expect(site.policy.rules[0]).toMatchObject({ file: "20-qubes-build-infra.policy", line: 2, service: plan.rules[0].service });
    expect(site.policy.rules[5].line).toBe(7);
  });
});

/** What is changed, the one policy that must fail, the resources, and what its messages must say (each pattern). */
type Variant = [string, PolicyName, () => ResourceInput[], RegExp | RegExp[]];

const variants: Variant[] = [
  ["a build VM may open a shell in its keys VM", "keys-vm-isolated",
    () => withPlan((p) => { p.rules.unshift({ service: "qubes.VMShell", argument: "*", source: "build-fedora", target: "keys-fedora", action: "allow", params: {} }); }),
    /keys-fedora: qubes\.VMShell is allowed on it by rule 20-qubes-build-infra\.policy:2 .*only qubes\.Gpg and qubesbuilder\.LogReceived may reach a keys VM/],
  ["a keys VM gets a netvm", "keys-vm-isolated",
    () => withPlan((p) => { vmOf(p, "keys-fedora").netvm = "sys-firewall"; }), /keys-fedora: netvm is sys-firewall.*Fix: set netvm: null/],
  ["a keys VM becomes the default dispvm of the build VM", "keys-vm-isolated",
    () => withPlan((p) => { vmOf(p, "build-fedora").defaultDispvm = "keys-fedora"; }), /keys-fedora: is the default disposable template of build-fedora/],
  ["qubes.Gpg to keys-fedora from the env tag (which the logs VM carries too)", "gpg-only-from-own-build-vm",
    () => withPlan((p) => { ruleOf(p, (r) => r.service === "qubes.Gpg" && r.target === "keys-fedora").source = "@tag:qbi-env-fedora"; }),
    /keys-fedora: qubes.Gpg is allowed from VMs other than build-fedora by rule 20-qubes-build-infra.policy:\d+ `qubes.Gpg \* @tag:qbi-env-fedora keys-fedora allow`: logs requesting keys-fedora/],
  ["a redirect lets @anyvm reach keys-debian through @default", "gpg-only-from-own-build-vm",
    () => withPlan((p) => { p.rules.unshift({ service: "qubes.Gpg", argument: "*", source: "@anyvm", target: "@default", action: "allow", params: { target: "keys-debian" } }); }),
    /keys-debian: qubes.Gpg is allowed .* by rule 20-qubes-build-infra.policy:2 .*qbi-probe-outsider requesting @default/],
  ["LogReceived with any argument", "log-received-only-via-dom0-redirect",
    () => withPlan((p) => { ruleOf(p, (r) => r.service === "qubesbuilder.LogReceived" && r.argument === "+build-fedora").argument = "*"; }),
    /keys-fedora: qubesbuilder.LogReceived reaches it by rule 20-qubes-build-infra.policy:4 .*with argument \+build-debian, not \+build-fedora/],
  ["LogReceived called on keys-fedora directly", "log-received-only-via-dom0-redirect",
    () => withPlan((p) => { ruleOf(p, (r) => r.service === "qubesbuilder.LogReceived" && r.argument === "+build-fedora").target = "keys-fedora"; }),
    /keys-fedora: qubesbuilder.LogReceived reaches it .*requesting keys-fedora directly instead of @adminvm/],
  ["LogDigest from @anyvm", "log-digest-only-from-own-envs",
    () => withPlan((p) => { ruleOf(p, isLogDigestOf("build-fedora")).source = "@anyvm"; }), [
      /logs: qubesbuilder.LogDigest lands on it by rule 20-qubes-build-infra.policy:3 `qubesbuilder.LogDigest \* @anyvm @adminvm allow target=logs`: /,
      /: qbi-probe-disp-build-fedora requesting dom0 \(qbi-probe-disp-build-fedora is neither a build VM nor a Windows keys VM of fedora, debian\)/,
      /Fix: allow only `qubesbuilder.LogDigest \* build-ENV @adminvm allow target=logs` and `qubesbuilder.LogDigest \+build-ENV win-keys-ENV @adminvm/,
      /keys-fedora: a keys VM may call qubesbuilder.LogDigest .* by rule 20-qubes-build-infra.policy:3/,
    ]],
  ["a keys VM may log digests", "log-digest-only-from-own-envs",
    () => withPlan((p) => { p.rules.unshift(rule("qubesbuilder.LogDigest", "*", "keys-fedora", "@adminvm", "allow", { target: "logs" })); }),
    /keys-fedora: a keys VM may call qubesbuilder.LogDigest .* by rule 20-qubes-build-infra.policy:2 .*keys-fedora requesting @adminvm \(lands on logs\)/],
  ["LogDigest of fedora redirected to the other env's logs VM", "log-digest-only-from-own-envs",
    () => withPlan((p) => { ruleOf(p, isLogDigestOf("build-fedora")).params.target = "logs"; }, twoLogs), [
      /logs: qubesbuilder.LogDigest lands on it by rule 20-qubes-build-infra.policy:3 .*build-fedora requesting @adminvm \(build-fedora is the build VM /,
      /\(build-fedora is the build VM of fedora, which logs does not serve \(debian\)\)/,
      /build-fedora: cannot log the digests it wants signed with its logs VM logs-fedora/,
    ]],
  // (Redirected to its keys VM instead, it also fails keys-vm-isolated: only signing reaches a keys VM.)
  ["LogDigest of a build VM redirected to another build VM", "log-digest-only-from-own-envs",
    () => withPlan((p) => { ruleOf(p, isLogDigestOf("build-fedora")).params.target = "build-debian"; }), [
      /build-debian: qubesbuilder.LogDigest lands on it, and it is not a logs VM, by rule 20-qubes-build-infra.policy:3 /,
      /`qubesbuilder.LogDigest \* build-fedora @adminvm allow target=build-debian`: build-fedora requesting dom0; build-fedora requesting @adminvm;/,
    ]],
  ["LogDigest called on the logs VM directly", "log-digest-only-from-own-envs",
    () => withPlan((p) => { p.rules.unshift(rule("qubesbuilder.LogDigest", "*", "build-fedora", "logs", "allow")); }),
    /logs: qubesbuilder.LogDigest lands on it by rule 20-qubes-build-infra.policy:2 .*build-fedora requesting logs \(requested logs directly instead of/],
  ["win-keys-debian logging for another env's build VM", "log-digest-only-from-own-envs",
    () => withPlan((p) => { ruleOf(p, isLogDigestOf("win-keys-debian")).argument = "*"; }), [
      /logs: qubesbuilder.LogDigest lands on it by rule 20-qubes-build-infra.policy:\d+ `qubesbuilder.LogDigest \* win-keys-debian @adminvm allow target=logs`/,
      /win-keys-debian requesting @adminvm with \+build-fedora \(argument \+build-fedora, not its own build VM \+build-debian\)/,
    ]],
  ["no LogDigest rule for build-fedora (signing impossible)", "log-digest-only-from-own-envs",
    () => withPlan((p) => { p.rules = p.rules.filter((r) => !isLogDigestOf("build-fedora")(r)); }), [
      /build-fedora: cannot log the digests it wants signed with its logs VM logs \(so nothing is signed\): requesting @adminvm: /,
      /Fix: add `qubesbuilder.LogDigest \* build-fedora @adminvm allow target=logs` before the fences/,
    ]],
  ["no LogDigest rule for win-keys-debian (Windows signing impossible)", "log-digest-only-from-own-envs",
    () => withPlan((p) => { p.rules = p.rules.filter((r) => !isLogDigestOf("win-keys-debian")(r)); }),
    /win-keys-debian: cannot log what build-debian asks it to sign with its logs VM logs/],
  ["the LogDigest fences dropped", "log-digest-only-from-own-envs",
    () => withPlan((p) => { p.rules = p.rules.filter((r) => !(r.service === "qubesbuilder.LogDigest" && r.action === "deny")); }), [
      /dom0: the site's policy \(20-qubes-build-infra.policy\) does not decide qubesbuilder.LogDigest calls requesting @adminvm, so files loaded later/,
      /requesting @adminvm, so files loaded later \(90-default.policy\) would: from qbi-probe-disp-build-fedora;/,
      /logs: the site's policy .* does not decide qubesbuilder.LogDigest calls to it/,
    ]],
  ["WinSign.CreateKey granted to the build VM", "winsign-existing-keys-only",
    () => withPlan((p) => { p.rules.unshift(rule("qubesbuilder.WinSign.CreateKey", WIN_KEY, "build-debian", "win-keys-debian", "allow")); }), [
      /win-keys-debian: key creation or deletion \(qubesbuilder.WinSign.CreateKey, qubesbuilder.WinSign.DeleteKey\) is allowed by rule /,
      /by rule 20-qubes-build-infra.policy:2 `qubesbuilder.WinSign.CreateKey \+Qubes__Windows__Tools build-debian win-keys-debian allow`: /,
      /: build-debian calling qubesbuilder.WinSign.CreateKey\+Qubes__Windows__Tools requesting win-keys-debian. Fix: remove the rule/,
    ]],
  ["WinSign.DeleteKey through @default from any VM", "winsign-existing-keys-only",
    () => withPlan((p) => { p.rules.unshift(rule("qubesbuilder.WinSign.DeleteKey", "*", "@anyvm", "@default", "allow", { target: "win-keys-debian" })); }),
    /win-keys-debian: key creation or deletion .* by rule 20-qubes-build-infra.policy:2 .*qbi-probe-disp-build-fedora calling qubesbuilder.WinSign.DeleteKey /],
  ["WinSign from build-debian to win-keys-fedora", "winsign-existing-keys-only",
    () => withPlan((p) => { p.rules.unshift(rule("qubesbuilder.WinSign.Sign", WIN_KEY, "build-debian", "win-keys-fedora", "allow")); }, twoWindows), [
      /win-keys-fedora: qubesbuilder.WinSign is allowed from VMs other than build-fedora by rule 20-qubes-build-infra.policy:2 /,
      /: build-debian calling qubesbuilder.WinSign.Sign\+Qubes__Windows__Tools requesting win-keys-fedora. Fix: narrow the rule's source to build-fedora/,
    ]],
  ["WinSign.Sign with any key", "winsign-existing-keys-only",
    () => withPlan((p) => { ruleOf(p, (r) => r.service === "qubesbuilder.WinSign.Sign" && r.target === "@default").argument = "*"; }), [
      /win-keys-debian: qubesbuilder.WinSign is allowed with arguments other than the existing key \+Qubes__Windows__Tools by rule /,
      /build-debian calling qubesbuilder.WinSign.Sign\+qbi-probe.invalid requesting @default/,
    ]],
  ["a shell on the Windows keys VM", "winsign-existing-keys-only",
    () => withPlan((p) => { p.rules.unshift(rule("qubes.VMShell", "*", "build-debian", "win-keys-debian", "allow")); }),
    /win-keys-debian: qubes.VMShell is allowed on it by rule 20-qubes-build-infra.policy:2 .*only qubesbuilder.WinSign.QueryKey, .* may reach it/],
  ["no WinSign.GetCert through @default", "winsign-existing-keys-only",
    () => withPlan((p) => { p.rules = p.rules.filter((r) => !(r.service === "qubesbuilder.WinSign.GetCert" && r.target === "@default")); }),
    /win-keys-debian: its build VM build-debian cannot use it for Windows signing: qubesbuilder.WinSign.GetCert\+Qubes__Windows__Tools requesting @default/],
  ["the Windows keys VM's fence dropped", "winsign-existing-keys-only",
    () => withPlan((p) => { p.rules = p.rules.filter((r) => !(r.service === "*" && r.target === "win-keys-debian")); }), [
      /^win-keys-debian: the site's policy \(20-qubes-build-infra.policy\) does not decide any service's calls to it, /,
      / would: qubesbuilder.WinSign.QueryKey\+Qubes__Windows__Tools from qbi-probe-disp-build-fedora; /,
      /Fix: keep the fence rule `\* \* @anyvm win-keys-debian deny`/,
    ]],
  ["BuildLog of fedora redirected to build-debian", "build-log-only-to-logs-vm",
    () => withPlan((p) => { ruleOf(p, (r) => r.service === "qubesbuilder.BuildLog" && r.source === "build-fedora").params.target = "build-debian"; }),
    /build-fedora: qubesbuilder.BuildLog lands on build-debian, not only on its logs VM logs, by rule 20-qubes-build-infra.policy:2/],
  ["the builder dispvm template tagged for two environments", "one-keys-vm-per-env",
    () => withPlan((p) => { vmOf(p, "builder-dvm").tags.push("qbi-env-fedora", "qbi-env-debian"); }), /builder-dvm: serves several environments \(fedora, debian\)/],
  ["a second keys VM for fedora (fenced like the first)", "one-keys-vm-per-env",
    () => withPlan((p) => {
      p.vms.push({ ...clone(vmOf(p, "keys-fedora")), name: "keys-fedora-old" });
      p.rules.push(rule("*", "*", "@anyvm", "keys-fedora-old", "deny"));
    }), /environment fedora: has 2 keys VMs \(keys-fedora, keys-fedora-old\)/],
  ["build VMs on the clearnet firewall", "build-network-through-tor",
    () => withPlan(() => undefined, { ...baseConfig, buildNetvm: "sys-firewall" }), /build-fedora: netvm is sys-firewall, not the Tor gateway sys-whonix/],
  // A v1 environment's dispvm template: its disposables build the env's templates, on its netvm.
  ["a v1 environment's dispvm template on the clearnet firewall", "build-network-through-tor",
    () => withPlan((p) => { vmOf(p, "dvm-fedora").netvm = "sys-firewall"; }), /dvm-fedora: netvm is sys-firewall, not the Tor gateway sys-whonix/],
  ["an upload rule for a host the ssh proxy does not know", "build-network-through-tor",
    () => withPlan((p) => { p.rules.unshift(rule("local.ConnectSSH", "+evil.example.com", "build-debian", "sys-net", "allow")); }),
    /build-debian: a clearnet path to sys-net is open by rule 20-qubes-build-infra.policy:2 .*local.ConnectSSH\+evil.example.com \(not a configured upload host/],
  ["@anyvm may copy files to dom0", "dom0-and-admin-api-scoped",
    () => withPlan((p) => { p.rules.unshift(rule("qubes.Filecopy", "*", "@anyvm", "@adminvm", "allow")); }),
    /dom0: a VM outside the site may call it with allow by rule 20-qubes-build-infra.policy:2 `qubes.Filecopy \* @anyvm @adminvm allow`/],
  ["a build VM may remove the shared builder-dvm", "dom0-and-admin-api-scoped",
    () => withPlan((p) => { ruleOf(p, (r) => r.service === "admin.vm.Remove").target = "builder-dvm"; }),
    /dom0: admin.vm.Remove is allowed beyond a build VM's own disposables and dispvm template by rule .*build-debian on builder-dvm/],
  ["a build VM may remove another env's disposables", "dom0-and-admin-api-scoped",
    () => withPlan((p) => { ruleOf(p, (r) => r.service === "admin.vm.Remove").target = "@dispvm"; }),
    /dom0: admin.vm.Remove is allowed beyond a build VM's own disposables and dispvm template by rule/],
  ["admin.vm.Start on any VM", "dom0-and-admin-api-scoped",
    () => withPlan((p) => { ruleOf(p, (r) => r.service === "admin.vm.Start").target = "@anyvm"; }),
    /dom0: admin.vm.Start is allowed beyond a build VM's own disposables and dispvm template by rule .*build-debian on keys-debian/],
  ["the webhook secret in plain text", "webhook-secret-is-secret",
    () => { const { plan, cfg } = planOf(); return resourcesOf(plan, cfg, { secretWebhook: false }); },
    /sys-net: the webhook secret \/usr\/local\/etc\/qubes-build-infra\/secrets\/webhooks is plain text in the stack. Fix: set the webhook secret with `pulumi config set --secret/],
  ["the webhook secret in plain text, in a stack written before VmFiles (a ManagedFile)", "webhook-secret-is-secret",
    () => { const { plan, cfg } = planOf(); return resourcesOf(plan, cfg, { secretWebhook: false, legacyFiles: true }); },
    /sys-net: the webhook secret \/usr\/local\/etc\/qubes-build-infra\/secrets\/webhooks is plain text in the stack/],
  ["the webhook front's TLS key in plain text", "webhook-secret-is-secret",
    () => { const { plan, cfg } = planOf(); return resourcesOf(plan, cfg, { netPlainFiles: { "/rw/config/qubes-build-infra/webhooks-tls.key": "-----BEGIN PRIVATE KEY-----\n..." } }); },
    /sys-net: the webhook front's TLS key \/rw\/config\/qubes-build-infra\/webhooks-tls.key is plain text in the stack/],
  ["no webhook secret at all", "webhook-secret-is-secret",
    () => { const { plan, cfg } = planOf(); return resourcesOf(plan, cfg, { noWebhookSecret: true }); },
    /sys-net: the webhook receiver has no secret file/],
  ["a build VM with a 10 GiB private volume", "vm-hygiene",
    () => withPlan(() => undefined, { ...baseConfig, envs: { ...baseConfig.envs, fedora: { ...baseConfig.envs.fedora, volumeSize: "10GiB" } } }),
    /build-fedora: private volume is 10 GiB, below the floor of 20 GiB/],
  ["a keys VM labelled red", "vm-hygiene",
    () => withPlan((p) => { (vmOf(p, "keys-debian") as { label: string }).label = "red"; }), /keys-debian: label is red, keys VMs are black/],
  ["a rule the pack cannot read", "site-resources-readable",
    () => withPlan((p) => { p.rules.push(rule("qubes.Gpg", "no-plus", "build-fedora", "keys-fedora", "allow")); }),
    /qrexec policy 20-qubes-build-infra.policy:\d+/],
];

describe("violating variants", () => {
  it.each(variants)("%s fails %s only", (_what, policy, make, message) => {
    const vs = runChecks(make());
    expect(policiesOf(vs)).toEqual([policy]);
    for (const m of Array.isArray(message) ? message : [message]) expect(vs.map((v) => v.message).join("\n")).toMatch(m);
  });

  it("covers every policy", () => {
    const { POLICIES } = jest.requireActual<typeof import("../../policy/checks")>("../../policy/checks");
    expect(new Set(variants.map((v) => v[1]))).toEqual(new Set(POLICIES.map((p) => p.name)));
  });
});
