/**
 * Keys VM: qubesbuilder.LogReceived accepts only entries it verified itself and that name this
 * keys VM and the build VM dom0 pinned; the qubes.Gpg gate's option allowlist; the build VM's
 * client in rpm's form. (The whole sign-if-logged flow: sign-if-logged.test.ts.)
 */
import { execFileSync } from "child_process";
import * as crypto from "crypto";
import * as fs from "fs";
import * as path from "path";
import { canonicalJson } from "../../services/lib/tlog";
import { buildDist, gpg, runJs, runProgram } from "./helpers";
import { makeSignSite, SignSite, tlogProgram } from "./signSite";

jest.setTimeout(120_000);

let dist: string;
let site: SignSite;
beforeAll(async () => {
  dist = await buildDist();
  site = makeSignSite(dist);
});

const sha = (b: string) => crypto.createHash("sha256").update(b).digest("hex");

/** Appends `entries` to the site's own log (as its logs VM would) and proves the last one. */
function logAndProve(entries: unknown[], from: number): Record<string, unknown> {
  execFileSync(tlogProgram(), ["append", "--dir", site.tlogDir, "--private", site.tlogKey], { input: entries.map((e) => `${canonicalJson(e)}\n`).join("") });
  const size = Number(fs.readFileSync(path.join(site.tlogDir, "checkpoint"), "utf8").split("\n")[1]);
  const i = size - 1;
  const p = JSON.parse(execFileSync(tlogProgram(), ["prove", "--dir", site.tlogDir, "--index", String(i), "--from", String(from)]).toString());
  return { checkpoint: p.checkpoint, index: i, entry: p.entries[String(i)], inclusion: p.inclusion[String(i)], from, consistency: p.consistency };
}

const request = (over: Record<string, unknown> = {}) => ({
  v: 1, kind: "signature-request", time: new Date().toISOString(), vm: "build-a", env: "a", signer: "keys-a", key: "default",
  sha256: sha("data\n"), size: 5, logs: [0], ...over,
});

function held(vm: string): number {
  try {
    return Number(fs.readFileSync(path.join(site.keysState(vm), "witness", "checkpoint"), "utf8").split("\n")[1]);
  } catch {
    return 0;
  }
}

/** keys-a's LogReceived, called as dom0's redirect would (no policy in front of it here). */
const received = (arg: string, input: string, caller = "logs") =>
  runJs(path.join(dist, "log-received.js"), {
    env: { QBI_CONFIG: path.join(site.root, "keys-a", "log-received.json"), QBI_STATE_DIR: site.keysState("keys-a"), HOME: path.join(site.root, "keys-a"),
      PATH: process.env.PATH ?? "", QREXEC_REMOTE_DOMAIN: caller, QREXEC_SERVICE_ARGUMENT: arg },
    input,
  });

const gate = (caller: string, input: string | Buffer) =>
  runProgram(path.join(site.fake.routeDir, "qubes.Gpg"), {
    env: { ...site.envOf(caller), QREXEC_REMOTE_DOMAIN: caller, QREXEC_REQUESTED_TARGET: "keys-a" }, input,
  });

describe("qubesbuilder.LogReceived", () => {
  test("accepts a verified request of its build VM once, and it then signs exactly those bytes once", async () => {
    const bundle = logAndProve([request({ sha256: sha("accepted\n"), size: 9 })], held("keys-a"));
    const r = await received("build-a", JSON.stringify(bundle));
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^ok [0-9]+\n$/);
    expect((await gate("build-a", "--detach-sign --armor\naccepted\n")).code).toBe(0);
    // The same entry handed over again (with a proof from the size now held): it stays used.
    const p = JSON.parse(execFileSync(tlogProgram(), ["prove", "--dir", site.tlogDir, "--index", String(bundle.index), "--from", String(held("keys-a"))]).toString());
    expect((await received("build-a", JSON.stringify({ ...bundle, checkpoint: p.checkpoint, inclusion: p.inclusion[String(bundle.index)], from: held("keys-a"), consistency: p.consistency }))).code).toBe(0);
    expect((await gate("build-a", "--detach-sign --armor\naccepted\n")).code).toBe(1);
  });

  test("answers `have <size>` to a consistency proof from another size, and accepts the retry", async () => {
    const stale = logAndProve([request({ sha256: sha("retry\n"), size: 6 })], 0);
    const have = held("keys-a");
    const r = await received("build-a", JSON.stringify(stale));
    if (have > 0) {
      expect(r.code).toBe(1);
      expect(r.stdout).toBe(`have ${have}\n`);
    }
    const size = Number(fs.readFileSync(path.join(site.tlogDir, "checkpoint"), "utf8").split("\n")[1]);
    const p = JSON.parse(execFileSync(tlogProgram(), ["prove", "--dir", site.tlogDir, "--index", String(size - 1), "--from", String(have)]).toString());
    const ok = await received("build-a", JSON.stringify({ ...stale, from: have, consistency: p.consistency }));
    expect(ok.code).toBe(0);
  });

  test.each([
    ["a caller that is not a logs VM", "build-a", () => logAndProve([request()], held("keys-a")), "build-a", /not a configured logs VM/],
    ["an argument that is not a served build VM", "build-b", () => logAndProve([request()], held("keys-a")), "logs", /not a build VM served here/],
    ["a request of another build VM", "build-a", () => logAndProve([request({ vm: "build-b", env: "b", signer: "keys-b" })], held("keys-a")), "logs", /request of build-b/],
    ["a request for another keys VM", "build-a", () => logAndProve([request({ signer: "keys-b" })], held("keys-a")), "logs", /for signer keys-b/],
    ["an entry that is not a signature request", "build-a",
      () => logAndProve([{ v: 1, kind: "log-prefix", time: new Date().toISOString(), vm: "build-a", env: "a", path: "build-a/d/log_01", contentSha256: sha(""), contentSize: 0 }], held("keys-a")),
      "logs", /not a signature request/],
    ["an entry of an unknown schema", "build-a", () => logAndProve([{ v: 2, kind: "signature-request" }], held("keys-a")), "logs", /schema v1/],
    ["a proof for another entry", "build-a", () => ({ ...logAndProve([request(), request({ sha256: sha("other\n") })], held("keys-a")), entry: Buffer.from(canonicalJson(request())).toString("base64") }),
      "logs", /bad-inclusion/],
    ["a malleated checkpoint", "build-a", () => {
      const b = logAndProve([request()], held("keys-a"));
      return { ...b, checkpoint: String(b.checkpoint).replace(/\n([0-9]+)\n/, (_m, n: string) => `\n${Number(n) + 1}\n`) };
    }, "logs", /bad-signature/],
    ["unknown fields", "build-a", () => ({ ...logAndProve([request()], held("keys-a")), extra: 1 }), "logs", /malformed/],
  ])("refuses %s", async (_name, arg, make, caller, message) => {
    const r = await received(arg, JSON.stringify(make()), caller);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(message);
  });

  test.each([
    ["not JSON", "hello"],
    ["binary junk", "\x00\xff\x1b[31m"],
    ["oversized", "x".repeat(1024 * 1024 + 10)],
  ])("refuses malformed input: %s", async (_name, input) => {
    const r = await received("build-a", input);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/malformed|too long/);
  });
});

