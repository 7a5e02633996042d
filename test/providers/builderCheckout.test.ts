// BuilderCheckout's implementation with real git and gpg on this machine (the "VM" is a shell
// here, see hostAdmin.ts): what verifies, every way it refuses, and that a refusal leaves the
// previous checkout as it was. The e2e tests run the same code in qubes-sim's VMs.
import { execFileSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { setAdminForTests, setRunConnectionForTests } from "../../providers/impl/admin";
import * as impl from "../../providers/impl/builderCheckout";
import { TestKeyring, TestRepo } from "../helpers/signedRepos";
import { hostAdmin } from "./hostAdmin";

jest.setTimeout(120_000);

const root = fs.mkdtempSync(path.join(os.tmpdir(), "qbi-checkout-"));
const keys = new TestKeyring(path.join(root, "gnupg"));
let good = "";
let other = "";
let expired = "";
let revoked = "";
let repo: TestRepo;
let v1 = "";
let v2 = "";
let unsignedCommit = "";
let host: ReturnType<typeof hostAdmin>;

const fiveDaysAgo = () => new Date(Date.now() - 5 * 86400_000).toISOString().replace(/[-:]/g, "").replace(/\.\d+Z$/, "");

beforeAll(() => {
  good = keys.key("Maintainer <m@example.org>");
  other = keys.key("Other <o@example.org>");
  revoked = keys.key("Revoked <r@example.org>");
  // Made and used five days ago, expired the day after.
  expired = keys.key("Expired <e@example.org>", { expire: "1d", faked: fiveDaysAgo() });
  repo = new TestRepo(root, "builder", keys);
  v1 = repo.commit({ "README": "one\n", "qb": "#!/bin/sh\necho v1\n" }, "v1");
  repo.tag("v1", v1, good);
  v2 = repo.commit({ "qb": "#!/bin/sh\necho v2\n" }, "v2", good);
  repo.tag("v2", v2, good);
  repo.tag("by-other", v2, other);
  repo.tag("by-revoked", v2, revoked);
  repo.tag("by-expired", v1, expired, { faked: fiveDaysAgo() });
  repo.tag("unsigned", v2);
  repo.tag("lightweight", v2, undefined, { lightweight: true });
  unsignedCommit = repo.commit({ "x": "unsigned\n" }, "unsigned commit");
  repo.push();
  keys.revoke(revoked);
  host = hostAdmin({}, ["build-test"]);
  setRunConnectionForTests({ transport: "sim", socket: "/nonexistent" });
  setAdminForTests(() => host);
});
afterAll(() => {
  setAdminForTests(undefined);
  setRunConnectionForTests(undefined);
  keys.close();
  fs.rmSync(root, { recursive: true, force: true });
});

let n = 0;
const inputs = (over: Partial<impl.CheckoutInputs> = {}): impl.CheckoutInputs => ({
  vm: "build-test", dir: path.join(root, `co-${++n}`), url: repo.url, commit: v1, tag: "v1",
  maintainers: [good, revoked, expired], keys: keys.exportPublic(good, revoked, expired), submodules: false, user: "user",
  label: "env test, builder /home/user/b", ...over,
});
const head = (dir: string) => execFileSync("git", ["-C", dir, "rev-parse", "HEAD"]).toString().trim();

describe("BuilderCheckout", () => {
  it("checks out a pin whose signed tag verifies, and reports who signed it", async () => {
    const p = inputs();
    const { outs } = await impl.create(p);
    expect(outs).toMatchObject({ checkedOut: v1, clean: true, verifiedBy: good });
    expect(head(p.dir)).toBe(v1);
    expect(fs.readFileSync(path.join(p.dir, "qb"), "utf8")).toContain("v1");
    // Nothing of the quarantine is left behind: no staging directory, no verify ref.
    expect(fs.readdirSync(root).filter((f) => f.startsWith(".qbi-checkout"))).toEqual([]);
    expect(execFileSync("git", ["-C", p.dir, "for-each-ref"]).toString()).not.toContain("qbi");
  });

  it("verifies a signed commit when no tag is configured", async () => {
    const { outs } = await impl.create(inputs({ commit: v2, tag: undefined }));
    expect(outs).toMatchObject({ checkedOut: v2, verifiedBy: good });
  });

  test.each([
    ["a tag signed by a key that is not among the maintainer keys", { commit: "@v2", tag: "by-other" },
      /tag by-other: signed by a key that is not in the maintainer keys \(ERRSIG, NO_PUBKEY\)/],
    ["a tag signed by a known key that is not an allowed maintainer", { commit: "@v2", tag: "by-other", keysWithOther: true },
      /is signed by [0-9A-F]{40}, which is not an allowed maintainer/],
    ["an unsigned annotated tag", { commit: "@v2", tag: "unsigned" }, /tag unsigned is not signed/],
    ["a lightweight tag", { commit: "@v2", tag: "lightweight" }, /lightweight tag/],
    ["an unsigned commit", { commit: "@unsigned", tag: undefined }, /commit [0-9a-f]{40} is not signed/],
    ["a tag signed by a revoked key", { commit: "@v2", tag: "by-revoked" }, /signed by a revoked key/],
    ["a tag signed by an expired key", { commit: "@v1", tag: "by-expired" }, /signed by an expired key/],
    ["a tag that points elsewhere than the pin", { commit: "@v1", tag: "v2" }, /tag v2 points at [0-9a-f]{40}, not at the pinned commit/],
    ["a pin that does not exist", { commit: "0123456789abcdef0123456789abcdef01234567", tag: undefined }, /has no commit 0123456789abcdef/],
    ["a tag that does not exist", { tag: "v9" }, /has no tag v9/],
    ["a repository that moved away", { url: "file:///nonexistent/qubes-builderv2.git" }, /cannot reach file:\/\/\/nonexistent/],
  ])("refuses %s, naming where and why, and checks out nothing", async (_name, over, message) => {
    const { keysWithOther, ...o } = over as Partial<impl.CheckoutInputs> & { keysWithOther?: boolean };
    // Commits are made in beforeAll: the table names them.
    const named: Record<string, string> = { "@v1": v1, "@v2": v2, "@unsigned": unsignedCommit };
    const p = inputs({
      ...o,
      ...(o.commit && named[o.commit] ? { commit: named[o.commit] } : {}),
      ...(keysWithOther ? { keys: keys.exportPublic(good, other) } : {}),
    });
    const err = await impl.create(p).then(() => null, (e: Error) => e);
    expect(err?.message).toMatch(message);
    expect(err?.message).toMatch(/^BuilderCheckout \(env test, builder \/home\/user\/b\) build-test:/);
    expect(err?.message).toMatch(/nothing was checked out/);
    expect(fs.existsSync(p.dir)).toBe(false);
    expect(fs.readdirSync(root).filter((f) => f.startsWith(".qbi-checkout"))).toEqual([]);
  });

  it("a refused pin change keeps the previous checkout; an accepted one updates in place, keeping untracked files", async () => {
    const p = inputs();
    const { outs } = await impl.create(p);
    fs.writeFileSync(path.join(p.dir, "builder.conf"), "untracked, written by the site\n");
    const bad = { ...p, commit: v2, tag: "by-other" };
    await expect(impl.update(`x`, outs, bad)).rejects.toThrow(/the previous checkout \(commit [0-9a-f]{40}\) is left in place/);
    expect(head(p.dir)).toBe(v1);
    expect(fs.readFileSync(path.join(p.dir, "qb"), "utf8")).toContain("v1");

    expect(await impl.diff("x", outs, { ...p, commit: v2, tag: "v2" })).toEqual({ changes: true });
    const up = await impl.update("x", outs, { ...p, commit: v2, tag: "v2" });
    expect(up.outs).toMatchObject({ checkedOut: v2, clean: true });
    expect(fs.readFileSync(path.join(p.dir, "qb"), "utf8")).toContain("v2");
    expect(fs.readFileSync(path.join(p.dir, "builder.conf"), "utf8")).toContain("untracked");
  });

  it("runs nothing from the working copy's .git: a planted hook does not run on update", async () => {
    const p = inputs();
    const { outs } = await impl.create(p);
    const marker = path.join(root, "hook-ran");
    fs.mkdirSync(path.join(p.dir, ".git", "hooks"), { recursive: true });
    for (const h of ["post-checkout", "reference-transaction", "pre-auto-gc"]) {
      fs.writeFileSync(path.join(p.dir, ".git", "hooks", h), `#!/bin/sh\ntouch ${marker}\n`, { mode: 0o755 });
    }
    execFileSync("git", ["-C", p.dir, "config", "core.hooksPath", path.join(p.dir, ".git", "hooks")]);
    await impl.update("x", outs, { ...p, commit: v2, tag: "v2" });
    expect(fs.existsSync(marker)).toBe(false);
  });

  it("refresh finds another commit or modified tracked files, and the next update restores the pin", async () => {
    const p = inputs();
    const { outs } = await impl.create(p);
    expect(await impl.diff("x", outs, p)).toEqual({ changes: false });
    fs.appendFileSync(path.join(p.dir, "qb"), "echo tampered\n");
    const r1 = await impl.read("x", outs);
    expect(r1.props).toMatchObject({ checkedOut: v1, clean: false });
    expect(await impl.diff("x", r1.props, p)).toEqual({ changes: true });
    execFileSync("git", ["-C", p.dir, "fetch", "-q", repo.url, "main"]);
    execFileSync("git", ["-C", p.dir, "checkout", "-q", "--force", "--detach", unsignedCommit]);
    const r2 = await impl.read("x", outs);
    expect(r2.props).toMatchObject({ checkedOut: unsignedCommit });
    const fixed = await impl.update("x", r2.props, p);
    expect(fixed.outs).toMatchObject({ checkedOut: v1, clean: true });
    expect(fs.readFileSync(path.join(p.dir, "qb"), "utf8")).not.toContain("tampered");
    fs.rmSync(p.dir, { recursive: true });
    expect((await impl.read("x", outs)).id).toBe("");
  });

  it("refuses a directory that holds something else", async () => {
    const p = inputs();
    fs.mkdirSync(p.dir);
    fs.writeFileSync(path.join(p.dir, "precious"), "x");
    await expect(impl.create(p)).rejects.toThrow(/exists and is not a git checkout/);
    expect(fs.readdirSync(p.dir)).toEqual(["precious"]);
  });

  it("checks out the submodules the verified commit pins, only after verification", async () => {
    const sub = new TestRepo(root, "mirrors", keys);
    const s1 = sub.commit({ "mkmetalink": "#!/bin/sh\n" }, "s1");
    sub.push();
    const sup = new TestRepo(root, "super", keys);
    sup.commit({ "README": "super\n" }, "base");
    sup.git("-c", "protocol.file.allow=always", "submodule", "add", "-q", sub.url, "plugins/mirrors");
    const c = sup.commit({}, "with the mirrors submodule");
    sup.tag("s", c, good);
    sup.push();
    const p = inputs({ url: sup.url, commit: c, tag: "s", submodules: true });
    await impl.create(p);
    expect(head(path.join(p.dir, "plugins", "mirrors"))).toBe(s1);
    // The same repository with an unverified pin: not even the submodule is fetched.
    const q = inputs({ url: sup.url, commit: c, tag: "s", submodules: true, maintainers: [other] });
    await expect(impl.create(q)).rejects.toThrow(/not an allowed maintainer/);
    expect(fs.existsSync(q.dir)).toBe(false);
  });
});

describe("judge (the decision alone)", () => {
  const base = {
    type: "tag", tagHeader: { object: "a".repeat(40), type: "commit", tag: "v1" }, target: "a".repeat(40), verifyExit: 0, repo: { existing: true as const },
  };
  const fpr = "F".repeat(40);
  const valid = `[GNUPG:] VALIDSIG ${"1".repeat(40)} 2026-01-01 1 0 4 0 22 10 00 ${fpr}`;
  const p = { commit: "a".repeat(40), tag: "v1", maintainers: [fpr] };
  it("accepts one good signature by a maintainer's primary key (a subkey made it)", () => {
    expect(impl.judge(p, { ...base, status: ["[GNUPG:] NEWSIG", `[GNUPG:] GOODSIG 1111 M`, valid, "[GNUPG:] TRUST_UNDEFINED 0 pgp"] })).toBe(fpr);
  });
  it("refuses two signatures, a refusing keyword next to a good one, and a renamed tag", () => {
    expect(() => impl.judge(p, { ...base, status: ["[GNUPG:] GOODSIG 1 M", valid, "[GNUPG:] GOODSIG 2 N", valid] })).toThrow(/exactly one good signature/);
    expect(() => impl.judge(p, { ...base, status: ["[GNUPG:] GOODSIG 1 M", valid, "[GNUPG:] KEYREVOKED"] })).toThrow(/revoked/);
    expect(() => impl.judge(p, { ...base, tagHeader: { ...base.tagHeader, tag: "v0" }, status: ["[GNUPG:] GOODSIG 1 M", valid] })).toThrow(/names itself "v0"/);
    expect(() => impl.judge(p, { ...base, verifyExit: 1, status: ["[GNUPG:] GOODSIG 1 M", valid] })).toThrow(/git refused/);
  });
});
