/**
 * qubesbuilder.ProcessGithubCommand with real clearsigned commands made by throwaway keys.
 */
import * as fs from "fs";
import * as path from "path";
import { buildDist, gpg, makeKey, runJs, tempDir, waitFor, writeJson } from "./helpers";

let dist: string;
let root: string;
let home: string;
const fpr: Record<"maint" | "admin" | "stranger" | "untrusted", string> = { maint: "", admin: "", stranger: "", untrusted: "" };

beforeAll(async () => {
  dist = await buildDist();
  root = tempDir("cmd");
  home = path.join(root, "gnupg");
  fpr.maint = makeKey(home, "Maintainer <m@example.org>");
  fpr.admin = makeKey(home, "Admin <a@example.org>");
  fpr.stranger = makeKey(home, "Trusted non-maintainer <t@example.org>");
  fpr.untrusted = makeKey(home, "Untrusted <u@example.org>");
  const keys = gpg(home, ["--armor", "--export", fpr.maint, fpr.admin, fpr.stranger]);
  fs.writeFileSync(path.join(root, "trusted.asc"), keys.stdout);
});

function clearsign(who: keyof typeof fpr, command: string, hash = "SHA256"): string {
  const r = gpg(home, ["-u", fpr[who], "--digest-algo", hash, "--clearsign"], `${command}\n`);
  if (r.code !== 0) throw new Error(r.stderr);
  return r.stdout;
}

function ts(offsetMs = 0): string {
  const d = new Date(Date.now() + offsetMs);
  const p = (n: number) => String(n).padStart(2, "0");
  return `${d.getUTCFullYear()}${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}${p(d.getUTCHours())}${p(d.getUTCMinutes())}`;
}

let n = 0;
function newBuildVm() {
  const dir = path.join(root, `vm${n++}`);
  fs.mkdirSync(dir);
  const b42 = path.join(dir, "builder-r4.2");
  const art43 = path.join(dir, "artifacts-r4.3");
  fs.mkdirSync(b42);
  fs.mkdirSync(art43);
  fs.writeFileSync(path.join(dir, "builders.list"), `r4.2=${b42}\nr4.3=${dir}/qubes-builderv2=${art43}/builder.yml\n`);
  const out = path.join(dir, "actions.jsonl");
  const notifyFile = path.join(dir, "notify.jsonl");
  const action = ["/bin/sh", "-c", 'printf "%s %s\\n" "$1" "$QBI_COMMAND" >> "$2"', "sh", "{dir}", out];
  const config = writeJson(path.join(dir, "process-github-command.json"), {
    trustedKeysFile: path.join(root, "trusted.asc"),
    maintainers: {
      [fpr.maint]: { components: ["core-admin"], templates: ["fedora-41"], distributions: ["host-fc41", "vm-bookworm", "dom0-fc41", "vm-fc41"] },
      [fpr.admin]: { components: "_all_", templates: "_all_", iso: true, releases: ["4.2", "r4.3"] },
    },
    actions: { "Upload-component": action, "Build-template": action, "Upload-template": action, "Build-iso": action, Upload: action },
    notify: ["/bin/sh", "-c", `cat >> ${notifyFile}`],
    buildersList: path.join(dir, "builders.list"),
    logDir: path.join(dir, "logs"),
  });
  const run = (input: string | Buffer) =>
    runJs(path.join(dist, "process-github-command.js"), {
      env: { QBI_CONFIG: config, QBI_STATE_DIR: path.join(dir, "state"), HOME: dir, QREXEC_REMOTE_DOMAIN: "sys-net" },
      input,
    });
  const actions = () => (fs.existsSync(out) ? fs.readFileSync(out, "utf8").trim().split("\n") : []);
  const notifications = () =>
    fs.existsSync(notifyFile)
      ? fs
          .readFileSync(notifyFile, "utf8")
          .trim()
          .split("\n")
          .map((l) => JSON.parse(l) as { reason: string; outcome: string; signer: string | null })
      : [];
  return { dir, run, actions, notifications, b42, art43, config };
}

