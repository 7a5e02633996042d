/**
 * The whole build flow, end to end, in qubes-sim with the deployed qrexec policy enforced by the
 * sim's broker: the `local` site is deployed with the real `pulumi up` (test/e2e/harness.ts), then
 * GitHub (signed webhooks), the builder (the verified checkout of the stand-in qubes-builder, whose
 * scripts/auto-build TriggerBuild starts), the upload host (a TCP endpoint on 127.0.0.1) and
 * attackers are played against it.
 */
import * as fs from "fs";
import * as path from "path";
import { receiverOf, sendWebhook } from "../../sim/webhook";
import { sleep, startE2eSite, waitFor, type E2eSite } from "./harness";

jest.setTimeout(600_000);

const BUILDER = "/home/user/builder-r4.2";

describe("the build flow in qubes-sim", () => {
  let site: E2eSite;
  const state = () => site.state();
  const vmFile = (vm: string, p: string) => site.vmFile(vm, p);
  const journal = () => site.journal();
  const hostGpg = (args: string[], input?: string) => site.hostGpg(args, input);
  const git = (...args: string[]) => site.logsGit(...args);
  const artifacts = () => vmFile("build-fedora", `${BUILDER}/artifacts/core-admin`);
  const SECRET = () => receiverOf(state()).secret;

  /** Scenario 1's trigger: a signed push of core-admin; resolves with the builder's result line. */
  async function buildOnce(): Promise<string> {
    fs.rmSync(artifacts(), { recursive: true, force: true });
    const r = await site.webhook("trigger_build", "push",
      { ref: "refs/heads/main", repository: { full_name: "QubesOS/qubes-core-admin", name: "qubes-core-admin" } });
    expect(r.status).toBe(202);
    const f = path.join(artifacts(), "result");
    return (await waitFor(() => fs.existsSync(f) && fs.readFileSync(f, "utf8").trim(), 180_000, "the build's result")) as string;
  }

  beforeAll(async () => {
    site = await startE2eSite("e2e");
  });
  afterAll(async () => {
    await site?.stop();
  });

  it("2) a build VM that sent no log is refused a signature", async () => {
    const r = await site.sim.client.run("build-fedora", "echo data > /tmp/f; qubes-gpg-client-wrapper --detach-sign --armor -o /tmp/f.asc /tmp/f");
    expect(r.exitCode).toBe(1);
    expect(r.stderr.toString()).toMatch(/refused/);
  });

  it("1) signed push → TriggerBuild → build → log pushed and acknowledged → signed by keys-fedora → uploaded", async () => {
    const before = site.uploads.length;
    const fingerprints = site.signingKeys();
    expect(await buildOnce()).toBe("ok");
    const rel = fs.readFileSync(path.join(artifacts(), "log-path"), "utf8").trim();
    expect(rel).toMatch(/^build-fedora\/\d{4}-\d\d-\d\d\/log_[\d-]+$/);
    // The log is in the pushed, signed head of the stand-in GitHub.
    const log = git("show", `main:${rel}`);
    expect(log).toMatch(/build-fedora: building core-admin in build-fedora/);
    expect(git("cat-file", "commit", "main")).toMatch(/^gpgsig /m);
    // LogReceived opened build-fedora's window in keys-fedora.
    const acks = fs.readFileSync(vmFile("keys-fedora", "/home/user/.local/state/qubes-build-infra/signing/acks.jsonl"), "utf8");
    expect(acks).toContain(rel);
    // The artifact verifies with keys-fedora's public key, exported from the keys VM.
    const pub = await site.sim.client.run("keys-fedora", `gpg --armor --export ${fingerprints.fedora}`);
    hostGpg(["--import"], pub.stdout.toString());
    const art = path.join(artifacts(), "core-admin-1.0-1.fc41.noarch.rpm");
    const v = hostGpg(["--status-fd", "1", "--verify", `${art}.asc`, art]);
    expect(v).toMatch(new RegExp(`VALIDSIG ${fingerprints.fedora}`));
    expect(site.uploads.length).toBe(before + 1);
    expect(site.uploads[site.uploads.length - 1].toString()).toContain("artifact of core-admin");
    // It ran the checked-out builder's entry point: scripts/auto-build under the builder's lock.
    const started = fs.readFileSync(vmFile("build-fedora", "/home/user/builder-github-logs/trigger-build.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
    expect(started.pop()).toMatchObject({ component: "core-admin", argv: [`${BUILDER}/scripts/auto-build`, "core-admin"], lock: `${BUILDER}/builder.lock` });
    // The signatures were made in a second logged session, after the build's log was published.
    const signLog = git("show", `main:${fs.readFileSync(path.join(artifacts(), "sign-log-path"), "utf8").trim()}`);
    expect(signLog).toMatch(/sign-all update-repo-current-testing[\s\S]*signing core-admin-1.0-1.fc41.noarch.rpm[\s\S]*uploaded: OK/);
    // Every hop went through the broker, allowed by the site's rules.
    const allowed = journal().filter((e) => e.verdict === "allow").map((e) => `${e.source}>${e.service}>${e.resolvedTarget}`);
    for (const hop of ["sys-net>qubesbuilder.TriggerBuild+core-admin>build-fedora", "build-fedora>qubesbuilder.BuildLog>logs",
      "logs>qubesbuilder.LogReceived+build-fedora>keys-fedora", "build-fedora>qubes.Gpg>keys-fedora", "build-fedora>local.ConnectSSH+yum.qubes-os.org>sys-net"]) {
      expect(allowed).toContain(hop);
    }
  });

  it("3) build-fedora asking keys-debian to sign is denied by policy, the journal names the rule", async () => {
    const r = await site.sim.client.run("build-fedora", "echo x | qrexec-client-vm -- keys-debian qubes.Gpg");
    expect(r.exitCode).toBe(126);
    const e = journal().pop()!;
    expect(e).toMatchObject({ source: "build-fedora", service: "qubes.Gpg", requestedTarget: "keys-debian", verdict: "deny" });
    expect(e.rule).toMatch(/20-qubes-build-infra\.policy:\d+$/);
    const line = Number(e.rule!.split(":").pop());
    const text = fs.readFileSync(path.join(state(), "dom0", "etc", "qubes", "policy.d", "20-qubes-build-infra.policy"), "utf8").split("\n")[line - 1];
    expect(text).toMatch(/^qubes\.Gpg\s+\*\s+build-fedora\s+@anyvm\s+deny/);
  });

  it("4) a new AppVM is denied qubes.Gpg, BuildLog, LogReceived and ConnectSSH", async () => {
    await site.sim.client.vmCreate("AppVM", "intruder", "red", "fedora-43-xfce");
    for (const [target, service] of [["keys-fedora", "qubes.Gpg"], ["@default", "qubes.Gpg"], ["dom0", "qubesbuilder.BuildLog"], ["logs", "qubesbuilder.BuildLog"],
      ["dom0", "qubesbuilder.LogReceived+build-fedora"], ["keys-fedora", "qubesbuilder.LogReceived+build-fedora"], ["sys-net", "local.ConnectSSH+yum.qubes-os.org"]]) {
      const r = await site.sim.client.run("intruder", `qrexec-client-vm -- ${target} ${service} </dev/null`);
      expect([target, service, r.exitCode]).toEqual([target, service, 126]);
      expect(journal().pop()).toMatchObject({ source: "intruder", verdict: "deny" });
    }
  });

  it("5) a compromised build VM cannot alter or delete a committed log", async () => {
    const head = git("rev-parse", "main").trim();
    const files = git("ls-tree", "-r", "--name-only", "main").split("\n").filter((f) => f.startsWith("build-fedora/"));
    const contents = files.map((f) => git("show", `main:${f}`));
    const attacks = [
      // Straight at the stand-in GitHub: read-only from here (no credentials).
      "git -C /srv/qubes-sim-github/build-logs.git update-ref refs/heads/main HEAD~1",
      "rm -rf /srv/qubes-sim-github/build-logs.git/objects",
      // Into the logs VM or dom0 by qrexec: no rule.
      "echo 'rm -rf /home/user/QubesIncomingBuildLog' | qrexec-client-vm -- logs qubes.VMShell",
      "qrexec-client-vm -- dom0 admin.vm.Remove+logs </dev/null",
      "qrexec-client-vm -- logs qubesbuilder.BuildLog </dev/null",
    ];
    for (const a of attacks) {
      const r = await site.sim.client.run("build-fedora", a);
      expect([a, r.exitCode === 0]).toEqual([a, false]);
    }
    // A path as service argument never leaves qrexec ('/' is not allowed in an argument) ...
    const slash = await site.sim.client.run("build-fedora", "printf 'evil\\n' | qrexec-client-vm -- dom0 qubesbuilder.BuildLog+../../x");
    expect(slash.exitCode).toBe(126);
    // ... and BuildLog itself only ever adds: `..` becomes a new sub-directory of its own.
    const r = await site.sim.client.run("build-fedora", "printf 'evil\\n' | qrexec-client-vm -- dom0 qubesbuilder.BuildLog+..");
    expect(r.exitCode).toBe(0);
    const after = git("rev-parse", "main").trim();
    expect(git("merge-base", "--is-ancestor", head, after) === "").toBe(true);
    files.forEach((f, i) => expect(git("show", `main:${f}`)).toBe(contents[i]));
  });

  it("6) a signed v1 Upload comment runs builder-github's handler once; replayed or untrusted ones are refused with feedback", async () => {
    const { port } = receiverOf(state());
    const url = `http://127.0.0.1:${port}/api/services/process_comment`;
    // The commit the stand-in builder holds for core-admin (scenario 1 built it): the handler checks it.
    const sha = fs.readFileSync(vmFile("build-fedora", `${BUILDER}/qubes-src/core-admin/.standin-commit`), "utf8").trim();
    const clearsign = (fpr: string, cmd: string) => site.clearsign(fpr, cmd);
    const comment = (body: string) => sendWebhook({ url, event: "issue_comment", secret: SECRET(), payload: { action: "created", comment: { body } } });
    const uploadsLog = vmFile("build-fedora", `${BUILDER}/uploads.log`);
    const rejections = () => {
      const f = vmFile("build-fedora", "/home/user/.local/state/qubes-build-infra/process-github-command/commands.jsonl");
      return fs.existsSync(f) ? fs.readFileSync(f, "utf8").trim().split("\n").map((l) => JSON.parse(l) as { outcome: string; reason: string }).filter((x) => x.outcome === "rejected") : [];
    };
    const command = `Upload core-admin ${sha} r4.2 current vm-fc41 repo`;
    const signed = clearsign(site.commandKey, command);
    expect((await comment(`Please upload\n\n${signed}`)).status).toBe(202);
    const line = await waitFor(() => fs.existsSync(uploadsLog) && fs.readFileSync(uploadsLog, "utf8"), 60_000, "the upload handler");
    expect(line).toBe(`core-admin ${sha} current vm-fc41\n`);

    const n = rejections().length;
    expect((await comment(`again\n\n${signed}`)).status).toBe(202);
    await waitFor(() => rejections().length > n, 60_000, "the replay's rejection");
    expect(rejections().pop()!.reason).toMatch(/replay|seen|already/i);

    const untrusted = clearsign(site.untrustedKey, command);
    expect((await comment(untrusted)).status).toBe(202);
    await waitFor(() => rejections().length > n + 1, 60_000, "the untrusted command's rejection");
    const unsigned = `-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n${command}\n-----BEGIN PGP SIGNATURE-----\n\nAAAA\n-----END PGP SIGNATURE-----\n`;
    expect((await comment(unsigned)).status).toBe(202);
    await waitFor(() => rejections().length > n + 2, 60_000, "the unsigned command's rejection");
    await sleep(1000);
    expect(fs.readFileSync(uploadsLog, "utf8")).toBe(line);
  });

  it("7) an unsigned webhook gets 401 and nothing is forwarded", async () => {
    const { port } = receiverOf(state());
    const n = journal().length;
    const r = await sendWebhook({ url: `http://127.0.0.1:${port}/api/services/trigger_build`, event: "push", secret: null, payload: { repository: { full_name: "QubesOS/qubes-core-admin" } } });
    expect(r.status).toBe(401);
    const bad = await sendWebhook({ url: `http://127.0.0.1:${port}/api/services/trigger_build`, event: "push", secret: "not-the-secret-at-all-0000", payload: { repository: { full_name: "QubesOS/qubes-core-admin" } } });
    expect(bad.status).toBe(401);
    await sleep(1500);
    expect(journal().slice(n).filter((e) => e.service.startsWith("qubesbuilder.TriggerBuild"))).toEqual([]);
  });

  it("8) drift: a rule deleted by hand breaks scenario 1, `pulumi up --refresh` restores it", async () => {
    const text = (await site.sim.client.policyGet("20-qubes-build-infra")).content;
    const edited = text.split("\n").filter((l) => !/^qubes\.Gpg\s+\*\s+build-fedora\s+keys-fedora\s+allow/.test(l)).join("\n");
    expect(edited).not.toBe(text);
    await site.sim.client.policyReplace("20-qubes-build-infra", edited, "any");
    expect(await buildOnce()).toMatch(/^fail sign /);
    // Drift is found by reading dom0 back: `pulumi up --refresh` (a plain `up` trusts the state).
    await site.deploy(true);
    expect(await buildOnce()).toBe("ok");
  });
});
