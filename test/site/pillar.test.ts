import { execFileSync, spawnSync } from "child_process";
import * as path from "path";
import { parse } from "yaml";
import { parseSiteConfig } from "../../site/config";
import { importPillar } from "../../site/pillar";

const fixture = path.join(__dirname, "fixtures", "build-infra.sls");
const cli = path.join(__dirname, "..", "..", "bin", "qubes-build-infra");

describe("import-pillar", () => {
  it("turns the formula's pillar into valid stack config without copying secrets", () => {
    const out = execFileSync(cli, ["import-pillar", fixture], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
    const config = parse(out).config as Record<string, unknown>;
    expect(JSON.stringify(config)).not.toContain("not-a-real-token");
    const raw: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(config)) raw[k.replace("qubes-build-infra:", "")] = v;
    // The formula had no Windows template (import-pillar says so in its notes): the operator names one.
    expect(() => parseSiteConfig(raw)).toThrow(/qubes-build-infra:windowsTemplate: kernel builds Windows/);
    const site = parseSiteConfig({ ...raw, windowsTemplate: "windows-10" });
    expect(site.envs.fedora1).toMatchObject({ logs: "logs", volumeSize: 20 * 2 ** 30, builderv2: false });
    expect(site.envs.fedora1.builders[0]).toMatchObject({ dir: "/home/user/builder-r4.2", release: "4.2", config: { file: "R4.2/qubes-os-r4.2-host.conf" } });
    expect(site.envs.kernel).toMatchObject({ logs: "logs-kernel", builderv2: true, windows: true });
    expect(site.uploadHosts["yum.qubes-os.org"].hostKeys[0].type).toBe("ssh-ed25519");
    expect(site.logs).toMatchObject({ repo: "git@github.com:QubesOS/build-logs.git", keyFingerprint: "1B760CED53D8EB5AE529BEBB16D7539A228D30DB" });
  });

  it("says how to store each secret it found", () => {
    const { notes } = importPillar(require("fs").readFileSync(fixture, "utf8"), fixture);
    expect(notes).toEqual(expect.arrayContaining([expect.stringContaining("pulumi config set --secret qubes-build-infra:github_api_key")]));
    expect(notes).toEqual(expect.arrayContaining([expect.stringContaining("set qubes-build-infra:windowsTemplate")]));
  });

  it("names file and line for broken YAML, and the key for a wrong shape", () => {
    expect(() => importPillar("build-infra:\n  netvm: [\n", "x.sls")).toThrow(/^x\.sls:\d+: not valid YAML/);
    expect(() => importPillar("build-infra:\n  build-envs: 3\n", "y.sls")).toThrow(/pillar:build-infra.build-envs/);
    const r = spawnSync(cli, ["import-pillar", "/nonexistent.sls"], { encoding: "utf8" });
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("/nonexistent.sls");
  });
});