const SHA = "0123456789abcdef0123456789abcdef01234567";

test("accepts an authorised Upload-component and runs the action in the builder of that release", async () => {
  const vm = newBuildVm();
  const r = await vm.run(clearsign("maint", `Upload-component r4.3 core-admin ${SHA} current host-fc41,vm-bookworm`));
  expect(r.stderr).toMatch(/accepted Upload-component/);
  expect(r.code).toBe(0);
  const [line] = await waitFor(() => (vm.actions().length === 1 ? vm.actions() : null));
  const [dir, json] = [line.slice(0, line.indexOf(" ")), line.slice(line.indexOf(" ") + 1)];
  expect(dir).toBe(vm.art43);
  expect(JSON.parse(json)).toEqual({
    name: "Upload-component",
    release: "4.3",
    component: "core-admin",
    commit: SHA,
    repo: "current",
    dists: ["host-fc41", "vm-bookworm"],
    signer: fpr.maint,
  });
  expect(vm.notifications()).toEqual([]);
});

test("accepts v1 Upload and a fresh Build-template, Build-iso from an admin", async () => {
  const vm = newBuildVm();
  expect((await vm.run(clearsign("maint", `Upload core-admin ${SHA} r4.2 current dom0-fc41 vm-fc41 repo`))).code).toBe(0);
  expect((await vm.run(clearsign("maint", `Build-template r4.2 fedora-41 ${ts()}`))).code).toBe(0);
  expect((await vm.run(clearsign("admin", `Build-iso r4.3 4.3.0-rc1 ${ts(-60000)}`, "SHA512"))).code).toBe(0);
  expect((await vm.run(clearsign("admin", "Upload-template r4.2 debian-12 4.2.0-202601021530 templates-itl"))).code).toBe(0);
  const acts = await waitFor(() => (vm.actions().length === 4 ? vm.actions() : null));
  expect(acts.map((l) => JSON.parse(l.slice(l.indexOf(" ") + 1)).name).sort()).toEqual(["Build-iso", "Build-template", "Upload", "Upload-template"]);
});

test("a release without a builder here is logged and ignored (not an error, not notified)", async () => {
  const vm = newBuildVm();
  const r = await vm.run(clearsign("maint", `Upload-component r4.9 core-admin ${SHA} current vm-bookworm`));
  expect(r.code).toBe(0);
  expect(vm.notifications()).toEqual([]);
  const journal = fs.readFileSync(path.join(vm.dir, "state", "commands.jsonl"), "utf8");
  expect(journal).toContain("not-for-this-vm");
});

test("a replayed command is refused and notified", async () => {
  const vm = newBuildVm();
  const msg = clearsign("maint", `Upload-component r4.2 core-admin ${SHA} current vm-bookworm`);
  expect((await vm.run(msg)).code).toBe(0);
  const r = await vm.run(msg);
  expect(r.code).toBe(1);
  expect(r.stderr).toMatch(/replayed/);
  expect(vm.notifications()).toMatchObject([{ outcome: "rejected", reason: expect.stringMatching(/replayed/), signer: fpr.maint }]);
  await waitFor(() => vm.actions().length === 1);
});

