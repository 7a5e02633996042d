// ManagedFile kind `symlink` with real ln/readlink (hostAdmin runs the "VM" here).
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { setAdminForTests, setRunConnectionForTests } from "../../providers/impl/admin";
import * as file from "../../providers/impl/managedFile";
import { hostAdmin } from "./hostAdmin";

const root = fs.mkdtempSync(path.join(os.tmpdir(), "qbi-symlink-"));
// The connection a configured run has; hostAdmin plays the VM.
beforeAll(() => {
  setRunConnectionForTests({ transport: "sim", socket: "/nonexistent" });
  setAdminForTests(() => hostAdmin({}, ["build-x"]));
});
afterAll(() => {
  setAdminForTests(undefined);
  setRunConnectionForTests(undefined);
  fs.rmSync(root, { recursive: true, force: true });
});

it("links, finds a re-pointed link by refresh, relinks, and removes only the link", async () => {
  const link = path.join(root, "lib", "qubes-builder-github");
  const target = path.join(root, "builder-r4.2", "qubes-src", "builder-github", "lib");
  fs.mkdirSync(target, { recursive: true });
  const inputs = (await file.check({}, { vm: "build-x", path: link, content: target, kind: "symlink", mode: 0o755, owner: "root", blockId: "main" })).inputs;
  const { outs } = await file.create(inputs);
  expect(fs.readlinkSync(link)).toBe(target);
  fs.rmSync(link);
  fs.symlinkSync("/tmp", link);
  const r = await file.read("x", outs);
  expect(await file.diff("x", r.props, inputs)).toEqual({ changes: true });
  await file.update("x", r.props, inputs);
  expect(fs.readlinkSync(link)).toBe(target);
  await file.delete("x", outs);
  expect(fs.existsSync(link)).toBe(false);
  expect(fs.existsSync(target)).toBe(true);
  const bad = await file.check({}, { ...inputs, content: "relative/target" });
  expect(bad.failures?.[0].reason).toMatch(/absolute path/);
});
