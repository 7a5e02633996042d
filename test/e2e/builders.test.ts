/**
 * The real builders' entry points in qubes-sim (test/e2e/harness.ts deploys the local site): a
 * push for a component of the v2 builder's configuration reaches the verified checkout's
 * `github-command.py action build-component`, whose stages log, sign and upload; a signed
 * Upload-component reaches `github-command.py action upload-component`; the credentials the site
 * generated stay in their VMs; a new environment is one `up`, a second `up` changes nothing.
 *
 * The v2 flow signs inside its open BuildLog session and exports the sign key through the split-GPG
 * client: sign-if-logged's client logs the digest first, and keys-debian signs only logged bytes.
 */
import * as crypto from "crypto";
import * as fs from "fs";
import * as path from "path";
import { BUILDER_PATHS } from "../../site/builders";
import { localConfig, NS, startE2eSite, waitFor, type E2eSite } from "./harness";

jest.setTimeout(900_000);

const ART = "/home/user/artifacts-r4.3";
const GD = "/home/user/qubes-builderv2-github";
const BD = "/home/user/qubes-builderv2";
/** The local stack's pins of the v2 code and of the config repository. */
const pins = () => {
  const v2 = (localConfig[`${NS}:builderSources`] as { v2: Record<"builder" | "github", { commit: string }> }).v2;
  const envs = localConfig[`${NS}:envs`] as Record<string, { builders: { config: { repository: { commit: string } } }[] }>;
  return { builder: v2.builder.commit, github: v2.github.commit, config: envs.debian.builders[0].config.repository.commit };
};
/** The stand-in builder's summary of one distribution's run. */
interface Run {
  status: string;
  stage?: string;
  reason?: string;
  signature?: string;
  artifact?: string;
  uploaded?: string;
  logs: Record<string, string>;
}