type Case = [string, () => string | Buffer, RegExp];
const cases: Case[] = [
  ["untrusted signer", () => clearsign("untrusted", `Upload-component r4.2 core-admin ${SHA} current all`), /invalid signature/],
  ["trusted key that is no maintainer", () => clearsign("stranger", `Upload-component r4.2 core-admin ${SHA} current all`), /not a maintainer/],
  ["component not allowed for the signer", () => clearsign("maint", `Upload-component r4.2 core-agent-linux ${SHA} current vm-bookworm`), /may not upload component/],
  ["distribution not allowed", () => clearsign("maint", `Upload-component r4.2 core-admin ${SHA} current vm-trixie`), /may not upload for vm-trixie/],
  ["`all` needs _all_ distributions", () => clearsign("maint", `Upload-component r4.2 core-admin ${SHA} current all`), /may not upload for all/],
  ["release not allowed", () => clearsign("admin", `Upload-component r4.1 core-admin ${SHA} current all`), /may not act on release 4.1/],
  ["template not allowed", () => clearsign("maint", `Build-template r4.2 debian-12 ${ts()}`), /may not act on template/],
  ["ISO not allowed", () => clearsign("maint", `Build-iso r4.2 4.2.5 ${ts()}`), /may not build ISOs/],
  ["unknown command", () => clearsign("admin", "Frobnicate r4.2 everything"), /unknown command/],
  ["Build-component is TriggerBuild's only", () => clearsign("admin", "Build-component core-admin"), /unknown command/],
  ["stale timestamp (2 h)", () => clearsign("maint", `Build-template r4.2 fedora-41 ${ts(-2 * 3600 * 1000)}`), /outside the accepted window/],
  ["future timestamp (10 min)", () => clearsign("maint", `Build-template r4.2 fedora-41 ${ts(10 * 60 * 1000)}`), /outside the accepted window/],
  ["comma in a v1 field", () => clearsign("maint", `Build-template r4.2 fedora-41,x ${ts()}`), /bad template/],
  ["short commit", () => clearsign("maint", "Upload-component r4.2 core-admin 0123abc current all"), /bad commit/],
  ["dotted component", () => clearsign("admin", `Upload-component r4.2 core.admin ${SHA} current all`), /bad component/],
  ["v1 Upload without final repo", () => clearsign("maint", `Upload core-admin ${SHA} r4.2 current vm-fc41 myrepo`), /Upload: expected/],
  ["wrong arity", () => clearsign("maint", `Build-template r4.2 fedora-41 ${ts()} extra`), /takes 3 arguments/],
  ["tampered command", () => clearsign("maint", `Upload-component r4.2 core-admin ${SHA} current vm-bookworm`).replace("vm-bookworm", "vm-bullseye"), /invalid signature/],
  ["hash header mismatch", () => clearsign("maint", `Build-template r4.2 fedora-41 ${ts()}`).replace("Hash: SHA256", "Hash: SHA512"), /does not match the Hash/],
  ["armor header", () => clearsign("maint", `Build-template r4.2 fedora-41 ${ts()}`).replace("-----BEGIN PGP SIGNATURE-----\n\n", "-----BEGIN PGP SIGNATURE-----\nComment: x\n\n"), /not a single clearsigned block/],
  ["two command lines", () => clearsign("maint", `Build-template r4.2 fedora-41 ${ts()}\nBuild-iso r4.2 1 ${ts()}`), /not a single clearsigned block/],
  ["double space", () => clearsign("maint", `Build-template  r4.2 fedora-41 ${ts()}`), /bad characters or spacing/],
  ["leading dash argument", () => clearsign("maint", `Build-template r4.2 -fedora ${ts()}`), /bad characters or spacing/],
  ["shell metacharacters", () => clearsign("maint", "Build-template r4.2 $(id) 202601010000"), /bad characters or spacing/],
  ["binary junk", () => Buffer.from([0, 1, 2, 0xff, 0x1b, 0x5b, 0x0a]), /not printable ASCII/],
  ["oversized input", () => `${"A".repeat(9000)}\n`, /larger than 8192/],
  ["no trailing newline", () => clearsign("maint", `Build-template r4.2 fedora-41 ${ts()}`).trimEnd(), /end with a newline/],
  ["text around the block", () => `hello\n${clearsign("maint", `Build-template r4.2 fedora-41 ${ts()}`)}`, /not a single clearsigned block/],
  ["empty", () => "", /end with a newline/],
  ["corrupt checksum", () => clearsign("maint", `Build-template r4.2 fedora-41 ${ts()}`).replace(/\n=[A-Za-z0-9+/]{4}\n/, "\n=AAAA\n"), /checksum/],
];

