// The builders' plan (site/builders.ts): checkouts, generated configuration files, entry points,
// and every bad input refused with the environment, the builder and the reason.
import * as fs from "fs";
import * as path from "path";
import { parse } from "yaml";
import {
  BuilderConfigError, checkBuilders, checkoutsOf, commandActions, renderBuilderConf, renderBuilderGithubConf, renderBuilderGithubYml,
  buildersListOf, renderBuilderYml, renderOpenqaConf, triggerEntryPoint,
} from "../../site/builders";
import { renderBuildersList } from "../../contracts/buildersList";
import { parseSiteConfig, type SiteConfig } from "../../site/config";
import { rawSiteConfig } from "../../site/stackConfig";

const root = path.join(__dirname, "..", "..");
const raw = (stack: string) => {
  const cfg = parse(fs.readFileSync(path.join(root, `Pulumi.${stack}.yaml`), "utf8")).config as Record<string, unknown>;
  const all = Object.fromEntries(Object.entries(cfg).map(([k, v]) => [k, typeof v === "string" ? v : JSON.stringify(v)]));
  return rawSiteConfig(all, "qubes-build-infra", root) as Record<string, unknown> & { envs: Record<string, Record<string, unknown>> };
};
const load = (stack: string, patch: (r: ReturnType<typeof raw>) => void = () => undefined): SiteConfig => {
  const r = raw(stack);
  patch(r);
  return parseSiteConfig(r);
};
const FPR = "ABCDEF0123456789ABCDEF0123456789ABCDEF01";
type B = { dir: string; release: string; config: { file?: string; repository: Record<string, unknown> } };
const builders = (r: ReturnType<typeof raw>, env: string) => r.envs[env].builders as B[];

