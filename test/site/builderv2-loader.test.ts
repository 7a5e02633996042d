/**
 * Developer tests against the real upstream code, which CI cannot download (and which is never
 * committed here):
 *
 * - QBI_BUILDERV2_SRC=<a qubes-builderv2 source tree at the pinned commit> runs builderv2's own
 *   configuration loader (`qubesbuilder.config.Config`) on the builder.yml and builder-github.yml
 *   this site generates (for the prod stack), with builderv2's example configuration standing in
 *   for the config repository's file. builderv2 at bcb20f2 needs Python >= 3.12: point
 *   QBI_BUILDERV2_PYTHON at one (default `python3`); its libraries come from Debian packages
 *   (python3-yaml, python3-dateutil, python3-packaging, python3-pathspec), whose directory is
 *   added to PYTHONPATH. E.g.:
 *     git -C <mirror of QubesOS/qubes-builderv2> archive bcb20f285b9fc729217d3efb60c56dd55b152c80 | tar -x -C /tmp/builderv2
 *     QBI_BUILDERV2_SRC=/tmp/builderv2 QBI_BUILDERV2_PYTHON=python3.13 npx jest test/site/builderv2-loader.test.ts
 * - QBI_BUILDERV2_GIT=<a clone of QubesOS/qubes-builderv2 with its tags> verifies the prod stack's
 *   pin of qubes-builderv2 (its signed `mm_` tag) with BuilderCheckout, the prod stack's
 *   maintainer key only.
 *
 * Without them each test is reported as skipped, with "NOT RUN" and the variable in its name.
 */
import { execFileSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { parse, stringify } from "yaml";
import { setAdminForTests } from "../../providers/impl/admin";
import * as checkout from "../../providers/impl/builderCheckout";
import { builderYmlSchema, schemaProblems } from "../../site/builderv2Schema";
import { builderGithubYmlDoc, builderYmlDoc, checkoutsOf } from "../../site/builders";
import { parseSiteConfig, type SiteConfig } from "../../site/config";
import { rawSiteConfig } from "../../site/stackConfig";
import { hostAdmin } from "../providers/hostAdmin";

jest.setTimeout(300_000);

const root = path.join(__dirname, "..", "..");
const src = process.env.QBI_BUILDERV2_SRC;
const gitSrc = process.env.QBI_BUILDERV2_GIT;
const python = process.env.QBI_BUILDERV2_PYTHON ?? "python3";
const FPR = "ABCDEF0123456789ABCDEF0123456789ABCDEF01";
// Say so loudly in the jest output, not only as a skipped count.
for (const [v, set] of [["QBI_BUILDERV2_SRC", src], ["QBI_BUILDERV2_GIT", gitSrc]] as const) {
  if (!set) {
    console.warn(`builderv2-loader: NOT RUN: ${v} is not set, so builderv2's own code was not run against the generated files `
      + "(see test/site/builderv2-loader.test.ts)");
  }
}

function prod(): SiteConfig {
  const cfg = parse(fs.readFileSync(path.join(root, "Pulumi.prod.yaml"), "utf8")).config as Record<string, unknown>;
  const all = Object.fromEntries(Object.entries(cfg).map(([k, v]) => [k, typeof v === "string" ? v : JSON.stringify(v)]));
  return parseSiteConfig(rawSiteConfig(all, "qubes-build-infra", root));
}

/** What builderv2's loader makes of a builder.yml, as JSON (printed by a small Python program). */
function load(builderYml: string): Record<string, unknown> {
  const program = `
import json, sys
from qubesbuilder.config import Config
c = Config(sys.argv[1])
ex = c.get_executor_from_config("build")
print(json.dumps({
  "release": c.qubes_release, "parsedRelease": c.parse_qubes_release().group(1), "artifactsDir": str(c.artifacts_dir),
  "gpgClient": c.gpg_client, "signKey": c.sign_key, "upload": c.repository_upload_remote_host,
  "executor": type(ex).__name__, "dispvm": getattr(ex, "_dispvm_template", None), "github": c.get("github", {}),
  "distributions": [d.distribution for d in c.get_distributions()], "components": len(c.get_components()),
}))
`;
  const out = execFileSync(python, ["-c", program, builderYml], {
    cwd: src, env: { ...process.env, PYTHONPATH: `${src}:/usr/lib/python3/dist-packages` }, stdio: ["ignore", "pipe", "pipe"],
  });
  return JSON.parse(out.toString()) as Record<string, unknown>;
}

describe("builderv2's own loader on the generated files", () => {
  const notRunSrc = src ? "" : "NOT RUN (set QBI_BUILDERV2_SRC, see the file's comment): ";
  (src ? it : it.skip)(`${notRunSrc}loads builder.yml + builder-github.yml as the site means them`, () => {
    const cfg = prod();
    const b = cfg.envs.fedora.builders[1];
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "qbi-builderv2-load-"));
    try {
      // The generated documents, with the VM's absolute paths moved into the temp dir; the config
      // repository's file is builderv2's own example configuration of that release.
      const art = path.join(dir, "artifacts-r4.3");
      const conf = path.join(art, "config", "release-configs", "R4.3", "qubes-os-r4.3-dom0.yml");
      fs.mkdirSync(path.dirname(conf), { recursive: true });
      fs.copyFileSync(path.join(src!, "example-configs", "qubes-os-r4.3.yml"), conf);
      const gh = path.join(dir, "builder-github.yml");
      fs.writeFileSync(gh, stringify(builderGithubYmlDoc(cfg, "tok_123")));
      const doc = builderYmlDoc(cfg, b, FPR);
      expect(doc.include[0]).toBe("config/release-configs/R4.3/qubes-os-r4.3-dom0.yml");
      fs.writeFileSync(path.join(art, "builder.yml"), stringify({ ...doc, include: [doc.include[0], gh], "artifacts-dir": art }));

      const loaded = load(path.join(art, "builder.yml"));
      expect(loaded).toMatchObject({
        release: "r4.3", parsedRelease: "4.3", artifactsDir: art, gpgClient: "/usr/local/bin/qubes-gpg-client-wrapper",
        signKey: { rpm: FPR, deb: FPR, archlinux: FPR, iso: FPR },
        upload: doc["repository-upload-remote-host"],
        executor: "LinuxQubesExecutor", dispvm: "builder-dvm",
        github: builderGithubYmlDoc(cfg, "tok_123").github,
      });
      expect((loaded.distributions as string[]).length).toBeGreaterThan(0);

      // Why the schema refuses what it refuses, by the loader itself: a two-digit major release
      // is silently read as r4.2, an unknown executor type is an error.
      fs.writeFileSync(path.join(art, "builder.yml"), stringify({ ...doc, include: [doc.include[0], gh], "artifacts-dir": art, "qubes-release": "r10.1" }));
      expect(load(path.join(art, "builder.yml")).parsedRelease).toBe("4.2");
      expect(schemaProblems(builderYmlSchema, { ...doc, "qubes-release": "r10.1" })).toEqual([expect.stringMatching(/^qubes-release: /)]);
      const qube = { type: "qube", options: { dispvm: "builder-dvm" } };
      fs.writeFileSync(path.join(art, "builder.yml"), stringify({ ...doc, include: [doc.include[0], gh], "artifacts-dir": art, executor: qube }));
      expect(() => load(path.join(art, "builder.yml"))).toThrow(/Cannot determine which executor to use/);
      expect(schemaProblems(builderYmlSchema, { ...doc, executor: qube })).toEqual([expect.stringMatching(/^executor.type: /)]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  const notRunGit = gitSrc ? "" : "NOT RUN (set QBI_BUILDERV2_GIT to a clone of QubesOS/qubes-builderv2): ";
  (gitSrc ? it : it.skip)(`${notRunGit}verifies the prod pin of qubes-builderv2 with its signed tag and the prod maintainer key`, async () => {
    const cfg = prod();
    const pin = checkoutsOf(cfg, "fedora")[0];
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "qbi-builderv2-pin-"));
    setAdminForTests(() => hostAdmin());
    try {
      const p = {
        admin: { transport: "sim" as const, socket: "/nonexistent" }, vm: "build-fedora", dir: path.join(dir, "qubes-builderv2"),
        url: `file://${gitSrc}`, commit: pin.commit, tag: pin.tag, maintainers: pin.maintainers, keys: cfg.maintainerKeys,
        submodules: false, user: "user", label: pin.label,
      };
      const { outs } = await checkout.create(p);
      expect(outs).toMatchObject({ checkedOut: pin.commit, verifiedBy: "0064428F455451B3EBE78A7F063938BA42CFA724" });
      // The same pin named with a tag of another commit is refused.
      await expect(checkout.create({ ...p, dir: path.join(dir, "other"), commit: "915fa0cdeab8d761ce5b562a94c29cdfb029c225" }))
        .rejects.toThrow(/not at the pinned commit/);
    } finally {
      setAdminForTests(undefined);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
