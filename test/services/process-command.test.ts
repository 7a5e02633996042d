/**
 * qubesbuilder.ProcessGithubCommand with real clearsigned commands made by throwaway keys.
 */
import * as crypto from "crypto";
import * as fs from "fs";
import * as path from "path";
import { hashedCreationTime } from "../../services/process-github-command";
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

// ---------------------------------------------------------------- malleated signatures

/** The text before the signature armour, and the signature packet. */
function splitClearsigned(msg: string): { head: string; packet: Buffer } {
  const at = msg.indexOf("-----BEGIN PGP SIGNATURE-----\n\n");
  const m = /^-----BEGIN PGP SIGNATURE-----\n\n([A-Za-z0-9+/=\n]+?)\n(?:=[A-Za-z0-9+/]{4}\n)?-----END PGP SIGNATURE-----\n$/.exec(msg.slice(at));
  if (at < 0 || !m) throw new Error(`not a clearsigned message: ${msg}`);
  return { head: msg.slice(0, at), packet: Buffer.from(m[1].replace(/\n/g, ""), "base64") };
}

function crc24(data: Buffer): number {
  let crc = 0xb704ce;
  for (const byte of data) {
    crc ^= byte << 16;
    for (let i = 0; i < 8; i++) {
      crc <<= 1;
      if (crc & 0x1000000) crc ^= 0x1864cfb;
    }
  }
  return crc & 0xffffff;
}

/** Armours a packet again: `columns` per line, with or without the CRC-24 line. */
function armour(head: string, packet: Buffer, columns: number, checksum: boolean, headers = ""): string {
  const b64 = packet.toString("base64");
  const lines = b64.match(new RegExp(`.{1,${columns}}`, "g")) ?? [];
  const crc = Buffer.alloc(3);
  crc.writeUIntBE(crc24(packet), 0, 3);
  const sum = checksum ? `=${crc.toString("base64")}\n` : "";
  return `${head}-----BEGIN PGP SIGNATURE-----\n${headers}\n${lines.join("\n")}\n${sum}-----END PGP SIGNATURE-----\n`;
}

/** The body of a signature packet (whatever its header form). */
function packetBody(packet: Buffer): Buffer {
  if (packet[0] & 0x40) {
    const l0 = packet[1];
    return packet.subarray(l0 < 192 ? 2 : l0 < 224 ? 3 : 6);
  }
  return packet.subarray([2, 3, 5][packet[0] & 3]);
}

/** New-format header with the five-byte length form, valid for any length. */
function newFormat(body: Buffer): Buffer {
  const h = Buffer.alloc(6);
  h[0] = 0xc2;
  h[1] = 255;
  h.writeUInt32BE(body.length, 2);
  return Buffer.concat([h, body]);
}

/** Old-format header (tag 2) with the four-byte length form. */
function oldFormatLong(body: Buffer): Buffer {
  const h = Buffer.alloc(5);
  h[0] = 0x80 | (2 << 2) | 2;
  h.writeUInt32BE(body.length, 1);
  return Buffer.concat([h, body]);
}

/** Adds a private-use subpacket (type 105) to the unhashed area, which the signature does not cover. */
function withUnhashedSubpacket(packet: Buffer): Buffer {
  const body = packetBody(packet);
  const hashedEnd = 6 + body.readUInt16BE(4);
  const unhashedLen = body.readUInt16BE(hashedEnd);
  const extra = Buffer.from([4, 105, 0x71, 0x62, 0x69]);
  const len = Buffer.alloc(2);
  len.writeUInt16BE(unhashedLen + extra.length);
  const unhashed = body.subarray(hashedEnd + 2, hashedEnd + 2 + unhashedLen);
  return newFormat(Buffer.concat([body.subarray(0, hashedEnd), len, unhashed, extra, body.subarray(hashedEnd + 2 + unhashedLen)]));
}

/** A clearsigned command made at a frozen time (gpg's --faked-system-time), with the given hash. */
function clearsignAt(who: keyof typeof fpr, command: string, epochSeconds: number, hash: string): string {
  const r = gpg(home, ["--faked-system-time", `${epochSeconds}!`, "-u", fpr[who], "--digest-algo", hash, "--clearsign"], `${command}\n`);
  if (r.code !== 0) throw new Error(r.stderr);
  return r.stdout;
}

