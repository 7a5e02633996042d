// The pack through the real Pulumi CLI, on the site plan's resources as no-op dynamic resources
// (test/policy/fixture): a clean stack previews, violating ones are refused before any change.
import { execFile } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { promisify } from "util";
import { projectRoot, pulumiEnv, tempDir } from "../helpers/pulumi";

jest.setTimeout(300_000);
const run = promisify(execFile);

describe("pulumi preview/up --policy-pack policy", () => {
  const backend = tempDir("policy-backend");
  const work = tempDir("policy-work");
  const marker = path.join(work, "created");
  const program = path.join(projectRoot, "test", "policy", `.fixture-${process.pid}`);
  const pack = path.join(projectRoot, "policy");
  const env = { ...process.env, ...pulumiEnv(backend) };
  delete env.PULUMI_CONFIG_PASSPHRASE_FILE;

  const pulumi = async (...args: string[]): Promise<{ code: number; out: string }> => {
    try {
      const r = await run("pulumi", args, { cwd: program, env, maxBuffer: 64 * 2 ** 20 });
      return { code: 0, out: r.stdout + r.stderr };
    } catch (e) {
      const x = e as { code?: number; stdout?: string; stderr?: string };
      return { code: typeof x.code === "number" ? x.code : 1, out: (x.stdout ?? "") + (x.stderr ?? "") };
    }
  };

  beforeAll(async () => {
    fs.cpSync(path.join(projectRoot, "test", "policy", "fixture"), program, { recursive: true });
    expect((await pulumi("stack", "init", "policy")).code).toBe(0);
    expect((await pulumi("config", "set", "marker", marker)).code).toBe(0);
  });
  afterAll(() => {
    for (const d of [program, work, backend]) fs.rmSync(d, { recursive: true, force: true });
  });

  it("previews the clean site with every policy passing (the webhook secret is seen as a secret)", async () => {
    const r = await pulumi("preview", "--policy-pack", pack);
    expect(r.out).not.toMatch(/mandatory|advisory/);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/qubes-build-infra-policy@v0\.1\.0/);
  });

  it("refuses a plain-text webhook secret with the policy's message", async () => {
    await pulumi("config", "set", "variant", "plain-secret");
    const r = await pulumi("preview", "--policy-pack", pack);
    expect(r.code).not.toBe(0);
    expect(r.out).toMatch(/\[mandatory\]\s+webhook-secret-is-secret/);
    expect(r.out).toMatch(/secrets\/webhooks is plain text in the stack/);
  });

  it("refuses `pulumi up` of a stack letting @anyvm use qubes.Gpg, before creating anything", async () => {
    await pulumi("config", "set", "variant", "gpg-anyvm");
    const r = await pulumi("up", "--yes", "--policy-pack", pack);
    expect(r.code).not.toBe(0);
    expect(r.out).toMatch(/\[mandatory\]\s+gpg-only-from-own-build-vm/);
    expect(r.out).toMatch(/20-qubes-build-infra\.policy:2 `qubes\.Gpg \* @anyvm keys-fedora allow`/);
    expect([...r.out.matchAll(/\[(?:mandatory|advisory)\]\s+([a-z0-9-]+)/g)].map((m) => m[1])).toEqual(["gpg-only-from-own-build-vm"]);
    expect(fs.existsSync(marker)).toBe(false);
  });

  it("takes enforcement levels and settings from a policy config file", async () => {
    const cfgFile = path.join(work, "policy-config.json");
    fs.writeFileSync(cfgFile, JSON.stringify({ "gpg-only-from-own-build-vm": "advisory" }));
    const r = await pulumi("preview", "--policy-pack", pack, "--policy-pack-config", cfgFile);
    expect(r.out).toMatch(/\[advisory\]\s+gpg-only-from-own-build-vm/);
    expect(r.code).toBe(0);
    fs.writeFileSync(cfgFile, JSON.stringify({ "gpg-only-from-own-build-vm": "advisory", "build-network-through-tor": { torGateway: "sys-tor" } }));
    const t = await pulumi("preview", "--policy-pack", pack, "--policy-pack-config", cfgFile);
    expect(t.code).not.toBe(0);
    expect(t.out).toMatch(/build-fedora: netvm is sys-whonix, not the Tor gateway sys-tor/);
  });

  it("refuses WinSign.CreateKey for a build VM with the rule and the fix", async () => {
    await pulumi("config", "set", "variant", "winsign-createkey");
    const r = await pulumi("preview", "--policy-pack", pack);
    expect(r.code).not.toBe(0);
    expect([...r.out.matchAll(/\[(?:mandatory|advisory)\]\s+([a-z0-9-]+)/g)].map((m) => m[1])).toEqual(["winsign-existing-keys-only"]);
    expect(r.out).toMatch(/win-keys-debian: key creation or deletion .* by rule 20-qubes-build-infra\.policy:2 `qubesbuilder\.WinSign\.CreateKey \+Qubes/);
    expect(r.out).toMatch(/build-debian calling qubesbuilder\.WinSign\.CreateKey\+Qubes__Windows__Tools requesting win-keys-debian\. Fix: remove the rule/);
  });
});