test.each(cases)("refuses and notifies: %s", async (name, make, message) => {
  const vm = newBuildVm();
  const r = await vm.run(make());
  expect(r.code).toBe(1);
  expect(r.stderr).toMatch(message);
  const notes = vm.notifications();
  expect(notes).toHaveLength(1);
  expect(notes[0]).toMatchObject({ outcome: "rejected", reason: expect.stringMatching(message) });
  await new Promise((res) => setTimeout(res, name === "stale timestamp (2 h)" ? 200 : 0));
  expect(vm.actions()).toEqual([]);
});

test("a command without an action here is left to the VMs that have one (journaled, not refused, not notified)", async () => {
  const vm = newBuildVm();
  const cfg = JSON.parse(fs.readFileSync(vm.config, "utf8"));
  delete cfg.actions["Build-iso"];
  writeJson(vm.config, cfg);
  const r = await vm.run(clearsign("admin", `Build-iso r4.2 4.2.5 ${ts()}`));
  expect(r.code).toBe(0);
  expect(r.stderr).toMatch(/no builder here takes Build-iso/);
  const journal = fs.readFileSync(path.join(vm.dir, "state", "commands.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
  expect(journal.pop()).toMatchObject({ outcome: "not-for-this-vm" });
  expect(vm.notifications()).toEqual([]);
  await new Promise((res) => setTimeout(res, 300));
  expect(vm.actions()).toEqual([]);
});

test("runs the builders' entry points: v2 per builder under the qubes-builderv2 lock, v1 handlers once with the verified line in a file", async () => {
  const vm = newBuildVm();
  fs.mkdirSync(path.join(vm.dir, "qubes-builderv2"));
  const out = path.join(vm.dir, "entry.txt");
  const rec = (script: string) => ["/bin/sh", "-c", script, "sh"];
  const cfg = JSON.parse(fs.readFileSync(vm.config, "utf8"));
  cfg.actions["Upload-component"] = {
    command: [...rec(`printf '%s\\n' "$*" >> ${out}; echo "PYTHONPATH=$PYTHONPATH" >> ${out}`), "action", "--signer-fpr", "{signer}", "upload-component",
      "{builderDir}", "{conf}", "{component}", "{commit}", "{repo}", "--distribution", "{dists...}"],
    lock: "{builderDir}/builder.lock",
    env: { PYTHONPATH: "{builderDir}" },
  };
  cfg.actions.Upload = { command: [...rec(`echo "file $(cat "$1")" >> ${out}; echo "signer $2" >> ${out}; test -n "$1"`), "{commandFile}", "{signer}"], scope: "vm" };
  writeJson(vm.config, cfg);
  expect((await vm.run(clearsign("maint", `Upload-component r4.3 core-admin ${SHA} current host-fc41,vm-bookworm`))).code).toBe(0);
  expect((await vm.run(clearsign("maint", `Upload core-admin ${SHA} r4.2 current dom0-fc41 vm-fc41 repo`))).code).toBe(0);
  const text = await waitFor(() => {
    const t = fs.existsSync(out) ? fs.readFileSync(out, "utf8").trim().split("\n") : [];
    return t.length === 4 ? t : null;
  });
  // The two run concurrently: compare as sets.
  expect(text.sort()).toEqual([
    `action --signer-fpr ${fpr.maint} upload-component ${vm.dir}/qubes-builderv2 ${vm.art43}/builder.yml core-admin ${SHA} current --distribution host-fc41 vm-bookworm`,
    `PYTHONPATH=${vm.dir}/qubes-builderv2`,
    `file Upload core-admin ${SHA} r4.2 current dom0-fc41 vm-fc41 repo`,
    `signer ${fpr.maint}`,
  ].sort());
  expect(fs.existsSync(path.join(vm.dir, "qubes-builderv2", "builder.lock"))).toBe(true);
  const cmdFiles = fs.readdirSync(path.join(vm.dir, "state", "command-files"));
  expect(cmdFiles).toHaveLength(1);
  expect(fs.statSync(path.join(vm.dir, "state", "command-files", cmdFiles[0])).mode & 0o777).toBe(0o600);
});
