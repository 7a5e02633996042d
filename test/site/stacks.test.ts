// The shipped stack files are valid site configurations.
import * as fs from "fs";
import * as path from "path";
import { parse } from "yaml";
import { parseSiteConfig } from "../../site/config";
import { planSite } from "../../site/plan";
import { rawSiteConfig } from "../../site/stackConfig";

const root = path.join(__dirname, "..", "..");
const load = (stack: string) => {
  const cfg = parse(fs.readFileSync(path.join(root, `Pulumi.${stack}.yaml`), "utf8")).config as Record<string, unknown>;
  // The engine hands objects over as JSON text: mimic it.
  const all = Object.fromEntries(Object.entries(cfg).map(([k, v]) => [k, typeof v === "string" ? v : JSON.stringify(v)]));
  return parseSiteConfig(rawSiteConfig(all, "qubes-build-infra", root));
};

describe("stack files", () => {
  it("local: two environments in qubes-sim, socket resolved in the project", () => {
    const s = load("local");
    expect(Object.keys(s.envs)).toEqual(["fedora", "debian"]);
    expect(s.admin).toEqual({ transport: "sim", socket: path.join(root, ".qubes-sim", "qubesd.sock") });
  });

  it("prod: a Qubes-OS-like site with v1, v2 and Windows environments", () => {
    const s = load("prod");
    const plan = planSite(s);
    expect(Object.keys(s.envs)).toEqual(["fedora", "debian", "templates-community", "windows", "kernel"]);
    expect(plan.vms.map((v) => v.name)).toEqual(expect.arrayContaining(["builder-dvm", "builder-windows-dvm", "logs", "logs-kernel", "win-keys-windows", "keys-templates-community"]));
    expect(s.admin).toEqual({ transport: "socket", socket: "/var/run/qubesd.sock" });
  });
});

describe("QBI_ADMIN", () => {
  it("points a stack at another Admin API endpoint, relative sockets resolved in the project", () => {
    const raw = rawSiteConfig({ "qubes-build-infra:admin": '{"transport":"socket","socket":"/var/run/qubesd.sock"}' }, "qubes-build-infra", root,
      { QBI_ADMIN: '{"transport":"sim","socket":".qubes-sim/qubesd.sock"}' });
    expect(raw.admin).toEqual({ transport: "sim", socket: path.join(root, ".qubes-sim", "qubesd.sock") });
  });
  it("says what it expected when it is not JSON", () => {
    expect(() => rawSiteConfig({}, "qubes-build-infra", root, { QBI_ADMIN: "sim" })).toThrow(/QBI_ADMIN is not JSON/);
  });
});
