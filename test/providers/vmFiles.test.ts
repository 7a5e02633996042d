// VmFiles with real files: hostAdmin runs the "VM" on this machine under bubblewrap, with a scratch
// directory as /usr/local (where services and the manifest go), and the Admin client's own scripts.
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { setAdminForTests, setRunConnectionForTests } from "../../providers/impl/admin";
import * as managed from "../../providers/impl/managedFile";
import { MANIFEST } from "../../providers/impl/manifest";
import * as rpc from "../../providers/impl/rpcService";
import * as files from "../../providers/impl/vmFiles";
import { hostAdmin } from "./hostAdmin";

const root = fs.mkdtempSync(path.join(os.tmpdir(), "qbi-vmfiles-"));
const usrLocal = path.join(root, "usr-local");
fs.mkdirSync(usrLocal);
const vmDir = path.join(root, "vm");
const at = (p: string) => path.join(vmDir, p);
const local = (p: string) => path.join(usrLocal, path.relative("/usr/local", p));
let admin: ReturnType<typeof hostAdmin>;

beforeEach(() => {
  fs.rmSync(vmDir, { recursive: true, force: true });
  fs.rmSync(usrLocal, { recursive: true, force: true });
  fs.mkdirSync(vmDir);
  fs.mkdirSync(usrLocal);
  setRunConnectionForTests({ transport: "sim", socket: "/nonexistent" });
  admin = hostAdmin({ QUBES_SIM_VM: "build-x" }, ["build-x"], ["bwrap", "--bind", "/", "/", "--bind", usrLocal, "/usr/local", "--dev", "/dev", "--proc", "/proc"]);
  setAdminForTests(() => admin);
});
afterAll(() => {
  setAdminForTests(undefined);
  setRunConnectionForTests(undefined);
  fs.rmSync(root, { recursive: true, force: true });
});

/** The inputs of a VM's files, checked as the engine would. */
async function inputs(filesIn: Record<string, unknown>, services: Record<string, unknown> = {}) {
  const r = await files.check({}, { vm: "build-x", files: filesIn, services });
  expect(r.failures).toBeUndefined();
  return r.inputs;
}

const site = () => ({
  [at("etc/app.conf")]: { content: "a = 1\n", mode: 0o640 },
  [at("etc/secret")]: { content: "s3cr3t\n", mode: 0o600 },
  [`${at("rc.local")}#qbi`]: { content: "echo qbi", kind: "block", mode: 0o755 },
  [at("links/app.conf")]: { content: at("etc/app.conf"), kind: "symlink", mode: 0o777 },
});

