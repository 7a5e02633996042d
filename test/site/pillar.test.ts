// import-pillar: the formula's pillar (several files, targeted by init.top) into stack config that
// the full config checks accept, secrets named with commands that work.
import { execFileSync, spawnSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { parse } from "yaml";
import { parseSiteConfig } from "../../site/config";
import { importPillar } from "../../site/pillar";
import { rawSiteConfig } from "../../site/stackConfig";
import { pulumiEnv, tempDir } from "../helpers/pulumi";

const dir = path.join(__dirname, "fixtures", "pillar", "build-infra");
const single = path.join(__dirname, "fixtures", "build-infra.sls");
const cli = path.join(__dirname, "..", "..", "bin", "qubes-build-infra");
const run = (...args: string[]) => spawnSync(cli, ["import-pillar", ...args], { encoding: "utf8" });
// The formula had no Windows template (it made builder-windows-dvm from the Fedora build template):
// the operator names one, and import-pillar's checks say so.
const WINDOWS_TEMPLATE = "windows-10";
const siteOf = (stdout: string) => {
  const config = parse(stdout).config as Record<string, unknown>;
  const raw: Record<string, unknown> = { windowsTemplate: WINDOWS_TEMPLATE };
  for (const [k, v] of Object.entries(config)) raw[k.replace("qubes-build-infra:", "")] = v;
  return parseSiteConfig(raw);
};
/** The findings of import-pillar's full config checks (the lines after its "still to fix" line). */
const findings = (stderr: string) => {
  const i = stderr.indexOf("still to fix before pulumi preview");
  return i < 0 ? [] : stderr.slice(i).split("\n").slice(1).filter((l) => l.startsWith("qubes-build-infra:"));
};

describe("import-pillar on the formula's pillar layout (init.top, init.sls, logs.sls, build-vms.sls, logs-kernel*.sls)", () => {
  it("merges the files as Salt targets them into config the full checks accept, once a Windows template is named", () => {
    const r = run(dir);
    expect(findings(r.stderr)).toEqual([expect.stringMatching(/^qubes-build-infra:windowsTemplate: fedora2 builds Windows/)]);
    expect(r.stderr).toContain("set qubes-build-infra:windowsTemplate");
    expect(r.status).toBe(1);
    const site = siteOf(r.stdout);
    expect(Object.keys(site.envs)).toEqual(["fedora1", "fedora2", "kernel"]);
    // Salt's list of single-key maps is a map; an unquoted 4.10 stays 4.10.
    expect(site.envs.fedora1.builders[0].config.repository).toEqual({
      baseurl: "https://github.com/QubesOS-contrib/qubes-", component: "contrib-configs", branch: "master", maintainers: ["9FA64B92F95E706BF28E2CA6484010B5CDC576E2"],
    });
    expect(site.envs.fedora1.builders[1].release).toBe("4.10");
    expect(site.envs.fedora2).toMatchObject({ builderv2: true, windows: true, volumeSize: 20 * 2 ** 30 });
    expect(site.uploadHosts["yum.qubes-os.org"].hostKeys).toEqual([{ type: "ssh-rsa", key: "AAAAB3NzaC1yc2EAAAADAQABAAABAQCtestkeyfortheimportonly" }]);
    // The command signers come from the file targeted at the build VMs.
    expect(site.commands.trustedKeys).toContain("test-signers");
    // logs-kernel reads logs-kernel-repo.sls: its own repository; the other logs VM keeps the site's.
    expect(site.logs.repo).toBe("git@github.com:QubesOS/build-logs.git");
    expect(site.logs.vms).toEqual({ "logs-kernel": { repo: "git@github.com:example-bot/logs-kernel.git" } });
  });

  it("copies no secret, and names each with what to do; none with a config key the schema would refuse", () => {
    const r = run(dir);
    for (const secret of ["test-not-a-real-github-token", "test-not-a-real-mirror-key", "test-not-a-real-deploy-key", "987654321"]) {
      expect(r.stdout + r.stderr).not.toContain(secret);
    }
    const secrets = r.stderr.split("\n").filter((l) => l.startsWith("secret: "));
    expect(secrets.map((l) => l.split(" ")[1])).toEqual(["github_api_key", "github_ssh_key", "mirror_ssh_key", "openqa_key", "openqa_secret", "webhookSecret:"]);
    expect(secrets.join("\n")).toContain("qvm-run --pass-io --no-gui --user user logs-kernel 'umask 077 && mkdir -p ~/.ssh && cat > ~/.ssh/id_rsa' < github_ssh_key");
    expect(r.stderr).not.toMatch(/config set --secret qubes-build-infra:(github|mirror|openqa)/);
  });

  it("the secret command it prints works: the stack then holds the webhook secret and the config still parses", () => {
    const backend = tempDir("pillar-backend");
    const work = tempDir("pillar-project");
    try {
      fs.writeFileSync(path.join(work, "Pulumi.yaml"), "name: qubes-build-infra\nruntime: nodejs\n");
      const env = { ...process.env, ...pulumiEnv(backend) };
      const r = run(dir);
      fs.writeFileSync(path.join(work, "Pulumi.imported.yaml"), r.stdout);
      execFileSync("pulumi", ["stack", "init", "imported", "--non-interactive"], { cwd: work, env, stdio: "pipe" });
      const line = r.stderr.split("\n").find((l) => l.startsWith("secret: webhookSecret"))!;
      const command = /(pulumi config set --secret \S+ "\$\(head -c 32 \/dev\/urandom \| base64\)")/.exec(line)![1];
      execFileSync("sh", ["-c", `${command} --stack imported`], { cwd: work, env, stdio: "pipe" });
      const all = JSON.parse(execFileSync("pulumi", ["config", "--json", "--show-secrets", "--stack", "imported"], { cwd: work, env }).toString()) as Record<string, { value: unknown }>;
      expect(String(all["qubes-build-infra:webhookSecret"].value)).toMatch(/^[A-Za-z0-9+/=]{40,}$/);
      const text = Object.fromEntries(Object.entries(all).map(([k, v]) => [k, typeof v.value === "string" ? v.value : JSON.stringify(v.value)]));
      text["qubes-build-infra:windowsTemplate"] = WINDOWS_TEMPLATE;
      expect(Object.keys(parseSiteConfig(rawSiteConfig(text, "qubes-build-infra", work)).envs)).toEqual(["fedora1", "fedora2", "kernel"]);
    } finally {
      fs.rmSync(backend, { recursive: true, force: true });
      fs.rmSync(work, { recursive: true, force: true });
    }
  });

  it("without a top file, merges the files it is given, and the checks then say what the merge broke", () => {
    const r = run(path.join(dir, "init.sls"), path.join(dir, "logs-kernel-repo.sls"), path.join(dir, "build-vms.sls"));
    expect(r.stderr).toContain("no top file given: the 3 files were merged as if every VM read them all");
    // Merged for every VM, logs-kernel-repo.sls points both logs VMs at one repository without a shared key.
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/still to fix before pulumi preview.*\nqubes-build-infra:logs\.keyFingerprint: the logs VMs logs, logs-kernel share the logs repository git@github\.com:example-bot\/logs-kernel\.git/s);
    expect(parse(r.stdout).config["qubes-build-infra:logs"].repo).toBe("git@github.com:example-bot/logs-kernel.git");
  });

  it("prints the findings of the full config checks with their keys and fails; a single file fails only for what the formula lacked", () => {
    const work = tempDir("pillar-bad");
    try {
      const bad = path.join(work, "bad.sls");
      fs.writeFileSync(bad, "build-infra:\n  build-envs:\n    Bad_Env:\n      logs: logs\n      volume-size: 8000TiB\n      builders-list:\n        /home/user/b:\n          release: 4.2\n  remote-hosts:\n    h.example.org: {}\n");
      const r = run(bad);
      expect(r.status).toBe(1);
      expect(r.stderr).toContain("still to fix before pulumi preview (the full config checks):\n");
      expect(r.stderr).toContain("qubes-build-infra:envs.Bad_Env: environment name: lower-case letters and digits, words joined by single '-'");
      expect(r.stderr).toContain('qubes-build-infra:envs.Bad_Env.volumeSize: invalid size "8000TiB": more than 64 TiB');
      expect(r.stderr).toContain("qubes-build-infra:uploadHosts.h.example.org.hostKeys: pin at least one host key");
    } finally {
      fs.rmSync(work, { recursive: true, force: true });
    }
    expect(findings(run(single).stderr)).toEqual([expect.stringMatching(/^qubes-build-infra:windowsTemplate: /)]);
  });

  it("names file and line for broken YAML (in whichever file), Jinja, and the key for a wrong shape", () => {
    expect(() => importPillar("build-infra:\n  netvm: sys-net\n  a: b: c\n", "x.sls")).toThrow(/^x\.sls:3: not valid YAML/);
    expect(() => importPillar("build-infra:\n  netvm: {{ salt['pillar.get']('x') }}\n", "j.sls")).toThrow(/^j\.sls: holds Jinja .* render it first/);
    expect(() => importPillar("build-infra:\n  build-envs: 3\n", "y.sls")).toThrow(/pillar:build-infra:build-envs/);
    const r = run(path.join(dir, "init.sls"), "/nonexistent.sls");
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("/nonexistent.sls");
  });
});
