// The stand-in builder repositories: the local stack and the site tests' fixed site pin exactly
// what the generator makes from sim/standin/, and each release tag verifies with the test maintainer key alone.
import { execFileSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { parse } from "yaml";
import { createStandinGithub, maintainerKeyring, STANDIN_REPOS } from "../../sim/standin-builders";

jest.setTimeout(120_000);
const root = path.join(__dirname, "..", "..");
const STACK_FILES = ["Pulumi.local.yaml", "test/site/fixtures/site.yaml"];
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "qbi-standin-"));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

it.each(STACK_FILES)("%s pins the stand-ins' commits, signed by the maintainer it names", (file) => {
  const local = parse(fs.readFileSync(path.join(root, file), "utf8")).config as Record<string, unknown>;
  const repos = createStandinGithub(dir);
  const key = maintainerKeyring();
  key.done();
  type Src = { url: string; commit: string; tag: string; maintainers: string[] };
  const sources = local["qubes-build-infra:builderSources"] as Record<"v1" | "v2", { builder: Src; github: Src }>;
  const pins: Record<string, Src> = {
    "qubes-builder": sources.v1.builder, "qubes-builder-github": sources.v1.github,
    "qubes-builderv2": sources.v2.builder, "qubes-builderv2-github": sources.v2.github,
  };
  const envs = local["qubes-build-infra:envs"] as Record<string, { builders: { config: { repository: Src & { baseurl: string; component: string } } }[] }>;
  const stale: string[] = [];
  for (const [name, pin] of Object.entries(pins)) {
    if (pin.commit !== repos[name as keyof typeof repos].commit || pin.url !== repos[name as keyof typeof repos].url) stale.push(name);
    expect(pin.maintainers).toEqual([key.fingerprint]);
  }
  for (const e of Object.values(envs)) {
    for (const b of e.builders) {
      const r = b.config.repository;
      const configs = repos["qubes-release-configs"];
      if (`${r.baseurl}${r.component}.git` !== configs.url || r.commit !== configs.commit) stale.push("qubes-release-configs");
    }
  }
  // A changed stand-in source changes its commit: run `bin/qubes-sim standin-builders` and copy the pins.
  expect([...new Set(stale)]).toEqual([]);
  expect(local["qubes-build-infra:maintainerKeys"]).toBe(key.publicKey);
});

it("every release tag verifies with only the test maintainer's public key", () => {
  const repos = createStandinGithub(dir);
  const key = maintainerKeyring();
  const pubOnly = fs.mkdtempSync(path.join(os.tmpdir(), "qbi-standin-pub-"));
  try {
    fs.chmodSync(pubOnly, 0o700);
    execFileSync("gpg", ["--homedir", pubOnly, "--batch", "--import"], { input: key.publicKey, stdio: ["pipe", "ignore", "ignore"] });
    for (const name of STANDIN_REPOS) {
      const out = execFileSync("git", ["-C", repos[name].bare, "verify-tag", "--raw", "v1"],
        { env: { ...process.env, GNUPGHOME: pubOnly }, stdio: ["ignore", "pipe", "pipe"] });
      expect(out).toBeDefined();
    }
    expect(fs.readFileSync(path.join(root, "sim", "standin", "test-maintainer.sec.asc"), "utf8"))
      .toMatch(/^Comment: qubes-sim test maintainer key: TEST ONLY/m);
  } finally {
    key.done();
    fs.rmSync(pubOnly, { recursive: true, force: true });
  }
});