describe("VmFiles", () => {
  it("writes every entry: files with their mode, a block beside text it leaves alone, a link, a service, and the manifest", async () => {
    fs.writeFileSync(at("rc.local"), "#!/bin/sh\necho mine\n", { mode: 0o755 });
    const { id, outs } = await files.create(await inputs(site(), { "qbi.Test": { content: "#!/bin/sh\necho test\n" } }));
    expect(id).toBe("build-x:files");
    expect(fs.readFileSync(at("etc/app.conf"), "utf8")).toBe("a = 1\n");
    expect(fs.statSync(at("etc/secret")).mode & 0o7777).toBe(0o600);
    expect(fs.readFileSync(at("rc.local"), "utf8")).toBe("#!/bin/sh\necho mine\n# BEGIN qubes-build-infra qbi\necho qbi\n# END qubes-build-infra qbi\n");
    expect(fs.readlinkSync(at("links/app.conf"))).toBe(at("etc/app.conf"));
    expect(fs.readFileSync(local("/usr/local/etc/qubes-rpc/qbi.Test"), "utf8")).toBe("#!/bin/sh\necho test\n");
    expect(fs.statSync(local("/usr/local/etc/qubes-rpc/qbi.Test")).mode & 0o7777).toBe(0o755);
    expect(fs.readFileSync(local(MANIFEST), "utf8").split("\n").filter(Boolean)).toEqual(
      [at("etc/app.conf"), at("etc/secret"), at("links/app.conf"), `${at("rc.local")}#qbi`, "/usr/local/etc/qubes-rpc/qbi.Test"].sort());
    // Nothing differs: the diff says so, and a read finds what was written.
    expect(await files.diff(id, outs, await inputs(site(), { "qbi.Test": { content: "#!/bin/sh\necho test\n" } }))).toEqual({ changes: false });
    const r = await files.read(id, outs);
    expect(r.props).toEqual(outs);
  });

  it("refresh reads the whole VM in one command: an edited file, a removed one, a re-pointed link, an edited block and a chmod are drift", async () => {
    const { id, outs } = await files.create(await inputs(site()));
    const before = admin.runs.length;
    fs.writeFileSync(at("etc/app.conf"), "a = 2\n");
    fs.rmSync(at("etc/secret"));
    fs.rmSync(at("links/app.conf"));
    fs.symlinkSync("/tmp", at("links/app.conf"));
    fs.writeFileSync(at("rc.local"), fs.readFileSync(at("rc.local"), "utf8").replace("echo qbi", "echo evil"));
    const r = await files.read(id, outs);
    // One command for the VM (after dom0's list, which hostAdmin answers without running anything).
    expect(admin.runs.length - before).toBe(1);
    const props = r.props as { files: Record<string, { sha256: string }> };
    expect(Object.keys(props.files).sort()).toEqual([at("etc/app.conf"), at("links/app.conf"), `${at("rc.local")}#qbi`].sort());
    for (const k of Object.keys(props.files)) expect(props.files[k].sha256).not.toBe((outs.files as Record<string, { sha256: string }>)[k].sha256);

    // The next up writes exactly the four entries that drifted, and nothing else.
    const wanted = await inputs(site());
    expect((await files.diff(id, r.props, wanted)).changes).toBe(true);
    expect(files.changedKeys(r.props as never, wanted as never).sort()).toEqual(Object.keys(site()).sort());
    fs.chmodSync(at("etc/app.conf"), 0o666);
    const again = await files.read(id, outs);
    expect(files.changedKeys(again.props as never, wanted as never)).toContain(at("etc/app.conf"));
    const writes = admin.commands.length;
    await files.update(id, r.props, wanted);
    expect(fs.readFileSync(at("etc/app.conf"), "utf8")).toBe("a = 1\n");
    expect(fs.readFileSync(at("etc/secret"), "utf8")).toBe("s3cr3t\n");
    expect(fs.readlinkSync(at("links/app.conf"))).toBe(at("etc/app.conf"));
    expect(fs.readFileSync(at("rc.local"), "utf8")).toContain("echo qbi\n");
    // app.conf, secret, the link; the block is read then written; the manifest (the read found
    // secret missing, so the recorded keys differ from the declared ones): 6 commands.
    expect(admin.commands.length - writes).toBe(6);
  });

  it("an update writes only the entry that changed and removes the entries no longer declared (only its block of a shared file)", async () => {
    fs.writeFileSync(at("rc.local"), "echo mine\n");
    const { id, outs } = await files.create(await inputs(site()));
    const changed = { ...site(), [at("etc/app.conf")]: { content: "a = 3\n", mode: 0o640 } };
    delete (changed as Record<string, unknown>)[at("etc/secret")];
    delete (changed as Record<string, unknown>)[`${at("rc.local")}#qbi`];
    delete (changed as Record<string, unknown>)[at("links/app.conf")];
    const n = await inputs(changed);
    expect(await files.diff(id, outs, n)).toEqual({ changes: true });
    const before = admin.commands.length;
    const { outs: after } = await files.update(id, outs, n);
    const cmds = admin.commands.slice(before);
    // app.conf written; secret and link removed; the block read and the rest written back; the manifest.
    expect(cmds.filter((c) => c.includes(at("etc/app.conf"))).length).toBe(1);
    expect(cmds.length).toBe(6);
    expect(fs.readFileSync(at("etc/app.conf"), "utf8")).toBe("a = 3\n");
    expect(fs.existsSync(at("etc/secret"))).toBe(false);
    expect(fs.existsSync(at("links/app.conf"))).toBe(false);
    expect(fs.readFileSync(at("rc.local"), "utf8")).toBe("echo mine\n");
    expect(fs.readFileSync(local(MANIFEST), "utf8")).toBe(`${at("etc/app.conf")}\n`);
    expect(Object.keys(after.files)).toEqual([at("etc/app.conf")]);
  });

  it("delete removes every entry and the manifest, and leaves the rest of a shared file", async () => {
    fs.writeFileSync(at("rc.local"), "echo mine\n");
    const { id, outs } = await files.create(await inputs(site(), { "qbi.Test": { content: "#!/bin/sh\n" } }));
    await files.delete(id, outs);
    expect(fs.readdirSync(at("etc"))).toEqual([]);
    expect(fs.existsSync(at("links/app.conf"))).toBe(false);
    expect(fs.readFileSync(at("rc.local"), "utf8")).toBe("echo mine\n");
    expect(fs.existsSync(local("/usr/local/etc/qubes-rpc/qbi.Test"))).toBe(false);
    expect(fs.existsSync(local(MANIFEST))).toBe(false);
  });

  it("a ManagedFile or RpcService a VmFiles took over stays when the old resource is deleted; one it did not take over goes", async () => {
    // The site as it was: a file, a block and a service, each its own resource.
    fs.writeFileSync(at("rc.local"), "echo mine\n");
    const old = async (p: string, extra: Record<string, unknown> = {}) =>
      (await managed.create((await managed.check({}, { vm: "build-x", path: p, content: `old ${p}\n`, ...extra })).inputs)).outs;
    const keptFile = await old(at("etc/app.conf"));
    const droppedFile = await old(at("etc/dropped"));
    const keptBlock = await old(at("rc.local"), { kind: "block", blockId: "qbi" });
    const svc = (await rpc.create((await rpc.check({}, { vm: "build-x", service: "qbi.Test", content: "#!/bin/sh\n" })).inputs)).outs;
    // One up: the VmFiles is created first, then the old resources are deleted.
    await files.create(await inputs({
      [at("etc/app.conf")]: { content: "a = 1\n" },
      [`${at("rc.local")}#qbi`]: { content: "echo qbi\n", kind: "block" },
    }, { "qbi.Test": { content: "#!/bin/sh\necho new\n" } }));
    await managed.delete("x", keptFile);
    await managed.delete("x", droppedFile);
    await managed.delete("x", keptBlock);
    await rpc.delete("x", svc);
    expect(fs.readFileSync(at("etc/app.conf"), "utf8")).toBe("a = 1\n");
    expect(fs.readFileSync(at("rc.local"), "utf8")).toContain("echo qbi\n");
    expect(fs.readFileSync(local("/usr/local/etc/qubes-rpc/qbi.Test"), "utf8")).toBe("#!/bin/sh\necho new\n");
    expect(fs.existsSync(at("etc/dropped"))).toBe(false);
  });

  it("refuses bad entries, naming the entry and the field", async () => {
    const r = await files.check({}, {
      vm: "build-x",
      files: {
        "relative/path": { content: "x" },
        [at("a")]: { kind: "block", content: "x" },
        [`${at("b")}#id`]: { content: "x" },
        [at("c")]: { mode: 0o644 },
        [at("d")]: { kind: "symlink", content: "not absolute" },
        [`${at("e")}#bad id`]: { kind: "block", content: "x" },
      },
      services: { "bad name": { content: "x" } },
    });
    const reasons = (r.failures ?? []).map((f) => f.reason).join("\n");
    expect(reasons).toContain("files.relative/path: a key is an absolute file path, or path#blockId for a block");
    expect(reasons).toContain(`files.${at("a")}.kind: a block's key is path#blockId`);
    expect(reasons).toContain(`files.${at("b")}#id.kind: a file's key is its path, without #`);
    expect(reasons).toContain(`files.${at("c")}.content: content (or contentFile with contentSha256) is required`);
    expect(reasons).toContain(`files.${at("d")}.content: a symlink's target: an absolute path`);
    expect(reasons).toContain(`files.${at("e")}#bad id: a block id: letters, digits and ._:@/- only`);
    expect(reasons).toContain("services.bad name: a qrexec service name");
  });

  it("a VM changed identity: replaced, the old entries gone with the old VM", async () => {
    const n = { ...(await inputs(site())), vmUuid: "new" };
    expect(await files.diff("x", { ...(await inputs(site())), vmUuid: "old", files: {}, services: {} }, n)).toEqual({ changes: true, replaces: ["vmUuid"], deleteBeforeReplace: true });
  });

  it("a reply it cannot read fails closed, naming the VM", async () => {
    const { outs } = await files.create(await inputs(site()));
    setAdminForTests(() => ({ ...admin, systemInfo: admin.systemInfo, run: async () => ({ exitCode: 0, stdout: Buffer.from("0 file nothex 644\n"), stderr: Buffer.alloc(0) }) }) as never);
    await expect(files.read("x", outs)).rejects.toThrow(/VmFiles build-x.*reading.*unexpected line from the VM/s);
  });
});
