// The site's rules split over several policy files: each file fits one Admin API request, and
// qrexec (the project's evaluator, reading the files in name order) decides every request exactly as
// it does with the single file.
import * as q from "../../qrexec";
import { POLICY_MAX_BYTES } from "../../providers/impl/qrexecPolicy";
import { parseSiteConfig } from "../../site/config";
import { planSite, POLICY_FILE, POLICY_FILE_BUDGET, policyFiles, type PlannedRule } from "../../site/plan";

function site(n: number) {
  const envs: Record<string, unknown> = {};
  for (let i = 0; i < n; i++) {
    const v2 = i % 2 === 1;
    envs[`env${i}`] = {
      logs: i % 3 === 0 ? "logs" : "logs-b", builderv2: v2, windows: v2 && i % 4 === 1,
      builders: [{ dir: `/home/user/builder-${i}`, release: "4.2" }],
    };
  }
  return parseSiteConfig({
    admin: { transport: "sim", socket: "/tmp/x.sock" },
    windowsTemplate: "windows-10",
    logs: { repo: "file:///srv/logs.git", keyFingerprint: "0123456789ABCDEF0123456789ABCDEF01234567" },
    uploadHosts: { "yum.qubes-os.org": { user: "user", hostKeys: [{ type: "ssh-ed25519", key: "AAAAC3NzaC1lZDI1NTE5AAAAIE" }] } },
    envs,
  });
}

const asRules = (file: string, rules: readonly PlannedRule[]): q.Rule[] => rules.map((r, i) => ({ ...r, file, line: i + 1 }));
const loadFiles = (files: { name: string; rules: readonly PlannedRule[] }[]) =>
  q.loadPolicySet(files.map((f) => ({ name: `${f.name}.policy`, text: q.renderPolicy(asRules(`${f.name}.policy`, f.rules)) })));

/** Every request a site's policy can see: each service and argument it names, from and to every domain. */
function everyRequest(rules: readonly PlannedRule[], system: q.SystemInfo): q.Request[] {
  const names = Object.keys(system.domains);
  const targets = [...names, "@default", "@adminvm", ...new Set(rules.map((r) => r.target).filter((t) => t.startsWith("@dispvm")))];
  const calls = new Set(rules.map((r) => `${r.service}\0${r.argument === "*" ? "" : r.argument}`));
  for (const r of rules) calls.add(`${r.service}\0+unlisted`);
  const out: q.Request[] = [];
  for (const c of calls) {
    const [service, argument] = c.split("\0");
    for (const source of names.filter((n) => n !== "dom0")) for (const target of targets) out.push({ service, argument, source, target });
  }
  return out;
}

function systemOf(plan: ReturnType<typeof planSite>): q.SystemInfo {
  const dom = (name: string, type: string, tags: string[] = [], extra: Record<string, unknown> = {}) => ({
    name, type, tags, default_dispvm: null, template_for_dispvms: false, power_state: "Running",
    label: "red", icon: null, guivm: null, uuid: "00000000-0000-4000-8000-000000000000", ...extra,
  });
  const builds = plan.vms.filter((v) => v.role === "build").map((v) => v.name);
  return { domains: Object.fromEntries([
    dom("dom0", "AdminVM"), dom("sys-net", "AppVM"), dom("sys-whonix", "AppVM"), dom("outsider", "AppVM"),
    ...plan.vms.map((v) => dom(v.name, "AppVM", v.tags, { default_dispvm: v.defaultDispvm ?? null, template_for_dispvms: !!v.templateForDispvms })),
    // One disposable of each of two build VMs.
    ...builds.slice(0, 2).map((b, i) => dom(`disp${i}`, "DispVM", [`disp-created-by-${b}`])),
  ].map((d) => [d.name, d])) } as unknown as q.SystemInfo;
}

const decision = (policy: q.PolicySet, r: q.Request, system: q.SystemInfo) => {
  const v = q.evaluate(policy, r, system);
  return `${v.action} ${v.target ?? ""}`;
};

describe("policy files", () => {
  it("keeps a small site in the one file of the historical name", () => {
    const plan = planSite(site(2));
    expect(policyFiles(plan.rules)).toEqual([{ name: POLICY_FILE, rules: plan.rules }]);
  });

  it("splits a 20-environment site into consecutive files, each within the budget, that decide every request as the single file does", () => {
    const plan = planSite(site(20));
    const budget = 4096;
    const files = policyFiles(plan.rules, budget);
    expect(files.length).toBeGreaterThan(3);
    expect(files.map((f) => f.name)).toEqual(files.map((_, i) => `${POLICY_FILE}-${String(i).padStart(2, "0")}`));
    expect(files.flatMap((f) => f.rules)).toEqual(plan.rules);
    for (const f of files) expect(Buffer.byteLength(q.renderPolicy(asRules("x", f.rules), { header: false, align: false }))).toBeLessThanOrEqual(budget);

    const system = systemOf(plan);
    const single = loadFiles([{ name: POLICY_FILE, rules: plan.rules }]);
    const split = loadFiles(files);
    expect(split.errors).toEqual([]);
    const requests = everyRequest(plan.rules, system);
    expect(requests.length).toBeGreaterThan(10_000);
    const differ = requests.filter((r) => decision(single, r, system) !== decision(split, r, system));
    expect(differ).toEqual([]);

    // The comparison has teeth: the same files read in another order (the fences first) decide otherwise.
    const shuffled = loadFiles(files.map((f, i) => ({ name: files[files.length - 1 - i].name, rules: f.rules })));
    expect(requests.some((r) => decision(single, r, system) !== decision(shuffled, r, system))).toBe(true);
  });

  it("while a site moves from one file to several, the new files decide: the old one is read after them", () => {
    const plan = planSite(site(20));
    const files = policyFiles(plan.rules, 4096);
    const system = systemOf(plan);
    const split = loadFiles(files);
    // The site grew from 19 environments (one file) to 20: until `up` removes the old file last,
    // it is still there, and must never be read first.
    const before = planSite(site(19));
    expect(policyFiles(before.rules)).toHaveLength(1);
    const old = { name: `${POLICY_FILE}.policy`, text: q.renderPolicy(asRules(`${POLICY_FILE}.policy`, before.rules)) };
    const during = q.loadPolicySet([old, ...files.map((f) => ({ name: `${f.name}.policy`, text: q.renderPolicy(asRules(`${f.name}.policy`, f.rules)) }))]);
    const requests = everyRequest(plan.rules, system);
    expect(requests.filter((r) => decision(split, r, system) !== decision(during, r, system))).toEqual([]);
  });

  it("writes a 100-environment site in files that each fit one Admin API request as the provider renders them", () => {
    const plan = planSite(site(100));
    const files = policyFiles(plan.rules);
    expect(files.length).toBeGreaterThan(1);
    for (const f of files) {
      const bytes = Buffer.byteLength(q.renderPolicy(asRules(`${f.name}.policy`, f.rules), { align: false }));
      expect(bytes).toBeLessThanOrEqual(POLICY_FILE_BUDGET + 1024);
      expect(bytes).toBeLessThanOrEqual(POLICY_MAX_BYTES);
    }
  });
});