describe("a command is used once, however its signature is re-encoded", () => {
  const kinds: [string, () => string][] = [
    ["Upload", () => `Upload core-admin ${SHA} r4.2 current dom0-fc41 vm-fc41 repo`],
    ["Build-template", () => `Build-template r4.2 fedora-41 ${ts()}`],
    ["Upload-component", () => `Upload-component r4.3 core-admin ${SHA} current host-fc41,vm-bookworm`],
    ["Upload-template", () => "Upload-template r4.2 debian-12 4.2.0-202601021530 templates-itl"],
    ["Build-iso", () => `Build-iso r4.3 4.3.0-rc1 ${ts()}`],
  ];
  const variants: [string, (msg: string, command: string, at: number) => string, RegExp][] = [
    ["an added unhashed subpacket, re-armoured (64 columns, checksum)", (msg) => {
      const { head, packet } = splitClearsigned(msg);
      return armour(head, withUnhashedSubpacket(packet), 64, true);
    }, /replayed/],
    ["the packet length re-encoded (old format, four-byte length), re-armoured (76 columns, no checksum)", (msg) => {
      const { head, packet } = splitClearsigned(msg);
      return armour(head, oldFormatLong(packetBody(packet)), 76, false);
    }, /replayed/],
    ["the same packet re-armoured at 40 columns", (msg) => {
      const { head, packet } = splitClearsigned(msg);
      return armour(head, packet, 40, true);
    }, /replayed/],
    [
      "a new signature by the same key in the same second, with another hash (SHA512)",
      (_msg, command, at) => clearsignAt("admin", command, at, "SHA512"),
      /replayed/,
    ],
    ["an armour header (Comment:)", (msg) => {
      const { head, packet } = splitClearsigned(msg);
      return armour(head, withUnhashedSubpacket(packet), 64, true, "Comment: again\n");
    }, /not a single clearsigned block/],
  ];
  test.each(kinds)("%s", async (_kind, make) => {
    const vm = newBuildVm();
    const command = make();
    const at = Math.floor(Date.now() / 1000);
    const original = clearsignAt("admin", command, at, "SHA256");
    const first = await vm.run(original);
    expect(first.stderr).toMatch(/accepted/);
    expect(first.code).toBe(0);
    const outcomes: [string, number | null, string][] = [];
    for (const [name, malleate] of variants) {
      const again = malleate(original, command, at);
      expect(again).not.toBe(original);
      const r = await vm.run(again);
      outcomes.push([name, r.code, r.stderr]);
    }
    expect(outcomes).toEqual(variants.map(([name, , refusal]) => [name, 1, expect.stringMatching(refusal)]));
    await new Promise((res) => setTimeout(res, 300));
    expect(vm.actions()).toHaveLength(1);
  });

  test("the malleated signatures do verify (so the refusal above is the replay check, not gpgv)", async () => {
    const vm = newBuildVm();
    const at = Math.floor(Date.now() / 1000);
    const original = clearsignAt("admin", "Upload-template r4.2 debian-12 4.2.0-202601021530 templates-itl", at, "SHA256");
    const { head, packet } = splitClearsigned(original);
    // A fresh build VM each: no replay state, so each malleated form alone is accepted.
    for (const variant of [armour(head, withUnhashedSubpacket(packet), 64, true), armour(head, oldFormatLong(packetBody(packet)), 76, false)]) {
      const other = newBuildVm();
      const r = await other.run(variant);
      expect([r.code, r.stderr]).toEqual([0, expect.stringMatching(/accepted/)]);
    }
    expect((await vm.run(original)).code).toBe(0);
  });
});

test("a signature remembered by an earlier version (digest of the packet) is still refused", async () => {
  const vm = newBuildVm();
  const msg = clearsign("admin", "Upload-template r4.2 debian-12 4.2.0-202601021530 templates-itl");
  const digest = crypto.createHash("sha256").update(splitClearsigned(msg).packet).digest("hex");
  fs.mkdirSync(path.join(vm.dir, "state"), { recursive: true });
  fs.writeFileSync(path.join(vm.dir, "state", "seen-signatures.json"), JSON.stringify({ [digest]: Date.now() + 3600000 }));
  const r = await vm.run(msg);
  expect([r.code, r.stderr]).toEqual([1, expect.stringMatching(/replayed/)]);
});

test("a replay store that cannot be read stops commands instead of forgetting them", async () => {
  const vm = newBuildVm();
  fs.mkdirSync(path.join(vm.dir, "state"), { recursive: true });
  fs.writeFileSync(path.join(vm.dir, "state", "seen-signatures.json"), "{not json");
  const r = await vm.run(clearsign("admin", "Upload-template r4.2 debian-12 4.2.0-202601021530 templates-itl"));
  expect(r.code).toBe(3);
  expect(r.stderr).toMatch(/replay store .*seen-signatures.json is corrupt/);
  await new Promise((res) => setTimeout(res, 200));
  expect(vm.actions()).toEqual([]);
});

describe("hashedCreationTime", () => {
  const time = (t: number) => Buffer.from([5, 2, (t >>> 24) & 255, (t >>> 16) & 255, (t >>> 8) & 255, t & 255]);
  const issuer = Buffer.from([9, 16, 1, 2, 3, 4, 5, 6, 7, 8]);
  test("reads the one creation time among other subpackets (1-, 2- and 5-byte lengths)", () => {
    const long = Buffer.concat([Buffer.from([192, 8, 20]), Buffer.alloc(199)]); // 2-byte length: 200
    const five = Buffer.concat([Buffer.from([255, 0, 0, 0, 3, 101, 0, 0])]);
    expect(hashedCreationTime(Buffer.concat([issuer, long, time(1700000000), five]))).toBe(1700000000);
  });
  test.each([
    ["no creation time", Buffer.concat([issuer]), /exactly one hashed creation time \(found 0\)/],
    ["two creation times", Buffer.concat([time(1700000000), time(1700000001)]), /found 2/],
    ["a subpacket running past the area", Buffer.from([9, 16, 1, 2]), /malformed hashed subpacket area/],
    ["a zero-length subpacket", Buffer.from([0]), /malformed hashed subpacket area/],
    ["a short creation time", Buffer.from([3, 2, 0, 0]), /malformed signature creation time/],
  ])("refuses %s", (_name, area, message) => {
    expect(() => hashedCreationTime(area)).toThrow(message);
  });
});
