// The pack's checks on the real site plan (clean), and one violating variant per policy.
import { PolicyName, ResourceInput, Violation, runChecks } from "../../policy/checks";
import { readSite } from "../../policy/model";
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
const rule = (service: string, argument: string, source: string, target: string, action: PlannedRule["action"], params: PlannedRule["params"] = {}): PlannedRule =>
  ({ service, argument, source, target, action, params });

describe("the real site plan", () => {
  it("passes every policy, mandatory and advisory", () => {
    const { plan, cfg } = planOf();
    expect(runChecks(resourcesOf(plan, cfg))).toEqual([]);
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

  it("evaluates rules at the lines the renderer writes", () => {
    const { plan, cfg } = planOf();
    const site = readSite(resourcesOf(plan, cfg));
    expect(site.policy.rules[0]).toMatchObject({ file: "20-qubes-build-infra.policy", line: 2, service: plan.rules[0].service });
    expect(site.policy.rules[5].line).toBe(7);
  });
});

type Variant = [string, PolicyName, () => ResourceInput[], RegExp];

const variants: Variant[] = [
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
  ["an upload rule for a host the ssh proxy does not know", "build-network-through-tor",
    () => withPlan((p) => { p.rules.unshift(rule("local.ConnectSSH", "+evil.example.com", "build-debian", "sys-net", "allow")); }),
    /build-debian: a clearnet path to sys-net is open by rule 20-qubes-build-infra.policy:2 .*local.ConnectSSH\+evil.example.com \(not a configured upload host/],
  ["@anyvm may copy files to dom0", "dom0-and-admin-api-scoped",
    () => withPlan((p) => { p.rules.unshift(rule("qubes.Filecopy", "*", "@anyvm", "@adminvm", "allow")); }),
    /dom0: a VM outside the site may call it with allow by rule 20-qubes-build-infra.policy:2 `qubes.Filecopy \* @anyvm @adminvm allow`/],
  ["admin.vm.Start on any VM", "dom0-and-admin-api-scoped",
    () => withPlan((p) => { ruleOf(p, (r) => r.service === "admin.vm.Start").target = "@anyvm"; }),
    /dom0: admin.vm.Start is allowed beyond a build VM's own disposables and dispvm template by rule .*build-debian on keys-debian/],
  ["the webhook secret in plain text", "webhook-secret-is-secret",
    () => { const { plan, cfg } = planOf(); return resourcesOf(plan, cfg, { secretWebhook: false }); },
    /sys-net: the webhook secret \/usr\/local\/etc\/qubes-build-infra\/secrets\/webhooks is plain text in the stack. Fix: set the webhook secret with `pulumi config set --secret/],
  ["no webhook secret at all", "webhook-secret-is-secret",
    () => { const { plan, cfg } = planOf(); return resourcesOf(plan, cfg).filter((r) => r.name !== "webhook-secret"); },
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
    expect(vs.map((v) => v.message).join("\n")).toMatch(message);
  });

  it("covers every policy", () => {
    const { POLICIES } = jest.requireActual<typeof import("../../policy/checks")>("../../policy/checks");
    expect(new Set(variants.map((v) => v[1]))).toEqual(new Set(POLICIES.map((p) => p.name)));
  });
});
