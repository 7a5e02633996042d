// builder-cleanup: deletes only old regular files directly in its directories (logs; ISO pre-releases).
import * as fs from "fs";
import * as path from "path";
import { cleanup } from "../../services/builder-cleanup";
import { buildDist, runJs, tempDir, writeJson } from "./helpers";

const DAY = 24 * 3600 * 1000;

describe("builder-cleanup", () => {
  it("deletes logs past their age and *pre* ISOs past theirs, nothing else", () => {
    const root = tempDir("cleanup");
    const [logs, iso, outside] = ["logs", "iso", "outside"].map((d) => path.join(root, d));
    for (const d of [logs, iso, outside, path.join(logs, "sub")]) fs.mkdirSync(d, { recursive: true });
    const now = Date.now();
    const file = (p: string, ageDays: number) => {
      fs.writeFileSync(p, "x");
      const t = new Date(now - ageDays * DAY);
      fs.utimesSync(p, t, t);
    };
    file(path.join(logs, "old.log"), 40);
    file(path.join(logs, "new.log"), 3);
    file(path.join(logs, "sub", "old-in-subdir.log"), 40);
    file(path.join(outside, "precious"), 400);
    fs.symlinkSync(path.join(outside, "precious"), path.join(logs, "link-to-outside"));
    // Old enough by age, but a link and a directory: never deleted.
    const old = new Date(now - 400 * DAY);
    fs.lutimesSync(path.join(logs, "link-to-outside"), old, old);
    fs.utimesSync(path.join(logs, "sub"), old, old);
    file(path.join(iso, "Qubes-R4.3-rc1-pre-x86_64.iso"), 10);
    file(path.join(iso, "Qubes-R4.3-x86_64.iso"), 100);
    file(path.join(iso, "Qubes-R4.3-pre2-x86_64.iso"), 2);

    const gone = cleanup({ logDirs: [logs, path.join(root, "missing")], logRetentionDays: 30, isoDirs: [iso], isoRetentionDays: 7 }, now);
    expect(gone).toEqual([path.join(logs, "old.log"), path.join(iso, "Qubes-R4.3-rc1-pre-x86_64.iso")]);
    expect(fs.existsSync(path.join(logs, "new.log"))).toBe(true);
    expect(fs.existsSync(path.join(logs, "sub", "old-in-subdir.log"))).toBe(true);
    expect(fs.existsSync(path.join(outside, "precious"))).toBe(true);
    expect(fs.lstatSync(path.join(logs, "link-to-outside")).isSymbolicLink()).toBe(true);
    expect(fs.existsSync(path.join(iso, "Qubes-R4.3-x86_64.iso"))).toBe(true);
    expect(fs.existsSync(path.join(iso, "Qubes-R4.3-pre2-x86_64.iso"))).toBe(true);
  });

  it("refuses directories outside /home/user (exit 2, naming the key)", async () => {
    const dist = await buildDist();
    const dir = tempDir("cleanup-cfg");
    const config = writeJson(path.join(dir, "builder-cleanup.json"), { logDirs: ["/etc"], logRetentionDays: 30 });
    const r = await runJs(path.join(dist, "builder-cleanup.js"), { env: { QBI_CONFIG: config } });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/logDirs.0: a directory under \/home\/user/);
  }, 60_000);
});
