import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { system } from "./helpers";

const BIN = path.join(__dirname, "..", "..", "bin", "qrexec-policy");

function run(...args: string[]) {
  const r = spawnSync(BIN, args, { encoding: "utf8" });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

let dir: string;
let sysFile: string;

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "qrexec-cli-"));
  fs.mkdirSync(path.join(dir, "policy"));
  fs.mkdirSync(path.join(dir, "policy", "include"));
  fs.writeFileSync(path.join(dir, "policy", "30-site.policy"), "qubes.Gpg * work gpg allow user=user\n!include include/extra\n");
  fs.writeFileSync(path.join(dir, "policy", "include", "extra"), "qubes.Filecopy * personal work ask default_target=work\n");
  fs.writeFileSync(path.join(dir, "policy", "90-default.policy"), "* * @anyvm @anyvm deny\n");
  fs.writeFileSync(path.join(dir, "policy", "README"), "not a policy\n");
  fs.mkdirSync(path.join(dir, "bad"));
  fs.writeFileSync(path.join(dir, "bad", "50-bad.policy"), "# comment\nqubes.Gpg * work gpg allow target=@anyvm\n");
  sysFile = path.join(dir, "system.json");
  fs.writeFileSync(sysFile, JSON.stringify(system()));
});

afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

test("lint: clean directory exits 0", () => {
  expect(run("lint", path.join(dir, "policy"))).toMatchObject({ code: 0, out: "" });
});

test("lint: errors exit 1 with file:line:col", () => {
  const r = run("lint", path.join(dir, "bad"));
  expect(r.code).toBe(1);
  expect(r.out).toMatch(new RegExp(`^${path.join(dir, "bad", "50-bad.policy").replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}:2:28: target=: .*not allowed as redirect target`));
});

test("eval: allow exits 0 with JSON verdict", () => {
  const r = run("eval", "--policy-dir", path.join(dir, "policy"), "--system-info", sysFile, "qubes.Gpg", "work", "gpg");
  expect(r.code).toBe(0);
  expect(JSON.parse(r.out)).toMatchObject({ action: "allow", target: "gpg", user: "user", file: path.join(dir, "policy", "30-site.policy"), line: 1 });
});

test("eval: deny exits 1, ask exits 2, usage error exits 2", () => {
  const base = ["eval", "--policy-dir", path.join(dir, "policy"), "--system-info", sysFile];
  const deny = run(...base, "qubes.Gpg+x", "personal", "gpg");
  expect(deny.code).toBe(1);
  expect(JSON.parse(deny.out)).toMatchObject({ action: "deny", file: path.join(dir, "policy", "90-default.policy"), line: 1 });
  const ask = run(...base, "qubes.Filecopy", "personal", "work");
  expect(ask.code).toBe(2);
  expect(JSON.parse(ask.out)).toMatchObject({ action: "ask", target: "work", file: path.join(dir, "policy", "include/extra"), line: 1 });
  const usage = run("eval", "--policy-dir", path.join(dir, "policy"));
  expect(usage.code).toBe(2);
  expect(usage.err).toMatch(/usage:/);
  expect(run("frob").code).toBe(2);
});

test("graph: dot output contains the edges; svg via dot", () => {
  const r = run("graph", "--policy-dir", path.join(dir, "policy"), "--system-info", sysFile);
  expect(r.code).toBe(0);
  expect(r.out).toMatch(/^digraph/);
  expect(r.out).toContain('"work" -> "gpg" [label="qubes.Gpg"];');
  expect(r.out).toContain('"personal" -> "work" [label="qubes.Filecopy", style=dashed];');
  if (fs.existsSync("/usr/bin/dot")) {
    const svg = run("graph", "--policy-dir", path.join(dir, "policy"), "--system-info", sysFile, "--format", "svg");
    expect(svg.code).toBe(0);
    expect(svg.out).toContain("<svg");
  }
});