describe("qubes.Gpg gate: options", () => {
  test.each([
    ["unknown caller", "sys-net", "-ba", /not an allowed client/],
    ["--homedir", "build-a", "-ba --homedir /tmp", /characters/],
    ["--homedir without path", "build-a", "-ba --homedir x", /not allowed: --homedir/],
    ["--export-secret-keys", "build-a", "--export-secret-keys", /not allowed/],
    ["output file", "build-a", "-ba -o /tmp/x", /characters/],
    ["output option", "build-a", "-ba -o x", /not allowed: -o/],
    ["--output=", "build-a", "-ba --output=/tmp/x", /characters|not allowed/],
    ["status on stdout", "build-a", "-ba --status-fd 1", /bad value for --status-fd/],
    ["key not allowed", "build-a", "-ba -u 0000000000000000000000000000000000000000", /signing key [0-9A-F]{40} is not allowed/],
    ["short key id", "build-a", "-ba -u DEADBEEF", /bad value/],
    ["no signing mode", "build-a", "--armor", /required/],
    ["detach and clearsign", "build-a", "-b --clearsign", /exclude/],
    ["shell metacharacters", "build-a", "-ba;rm -rf", /characters/],
    ["double space", "build-a", "-b  -a", /double space/],
    ["combined unknown letter", "build-a", "-bak", /not allowed/],
    ["file path argument", "build-a", "-ba secret.txt", /characters/],
    ["positional argument", "build-a", "-ba secret", /not allowed: secret/],
    ["--list-secret-keys", "build-a", "--list-secret-keys", /not allowed/],
    ["export with another option", "build-a", "--export --sign DEADBEEF", /not allowed with --export/],
  ])("refuses: %s", async (_name, caller, options, message) => {
    const r = await gate(caller, `${options}\ndata\n`);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(message);
    // No signature: stdout carries only the reason (qrexec relays stdout to the caller, not stderr).
    expect(r.stdout).toMatch(/^qbi-reason: qubes\.Gpg: refused: [^\n]*\n$/);
    expect(r.stdout).toMatch(message);
  });

  test("refuses an option line that never ends", async () => {
    const r = await gate("build-a", Buffer.alloc(10000, 0x61));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/too long/);
  });

  test("clearsign of logged text works", async () => {
    const text = "Upload-component r4.2 x\n";
    expect((await received("build-a", JSON.stringify(logAndProve([request({ sha256: sha(text), size: text.length })], held("keys-a"))))).code).toBe(0);
    const r = await gate("build-a", `--clearsign\n${text}`);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^-----BEGIN PGP SIGNED MESSAGE-----/);
  });
});

test("the build VM's client signs in rpm's form (-sbo <out> <in>, -u <fpr>)", async () => {
  const dir = path.join(site.root, "rpm");
  fs.mkdirSync(dir);
  const data = path.join(dir, "package.rpm");
  fs.writeFileSync(data, "package bytes\n");
  const out = path.join(dir, "package.sig");
  const s = runProgram(path.join(site.fake.routeDir, "qubesbuilder.BuildLog"), { env: { ...site.envOf("build-a"), QREXEC_REMOTE_DOMAIN: "build-a" }, input: "rpm build\n" });
  expect((await s).code).toBe(0);
  const r = await runJs(path.join(dist, "gpg-client.js"), {
    env: site.envOf("build-a"),
    args: ["--no-verbose", "--no-armor", "--no-secmem-warning", "-u", site.signFpr, "-sbo", out, data],
  });
  expect(r.stderr).toBe("");
  expect(r.code).toBe(0);
  expect(gpg(site.keysHome, ["--status-fd", "1", "--verify", out, data]).stdout).toContain(`VALIDSIG ${site.signFpr}`);
});