describe("the local stack's builders", () => {
  const cfg = load("local");

  it("v1: qubes-builder at the builder dir, builder-github and the config repository inside it", () => {
    const c = checkoutsOf(cfg, "fedora");
    expect(c.map((x) => [x.key, x.dir, x.inside ?? null])).toEqual([
      ["builder:/home/user/builder-r4.2", "/home/user/builder-r4.2", null],
      ["github:/home/user/builder-r4.2", "/home/user/builder-r4.2/qubes-src/builder-github", "builder:/home/user/builder-r4.2"],
      ["config:/home/user/builder-r4.2", "/home/user/builder-r4.2/qubes-src/release-configs", "builder:/home/user/builder-r4.2"],
    ]);
    expect(c[2]).toMatchObject({
      url: "file:///srv/qubes-sim-github/qubes-release-configs", tag: "v1",
      label: "env fedora, builder /home/user/builder-r4.2, config repository release-configs",
    });
  });

  it("v2: qubes-builderv2 and qubes-builderv2-github once, a config repository per builder", () => {
    expect(checkoutsOf(cfg, "debian").map((x) => [x.key, x.dir])).toEqual([
      ["qubes-builderv2", "/home/user/qubes-builderv2"],
      ["qubes-builderv2-github", "/home/user/qubes-builderv2-github"],
      ["config:/home/user/artifacts-r4.3", "/home/user/artifacts-r4.3/config/release-configs"],
    ]);
  });

  it("builder.yml: the config file, then builder-github.yml; the env's key, the split-GPG client, the upload hosts", () => {
    const text = renderBuilderYml(cfg, "debian", cfg.envs.debian.builders[0], FPR);
    expect(text).toMatch(/^# builderv2 configuration of \/home\/user\/artifacts-r4.3 \(env debian\)/);
    expect(parse(text)).toEqual({
      include: ["config/release-configs/R4.3/qubes-os-r4.3-vm-debian.yml", "/home/user/builder-github.yml"],
      "artifacts-dir": "/home/user/artifacts-r4.3",
      "qubes-release": "r4.3",
      executor: { type: "qubes", options: { dispvm: "builder-dvm" } },
      "gpg-client": "/usr/local/bin/qubes-gpg-client-wrapper",
      "sign-key": { rpm: FPR, deb: FPR, archlinux: FPR, iso: FPR },
      "repository-upload-remote-host": { rpm: "user@yum.qubes-os.org:/pub/qubes/repo/yum", deb: "user@yum.qubes-os.org:/pub/qubes/repo/deb" },
    });
  });

  it("builder-github.yml holds the token and the command signers; builders.list and the entry points", () => {
    expect(parse(renderBuilderGithubYml(cfg, "debian", "ghp_token123")).github).toMatchObject({
      "api-key": "ghp_token123", "state-dir": "/home/user/github-notify-state", "logs-repo": "qubes-sim/build-logs",
      "build-report-repo": "QubesOS/updates-status",
    });
    expect(renderBuildersList(buildersListOf(cfg.envs.debian))).toBe("r4.3=/home/user/qubes-builderv2=/home/user/artifacts-r4.3/builder.yml\n");
    expect(renderBuildersList(buildersListOf(cfg.envs.fedora))).toBe("r4.2=/home/user/builder-r4.2\n");
    expect(triggerEntryPoint(2).command).toEqual(["/home/user/qubes-builderv2-github/github-command.py", "action", "--no-signer-github-command-check",
      "build-component", "{builderDir}", "{conf}", "{component}"]);
    expect(triggerEntryPoint(1)).toMatchObject({ command: ["{dir}/scripts/auto-build", "{component}"], lock: "{dir}/builder.lock" });
    expect(Object.keys(commandActions(2)).sort()).toEqual(["Build-iso", "Build-template", "Upload-component", "Upload-template"]);
    expect(commandActions(1).Upload).toEqual({
      command: ["/usr/local/lib/qubes-builder-github/github-command-upload", "{commandFile}", "{signer}"], scope: "vm",
    });
  });

  it("builder.conf (v1): the config file, the signing key, command signers' dists, builder-github.conf", () => {
    const c = load("local", (r) => {
      r.commands = { maintainers: { [FPR]: { components: "_all_", distributions: ["vm-fc41", "host-fc41"] }, ["1".repeat(40)]: { components: "_all_" } } };
    });
    expect(renderBuilderConf(c, "fedora", c.envs.fedora.builders[0], FPR).split("\n").filter((l) => !l.startsWith("#"))).toEqual([
      "include /home/user/builder-r4.2/qubes-src/release-configs/R4.2/qubes-os-r4.2-host.conf",
      `SIGN_KEY = ${FPR}`, `DEBIAN_SIGN_KEY = ${FPR}`,
      `ALLOWED_DISTS_${FPR} = fc41 dom0`, `ALLOWED_DISTS_${"1".repeat(40)} = $(DISTS_VM) dom0`,
      "include /home/user/builder-github.conf", "",
    ]);
    expect(renderBuilderGithubConf(c, "tok_1")).toContain("GITHUB_API_KEY = tok_1\n");
    expect(() => renderBuilderGithubConf(c, "tok$(shell id)")).toThrow(/githubApiToken/);
    expect(renderOpenqaConf("openqa.qubes-os.org", "abc123", "def456")).toBe("[openqa.qubes-os.org]\nkey = abc123\nsecret = def456\n");
  });
});

describe("bad input is refused with the environment, the builder and the reason", () => {
  const refuse = (patch: (r: ReturnType<typeof raw>) => void, env: string, message: RegExp) => {
    const c = load("local", patch);
    let err: unknown;
    try {
      checkBuilders(c, env);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(BuilderConfigError);
    expect((err as Error).message).toMatch(message);
  };

  it("a release builderv2 would read as r4.2 without a word", () => {
    refuse((r) => { builders(r, "debian")[0].release = "10.1"; }, "debian",
      new RegExp("^env debian, builder /home/user/artifacts-r4.3: builder.yml would not load as builderv2 expects:\n"
        + " {2}qubes-release: r<digit>.<digits>: builderv2 reads any other release as r4.2"));
  });
  it("a builderv2 configuration that is not YAML", () => {
    refuse((r) => { builders(r, "debian")[0].config.file = "R4.3/qubes-os-r4.3-host.conf"; }, "debian",
      /env debian, builder \/home\/user\/artifacts-r4.3: builder.yml .*\n {2}include.0: a .yml or .yaml file/);
  });
  it("a v2 builder without a config file, a config repository without a pin or without signers", () => {
    refuse((r) => { delete builders(r, "debian")[0].config.file; }, "debian",
      /env debian, builder \/home\/user\/artifacts-r4.3, config repository release-configs: a builderv2 builder needs config.file/);
    refuse((r) => { delete builders(r, "fedora")[0].config.repository.commit; }, "fedora",
      /env fedora, builder \/home\/user\/builder-r4.2, config repository release-configs: pin it/);
    refuse((r) => { builders(r, "fedora")[0].config.repository.maintainers = []; }, "fedora", /config repository release-configs: name who signs it/);
  });
  it("no pinned builder code for the env's version", () => {
    refuse((r) => { r.builderSources = { v1: (r.builderSources as Record<string, unknown>).v1 }; }, "debian",
      /^env debian: no pinned builder and github code for a v2 environment/);
  });
  it("two upload hosts for one kind of repository", () => {
    refuse((r) => {
      const hosts = r.uploadHosts as Record<string, Record<string, unknown>>;
      hosts["deb.qubes-os.org"] = { ...hosts["yum.qubes-os.org"], repositories: { deb: "/x" } };
    }, "debian", /deb repositories are uploaded to both yum.qubes-os.org and deb.qubes-os.org/);
  });
  it("a tag or commit that is not one is refused by the stack config schema, naming the key", () => {
    expect(() => load("local", (r) => { builders(r, "fedora")[0].config.repository.commit = "v1.0"; }))
      .toThrow(/qubes-build-infra:envs.fedora.builders.0.config.repository.commit: a full commit id/);
    expect(() => load("local", (r) => { builders(r, "fedora")[0].config.repository.tag = "--upload-pack=x"; }))
      .toThrow(/config.repository.tag: a tag name/);
  });
});

describe("the prod stack's builders", () => {
  it("plans every env with the formula's pins and passes builderv2's loader rules", () => {
    const cfg = load("prod");
    for (const env of Object.keys(cfg.envs)) checkBuilders(cfg, env);
    const fedora = checkoutsOf(cfg, "fedora");
    expect(fedora[0]).toMatchObject({
      url: "https://github.com/QubesOS/qubes-builderv2", commit: "bcb20f285b9fc729217d3efb60c56dd55b152c80", tag: "mm_bcb20f28",
    });
    expect(parse(renderBuilderYml(cfg, "fedora", cfg.envs.fedora.builders[1], FPR))["repository-upload-remote-host"]).toEqual({
      rpm: "user@yum.qubes-os.org:/pub/qubes/repo/yum/r4.3", iso: "user@yum.qubes-os.org:/pub/qubes/iso",
      deb: "user@deb.qubes-os.org:/pub/qubes/repo/deb/r4.3", archlinux: "user@archlinux.qubes-os.org:/pub/qubes/repo/archlinux/r4.3",
    });
    expect(checkoutsOf(cfg, "kernel").map((c) => c.key)).toEqual(["builder:/home/user/builder-r4.3", "github:/home/user/builder-r4.3"]);
  });
});
