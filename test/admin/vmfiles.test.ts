// The VM file-write script run with sh on this machine: directories it creates belong to the
// file's owner (needs root for chown; reported as skipped otherwise).
import { execFileSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { writeFileScript } from "../../admin/vmfiles";

const root = process.getuid?.() === 0;
(root ? it : it.skip)(`${root ? "" : "NOT RUN (needs root for chown): "}a user's file in new directories: those directories are the user's, existing ones are left`, () => {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), "qbi-vmfiles-"));
  try {
    const file = path.join(d, "home", ".config", "qubes-builder-github", "builders.list");
    fs.mkdirSync(path.join(d, "home"));
    execFileSync("sh", ["-c", writeFileScript(file, 0o640, "nobody")], { input: "r4.2=/x\n", env: { ...process.env, QUBES_SIM_VM: "" } });
    const owner = (p: string) => fs.statSync(p).uid;
    const nobody = Number(execFileSync("id", ["-u", "nobody"]).toString());
    expect([owner(path.join(d, "home")), owner(path.join(d, "home", ".config")), owner(path.dirname(file)), owner(file)]).toEqual([0, nobody, nobody, nobody]);
    expect(fs.statSync(file).mode & 0o777).toBe(0o640);
    expect(fs.readFileSync(file, "utf8")).toBe("r4.2=/x\n");
  } finally {
    fs.rmSync(d, { recursive: true, force: true });
  }
});