describe("the builders' own entry points in qubes-sim", () => {
  let site: E2eSite;
  let run: Run;
  const result = (comp: string, dist: string) => site.vmFile("build-debian", `${ART}/standin/${comp}/${dist}.json`);
  const jsonl = (vm: string, p: string) =>
    (fs.existsSync(site.vmFile(vm, p)) ? fs.readFileSync(site.vmFile(vm, p), "utf8").trim().split("\n").map((l) => JSON.parse(l)) : []);
  const COMMANDS = "/home/user/.local/state/qubes-build-infra/process-github-command/commands.jsonl";
  const inVm = (vm: string, p: string) => site.vmFile(vm, p);

  beforeAll(async () => {
    site = await startE2eSite("builders");
  });
  afterAll(async () => {
    await site?.stop();
  });

  it("a push for a component of the v2 builder's configuration reaches github-command.py action build-component, whose stages are logged", async () => {
    // The repository name (qubes-app-linux-input-proxy) is not the component's (input-proxy): the
    // builder's own configuration says which component it is.
    const r = await site.webhook("trigger_build", "push", { ref: "refs/tags/v1.0.1", repository: { full_name: "QubesOS/qubes-app-linux-input-proxy" } });
    expect(r.status).toBe(202);
    const f = result("input-proxy", "vm-bookworm");
    run = await waitFor(() => {
      if (!fs.existsSync(f)) return null;
      const x = JSON.parse(fs.readFileSync(f, "utf8")) as Run;
      return x.status !== "building" && x.logs.build ? x : null;
    }, 240_000, "the stand-in builderv2's run");

    // TriggerBuild started the checked-out builderv2-github's entry point, argv and lock as upstream.
    const started = jsonl("build-debian", "/home/user/builder-github-logs/trigger-build.jsonl").filter((x) => x.argv);
    expect(started).toEqual([expect.objectContaining({
      asked: "app-linux-input-proxy", component: "input-proxy", release: "4.3", matchedBy: "the builder's configuration",
      argv: [`${GD}/github-command.py`, "action", "--no-signer-github-command-check", "build-component", BD, `${ART}/builder.yml`, "input-proxy"],
      lock: `${BD}/builder.lock`,
    })]);
    // build-fedora (v1, its own component list) has no such component and started nothing.
    expect(jsonl("build-fedora", "/home/user/builder-github-logs/trigger-build.jsonl").filter((x) => x.argv)).toEqual([]);

    // The fetch session and the prep/build/sign/publish session are two logs, pushed to the logs
    // repository in commits signed by the logs key; the four stages are in one of them.
    const fetchLog = site.logsGit("show", `main:${run.logs.fetch}`);
    expect(fetchLog).toMatch(/build-debian: .*fetch: input-proxy from https:\/\/github.com\/QubesOS\/qubes-app-linux-input-proxy/);
    const buildLog = site.logsGit("show", `main:${run.logs.build}`);
    // (The publish stage follows the signatures: see the next test.)
    expect(buildLog.match(/stage (prep|build|sign|publish)$/gm)?.slice(0, 3)).toEqual(["stage prep", "stage build", "stage sign"]);
    expect(buildLog).toMatch(/\$ \/usr\/local\/bin\/qubes-gpg-client-wrapper --armor --export [0-9A-F]{40}/);
    expect(site.logsGit("cat-file", "commit", "main")).toMatch(/^gpgsig /m);
    // The sign stage asked keys-debian through split-GPG (what the gate answered is the next test's).
    const hops = site.journal().map((e) => `${e.source}>${e.service}>${e.resolvedTarget}`);
    expect(hops).toEqual(expect.arrayContaining(["sys-net>qubesbuilder.TriggerBuild+app-linux-input-proxy>build-debian",
      "build-debian>qubesbuilder.BuildLog>logs", "build-debian>qubes.Gpg>keys-debian"]));
  });

  it("the packages are signed by keys-debian inside the open session (sign-if-logged), published, and uploaded through local.ConnectSSH", async () => {
    expect({ status: run.status, stage: run.stage, reason: run.reason }).toEqual({ status: "uploaded", stage: undefined, reason: undefined });
    // One session: the four stages, then its end, in the same log.
    expect(site.logsGit("show", `main:${run.logs.build}`).match(/stage (prep|build|sign|publish)$|> done$/gm))
      .toEqual(["stage prep", "stage build", "stage sign", "stage publish", "> done"]);
    const key = site.signingKeys().debian;
    const pub = await site.sim.client.run("keys-debian", `gpg --armor --export ${key}`);
    site.hostGpg(["--import"], pub.stdout.toString());
    const art = inVm("build-debian", run.artifact!);
    expect(site.hostGpg(["--status-fd", "1", "--verify", inVm("build-debian", run.signature!), art])).toMatch(new RegExp(`VALIDSIG ${key}`));
    const repo = path.dirname(art);
    expect(site.hostGpg(["--status-fd", "1", "--verify", path.join(repo, "InRelease")])).toMatch(new RegExp(`VALIDSIG ${key}`));
    expect(fs.readFileSync(path.join(repo, `${key}.asc`), "utf8")).toMatch(/BEGIN PGP PUBLIC KEY BLOCK/);
    expect(run.uploaded).toBe("user@yum.qubes-os.org:/pub/qubes/repo/deb");
    const sent = site.uploads.find((u) => u.toString("latin1").includes("artifact of input-proxy"));
    expect(sent?.toString("latin1").split("\n")[0]).toMatch(/^\/pub\/qubes\/repo\/deb\/input-proxy_1.0-1\+bookworm.deb \d+ \d+$/);
    expect(site.logsGit("show", `main:${run.logs.upload}`)).toMatch(/OK [0-9a-f]{64}/);
    expect(site.journal().map((e) => `${e.source}>${e.service}>${e.resolvedTarget}>${e.verdict}`))
      .toContain("build-debian>local.ConnectSSH+yum.qubes-os.org>sys-net>allow");
    // builderv2-github's state file (it notifies GitHub with the token from builder-github.yml).
    expect(fs.readFileSync(inVm("build-debian", `${BUILDER_PATHS.notifyState}/r4.3-input-proxy-vm-bookworm-current-testing`), "utf8")).toBe("uploaded\n");
  });

  it("a signed Upload-component reaches github-command.py action upload-component with the signer, under the qubes-builderv2 lock", async () => {
    // The stand-in's source commit of input-proxy for r4.3 (it fetches no sources).
    const sha = crypto.createHash("sha1").update("https://github.com/QubesOS/qubes-app-linux-input-proxy@r4.3").digest("hex");
    const body = site.clearsign(site.commandKey, `Upload-component r4.3 input-proxy ${sha} current vm-bookworm`);
    expect((await site.webhook("process_comment", "issue_comment", { action: "created", comment: { body } })).status).toBe(202);
    const f = result("input-proxy", "vm-bookworm-current");
    const up = await waitFor(() => fs.existsSync(f) && (JSON.parse(fs.readFileSync(f, "utf8")) as Run), 120_000, "the upload-component action");
    expect(up).toMatchObject({ status: "uploaded", repository: "current" });
    expect(site.logsGit("show", `main:${up.logs.upload}`)).toMatch(/publish input-proxy for vm-bookworm to current/);
    const started = jsonl("build-debian", COMMANDS).filter((x) => x.outcome === "started");
    expect(started).toEqual([expect.objectContaining({
      signer: site.commandKey, lock: `${BD}/builder.lock`,
      argv: [`${GD}/github-command.py`, "action", "--signer-fpr", site.commandKey, "upload-component", BD, `${ART}/builder.yml`,
        "input-proxy", sha, "current", "--distribution", "vm-bookworm"],
    })]);
    // build-fedora has no r4.3 builder (and no v2 action): not for it, and nobody is told of a refusal.
    expect(jsonl("build-fedora", COMMANDS).map((x) => x.outcome)).toEqual(["not-for-this-vm"]);
  });

  it("the generated credentials: private halves stay in their VMs, public halves are stack outputs, secrets are 0600", async () => {
    const deploy = (site.outputs.deployKeys as Record<string, string>).logs;
    const upload = (site.outputs.uploadKeys as Record<string, string>).debian;
    expect(deploy).toMatch(/^ssh-ed25519 \S+ logs logs deploy key \(qubes-build-infra\)$/);
    expect(upload).toMatch(/^ssh-ed25519 \S+ build-debian upload key/);
    expect(JSON.stringify(site.outputs)).not.toMatch(/PRIVATE KEY/);
    expect(fs.readFileSync(inVm("logs", "/home/user/.ssh/id_ed25519.pub"), "utf8").trim()).toBe(deploy);
    expect(fs.statSync(inVm("logs", "/home/user/.ssh/id_ed25519")).mode & 0o777).toBe(0o600);
    expect(fs.readFileSync(inVm("logs", "/home/user/.ssh/known_hosts"), "utf8"))
      .toMatch(/^github\.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl$/m);
    const yml = inVm("build-debian", BUILDER_PATHS.githubYml);
    expect(fs.statSync(yml).mode & 0o777).toBe(0o600);
    expect(fs.readFileSync(yml, "utf8")).toMatch(/api-key: e2e-stand-in-token/);
    // The checkouts are at their pins.
    const head = async (dir: string) => (await site.sim.client.run("build-debian", `git -C ${dir} rev-parse HEAD`)).stdout.toString().trim();
    expect(await head(BD)).toBe(pins().builder);
    expect(await head(`${ART}/config/release-configs`)).toBe(pins().config);
  });

  it("a new environment is its checkouts (verified), configs and keys in one up; a second up changes nothing", async () => {
    const envs = localConfig[`${NS}:envs`] as Record<string, { builders: { config: unknown }[] }>;
    const arch = { logs: "logs", builderv2: true, builders: [{ dir: "/home/user/artifacts-r4.3", release: "4.3", config: envs.debian.builders[0].config }] };
    await site.setConfig({ [`${NS}:envs`]: { ...envs, arch } });
    const up = await site.stack.up({ policyPacks: [path.join(__dirname, "..", "..", "policy")] });
    expect(up.summary.result).toBe("succeeded");
    const outs = Object.fromEntries(Object.entries(up.outputs).map(([k, v]) => [k, v.value])) as Record<string, Record<string, string>>;
    expect(outs.uploadKeys.arch).toMatch(/^ssh-ed25519 \S+ build-arch upload key/);
    for (const [dir, pin] of [[BD, pins().builder], [GD, pins().github], [`${ART}/config/release-configs`, pins().config]]) {
      const r = await site.sim.client.run("build-arch", `git -C ${dir} rev-parse HEAD`);
      expect([dir, r.stdout.toString().trim()]).toEqual([dir, pin]);
    }
    expect(String(await site.sim.client.readFile("build-arch", `${ART}/builder.yml`))).toContain(`sign-key:\n  rpm: ${outs.signingKeys.arch}`);
    const again = await site.stack.up();
    expect(Object.keys(again.summary.resourceChanges ?? {})).toEqual(["same"]);
  });
});
