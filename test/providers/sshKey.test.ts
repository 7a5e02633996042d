// SshKey's implementation with the real ssh-keygen on this machine (hostAdmin runs the "VM").
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { setAdminForTests, setRunConnectionForTests } from "../../providers/impl/admin";
import * as impl from "../../providers/impl/sshKey";
import { hostAdmin } from "./hostAdmin";

const root = fs.mkdtempSync(path.join(os.tmpdir(), "qbi-sshkey-"));
// The connection a configured run has; hostAdmin plays the VM.
beforeAll(() => {
  setRunConnectionForTests({ transport: "sim", socket: "/nonexistent" });
  setAdminForTests(() => hostAdmin({}, ["logs"]));
});
afterAll(() => {
  setAdminForTests(undefined);
  setRunConnectionForTests(undefined);
  fs.rmSync(root, { recursive: true, force: true });
});

describe("SshKey", () => {
  const key = path.join(root, "ssh", "id_ed25519");
  const inputs = { vm: "logs", path: key, comment: "logs deploy key (qubes-build-infra)", generation: 1, user: "user" };

  it("generates the key in place, private half 0600 in a 0700 directory, and outputs only the public half", async () => {
    const { outs } = await impl.create(inputs);
    expect(outs.publicKey).toMatch(/^ssh-ed25519 AAAA[A-Za-z0-9+/=]+ logs deploy key \(qubes-build-infra\)$/);
    expect(outs.fingerprint).toMatch(/^SHA256:/);
    expect(JSON.stringify(outs)).not.toContain("PRIVATE KEY");
    expect(fs.statSync(key).mode & 0o777).toBe(0o600);
    expect(fs.statSync(path.dirname(key)).mode & 0o777).toBe(0o700);
    expect(fs.readFileSync(`${key}.pub`, "utf8").trim()).toBe(outs.publicKey);
  });

  it("adopts the key that is there (a second create or an update without rotation keeps it)", async () => {
    const first = (await impl.create(inputs)).outs;
    const again = (await impl.create(inputs)).outs;
    expect(again.publicKey).toBe(first.publicKey);
    expect(await impl.diff("x", first, inputs)).toEqual({ changes: false });
  });

  it("rotates on a new generation: a diff, then a new key replacing the old one", async () => {
    const before = (await impl.create(inputs)).outs;
    const next = { ...inputs, generation: 2 };
    expect(await impl.diff("x", before, next)).toEqual({ changes: true });
    const after = (await impl.update("x", before, next)).outs;
    expect(after.publicKey).not.toBe(before.publicKey);
    expect(after.generation).toBe(2);
    expect(fs.readdirSync(path.dirname(key)).sort()).toEqual(["id_ed25519", "id_ed25519.pub"]);
  });

  it("refresh reads the key back; a deleted key is gone, so the next up makes a new one", async () => {
    const { outs } = await impl.create(inputs);
    expect((await impl.read("x", outs)).props).toMatchObject({ publicKey: outs.publicKey });
    fs.rmSync(key);
    expect((await impl.read("x", outs)).id).toBe("");
  });
});
