import { execFileSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { tlsKeyFor, webhooksBoot } from "../../site/components";
import { parseSiteConfig } from "../../site/config";
import * as q from "../../qrexec";
import { planSite, POLICY_FILE } from "../../site/plan";

const base = {
  admin: { transport: "sim", socket: "/tmp/x.sock" },
  logs: { repo: "file:///srv/logs.git" },
  uploadHosts: { "yum.qubes-os.org": { user: "user", hostKeys: [{ type: "ssh-ed25519", key: "AAAAC3NzaC1lZDI1NTE5AAAAIE" }] } },
  windowsTemplate: "windows-10",
  envs: {
    fedora: { logs: "logs", builders: [{ dir: "/home/user/builder-r4.2", release: "4.2" }] },
    debian: { logs: "logs", builderv2: true, windows: true, builders: [{ dir: "/home/user/artifacts", release: "4.3" }] },
  },
};

describe("stack configuration", () => {
  it("fills the formula's defaults", () => {
    const cfg = parseSiteConfig(base);
    expect(cfg.netvm).toBe("sys-net");
    expect(cfg.buildNetvm).toBe("sys-whonix");
    expect(cfg.signingWindowSeconds).toBe(300);
    expect(cfg.envs.fedora.builders[0].release).toBe("4.2");
  });

  it.each([
    [{ envs: { "Bad Env": base.envs.fedora } }, /qubes-build-infra:envs.Bad Env/],
    [{ envs: { "my-keys": base.envs.fedora } }, /must not contain the words 'build' or 'keys'/],
    [{ envs: { fedora: { ...base.envs.fedora, builders: [] } } }, /qubes-build-infra:envs.fedora.builders: at least one builder/],
    [{ envs: { fedora: { ...base.envs.fedora, volumeSize: "lots" } } }, /envs.fedora.volumeSize: invalid size "lots": expected a number of bytes or a number with a binary unit/],
    [{ envs: { fedora: { ...base.envs.fedora, builders: [{ dir: "/tmp/x", release: "4.2" }] } } }, /envs.fedora.builders.0.dir: an absolute path under \/home\/user/],
    [{ envs: { fedora: { ...base.envs.fedora, builders: [{ dir: "/home/user/b", release: 4.1 }] } } }, /quoted release like "4.2"/],
    [{ uploadHosts: { "yum.qubes-os.org": { user: "user", hostKeys: [] } } }, /uploadHosts.yum.qubes-os.org.hostKeys: pin at least one host key/],
    [{ admin: { transport: "carrier-pigeon" } }, /qubes-build-infra:admin.transport/],
    [{ unknownKey: 1 }, /qubes-build-infra:\(root\): Unrecognized key/],
    [{ envs: { ...base.envs, fedora: { ...base.envs.fedora, logs: "build-debian" } } }, /logs VM build-debian is also the build VM of debian/],
    [{ envs: { ...base.envs, fedora: { ...base.envs.fedora, logs: "logs-b" } } }, /logs.keyFingerprint: the logs VMs logs-b, logs share the logs repository/],
    [{ windowsTemplate: undefined }, /qubes-build-infra:windowsTemplate: debian builds Windows, so builder-windows-dvm needs a Windows template/],
    [{ envs: { ...base.envs, fedora: { ...base.envs.fedora, windows: true } } }, /envs.fedora.windows: .*set envs.fedora.builderv2 to true/],
    [{ webhooks: { allowCidrs: ["10.0.0.0/33"] } }, /webhooks.allowCidrs.0: a range like/],
    [{ envs: { ...base.envs, fedora: { ...base.envs.fedora, logs: "dvm-fedora" } } }, /logs VM dvm-fedora is also the disposable template of fedora/],
  ])("rejects %j with a message naming the key", (patch, message) => {
    expect(() => parseSiteConfig({ ...base, ...patch })).toThrow(message);
  });
});

describe("site plan", () => {
  const plan = planSite(parseSiteConfig(base));
  const vm = (n: string) => plan.vms.find((v) => v.name === n);

  it("creates the formula's VMs with their roles, labels and networks", () => {
    expect(plan.vms.map((v) => v.name).sort()).toEqual(
      ["build-debian", "build-fedora", "builder-dvm", "builder-windows-dvm", "dvm-fedora", "keys-debian", "keys-fedora", "logs", "win-keys-debian"].sort());
    expect(vm("keys-fedora")).toMatchObject({ label: "black", netvm: null, protect: true, template: "fedora-43-minimal" });
    expect(vm("build-fedora")).toMatchObject({ label: "green", netvm: "sys-whonix", defaultDispvm: "dvm-fedora" });
    expect(vm("dvm-fedora")).toMatchObject({ templateForDispvms: true, envs: ["fedora"], tags: expect.arrayContaining(["qbi-disp-of-build-fedora"]) });
    expect(vm("dvm-fedora")?.tags).not.toContain("qbi-env-fedora");
    expect(vm("builder-windows-dvm")).toMatchObject({ template: "windows-10", virtMode: "hvm", maxmem: 0, netvm: null });
    expect(vm("build-debian")).toMatchObject({ defaultDispvm: "builder-dvm" });
    expect(vm("builder-dvm")).toMatchObject({ templateForDispvms: true, privateVolumeSize: 30 * 2 ** 30 });
    expect(vm("logs")).toMatchObject({ netvm: "sys-firewall", envs: ["fedora", "debian"] });
  });

  it("pins LogReceived to the env's own build VM and keys VM", () => {
    const lr = plan.rules.filter((r) => r.service === "qubesbuilder.LogReceived" && r.action === "allow");
    expect(lr).toEqual([
      expect.objectContaining({ argument: "+build-fedora", source: "logs", target: "@adminvm", params: { target: "keys-fedora" } }),
      expect.objectContaining({ argument: "+build-debian", source: "logs", target: "@adminvm", params: { target: "keys-debian" } }),
    ]);
  });

  it("never allows @anyvm or a tag other than the env's own disposables", () => {
    for (const r of plan.rules.filter((x) => x.action === "allow")) {
      expect(r.source).not.toBe("@anyvm");
      if (r.source.startsWith("@tag:")) expect(r.source).toMatch(/^@tag:(disp-created-by|qbi-disp-of)-build-/);
    }
  });

  it("puts every deny after the allows it fences, and names the policy file", () => {
    const lastAllow = plan.rules.map((r) => r.action).lastIndexOf("allow");
    const firstDeny = plan.rules.map((r) => r.action).indexOf("deny");
    expect(firstDeny).toBeGreaterThan(lastAllow);
    expect(POLICY_FILE).toBe("20-qubes-build-infra");
  });

  it("keeps v1 disk rules scoped to the env's disposables (docs/formula.md W1, W2)", () => {
    const attach = plan.rules.filter((r) => r.service === "qubesbuilder.AttachDisk" && r.action === "allow");
    // v1's disposables are the policy daemon's (creator dom0): known by their template's tag.
    expect(attach).toEqual([expect.objectContaining({ source: "@tag:qbi-disp-of-build-fedora" })]);
  });
});

describe("the plan's policy, rendered and evaluated by the qrexec module", () => {
  const cfg = parseSiteConfig(base);
  const plan = planSite(cfg);
  const text = q.renderPolicy(plan.rules.map((r) => ({ ...r, file: "", line: 0 })));
  const policy = q.loadPolicySet([{ name: `${POLICY_FILE}.policy`, text }]);
  const dom = (name: string, type: string, tags: string[] = [], extra: Record<string, unknown> = {}) => ({
    name, type, tags, default_dispvm: null, template_for_dispvms: false, power_state: "Running",
    label: "red", icon: null, guivm: null, uuid: "00000000-0000-4000-8000-000000000000", ...extra,
  });
  const system = { domains: Object.fromEntries([
    dom("dom0", "AdminVM"), dom("sys-net", "AppVM"), dom("sys-whonix", "AppVM"), dom("outsider", "AppVM"),
    ...plan.vms.map((v) => dom(v.name, "AppVM", v.tags, { default_dispvm: v.defaultDispvm ?? null, template_for_dispvms: !!v.templateForDispvms })),
    dom("disp123", "DispVM", ["disp-created-by-build-debian"]),
    // A v1 template build's disposable: started by the policy daemon (creator dom0) from dvm-fedora,
    // whose tags Qubes copies into it.
    dom("disp200", "DispVM", ["disp-created-by-dom0", ...plan.vms.find((v) => v.name === "dvm-fedora")!.tags]),
    // Another disposable the policy daemon made, from builder-dvm.
    dom("disp201", "DispVM", ["disp-created-by-dom0", ...plan.vms.find((v) => v.name === "builder-dvm")!.tags]),
  ].map((d) => [d.name, d])) } as unknown as q.SystemInfo;
  const ev = (service: string, argument: string, source: string, target: string) =>
    q.evaluate(policy, { service, argument, source, target }, system);

  it("renders to a policy file without errors", () => {
    expect(policy.errors).toEqual([]);
  });

  it.each([
    ["qubesbuilder.BuildLog", "", "build-fedora", "dom0", "allow", "logs"],
    ["qubesbuilder.LogReceived", "+build-fedora", "logs", "dom0", "allow", "keys-fedora"],
    ["qubesbuilder.LogReceived", "+build-debian", "logs", "dom0", "allow", "keys-debian"],
    ["qubes.Gpg", "", "build-fedora", "keys-fedora", "allow", "keys-fedora"],
    ["qubes.Gpg", "", "build-fedora", "@default", "allow", "keys-fedora"],
    ["local.ConnectSSH", "+yum.qubes-os.org", "build-debian", "sys-net", "allow", "sys-net"],
    ["qubesbuilder.TriggerBuild", "+core-admin", "sys-net", "build-fedora", "allow", "build-fedora"],
    ["qubes.VMShell", "", "build-debian", "disp123", "allow", "disp123"],
    // builderv2 removes (and creates) its own disposables; the Windows executor creates from builder-windows-dvm.
    ["admin.vm.Remove", "", "build-debian", "disp123", "allow", "dom0"],
    ["admin.vm.CreateDisposable", "", "build-debian", "builder-dvm", "allow", "dom0"],
    ["admin.vm.CreateDisposable", "", "build-debian", "builder-windows-dvm", "allow", "dom0"],
    ["admin.vm.device.block.Attach", "+build-debian+loop0", "build-debian", "disp123", "allow", "dom0"],
    // v1: build-fedora starts a disposable of its own template; that disposable attaches the
    // exported disk through dom0 and copies the template back to build-fedora.
    ["qubes.VMShell", "", "build-fedora", "@dispvm:dvm-fedora", "allow", "@dispvm:dvm-fedora"],
    ["qubesbuilder.ExportDisk", "", "build-fedora", "dom0", "allow", "dom0"],
    ["qubesbuilder.AttachDisk", "", "disp200", "dom0", "allow", "dom0"],
    ["qubesbuilder.CopyTemplateBack", "", "disp200", "build-fedora", "allow", "build-fedora"],
  ])("%s%s from %s to %s: %s", (service, arg, source, target, action, resolved) => {
    const v = ev(service, arg, source, target);
    expect(v.action).toBe(action);
    expect(v.target).toBe(resolved);
  });

  it.each([
    // Each env's disposables do what the formula intends for that env only.
    ["admin.vm.Remove", "", "build-debian", "builder-dvm"],
    ["admin.vm.Remove", "", "build-debian", "disp200"],
    ["admin.vm.Remove", "", "build-fedora", "disp123"],
    ["admin.vm.Remove", "", "build-debian", "disp201"],
    ["admin.vm.CreateDisposable", "", "build-fedora", "builder-dvm"],
    ["admin.vm.CreateDisposable", "", "build-fedora", "builder-windows-dvm"],
    ["admin.vm.CreateDisposable", "", "build-debian", "dom0"],
    ["admin.vm.device.block.Attach", "+keys-debian+loop0", "build-debian", "disp123"],
    ["qubes.VMShell", "", "build-debian", "@dispvm:dvm-fedora"],
    ["qubesbuilder.AttachDisk", "", "disp201", "dom0"],
    ["qubesbuilder.AttachDisk", "", "disp123", "dom0"],
    ["qubesbuilder.CopyTemplateBack", "", "disp200", "build-debian"],
    ["qubesbuilder.CopyTemplateBack", "", "disp201", "build-fedora"],
    ["qubes.Gpg", "", "build-fedora", "keys-debian"],
    ["qubes.Gpg", "", "outsider", "keys-fedora"],
    ["qubes.Gpg", "", "logs", "keys-fedora"],
    ["qubes.Gpg", "", "build-fedora", "outsider"],
    ["qubesbuilder.LogReceived", "+build-debian", "logs", "keys-fedora"],
    ["qubesbuilder.LogReceived", "+build-fedora", "build-fedora", "dom0"],
    ["qubesbuilder.BuildLog", "", "outsider", "dom0"],
    ["local.ConnectSSH", "+evil.example.com", "build-fedora", "sys-net"],
    ["qubesbuilder.AttachDisk", "", "outsider", "dom0"],
    ["qubes.VMShell", "", "build-fedora", "disp123"],
    ["qubes.VMShell", "", "build-debian", "keys-debian"],
  ])("%s%s from %s to %s is denied", (service, arg, source, target) => {
    expect(ev(service, arg, source, target).action).toBe("deny");
  });
});

describe("webhook TLS", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "qbi-tls-"));
  const pair = (name: string, days: number) => {
    const [crt, key] = [path.join(dir, `${name}.crt`), path.join(dir, `${name}.key`)];
    execFileSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", String(days), "-subj", "/CN=hooks.example.org",
      "-keyout", key, "-out", crt], { stdio: "ignore" });
    return { crt: fs.readFileSync(crt, "utf8"), key: fs.readFileSync(key, "utf8") };
  };
  const a = pair("a", 30);
  const b = pair("b", 30);
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it("takes a certificate, listens on 443 by default and checks the key belongs to it", () => {
    const cfg = parseSiteConfig({ ...base, webhookTlsCertificate: a.crt });
    expect(cfg.webhooks.listenPort).toBeUndefined();
    expect(cfg.webhooks.httpPort).toBe(80);
    expect(tlsKeyFor(a.crt, a.key)).toBe(a.key);
    expect(() => tlsKeyFor(a.crt, b.key)).toThrow("qubes-build-infra:webhookTlsKey: not the private key of webhookTlsCertificate");
    expect(() => tlsKeyFor(a.crt, "not a key")).toThrow(/webhookTlsKey: not a PEM private key/);
  });

  it.each([
    [{ webhookTlsCertificate: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n" }, /webhookTlsCertificate: not a certificate nginx could load/],
    [{ webhookTlsCertificate: "hello" }, /webhookTlsCertificate: a PEM certificate chain/],
    [{ webhooks: { httpPort: 443 } }, /webhooks.httpPort: 443 is the HTTPS port/],
    [{ webhooks: { listenPort: 8443, httpPort: 8443 } }, /webhooks.httpPort: 8443 is the HTTPS port/],
  ])("rejects %j naming the key", (patch, message) => {
    expect(() => parseSiteConfig({ ...base, webhookTlsCertificate: a.crt, ...patch })).toThrow(message);
  });
});

describe("sys-net's boot block", () => {
  it("opens the front's ports in sys-net's firewall for the configured ranges only, per address family", () => {
    const boot = webhooksBoot({ ports: [443, 80], allowCidrs: ["192.30.252.0/22", "140.82.112.0/20", "2a0a:a440::/29"] });
    expect(boot).toContain("nft add rule ip qubes custom-input ip saddr { 192.30.252.0/22, 140.82.112.0/20 } tcp dport { 443, 80 } accept");
    expect(boot).toContain("nft add rule ip6 qubes custom-input ip6 saddr { 2a0a:a440::/29 } tcp dport { 443, 80 } accept");
    // IPv4 ranges only: nothing is opened for IPv6.
    expect(webhooksBoot({ ports: [80], allowCidrs: ["192.30.252.0/22"] })).not.toContain("ip6 qubes");
    // No ranges (any source, the HMAC decides): the ports are open to all.
    expect(webhooksBoot({ ports: [80], allowCidrs: [] })).toContain("nft add rule ip qubes custom-input tcp dport { 80 } accept");
    expect(boot).toMatch(/supervise\.js --name webhooks --log \S+\/webhooks\.log -- \/usr\/local\/lib\/qubes-build-infra\/webhooks\.js/);
  });
});
