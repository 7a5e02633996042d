/**
 * The bundles are standalone: each is one executable file needing only node's builtins (the
 * sign-if-logged chain across them: sign-if-logged.test.ts).
 */
import { spawnSync } from "child_process";
import { builtinModules } from "module";
import * as os from "os";
import * as fs from "fs";
import * as path from "path";
import { SERVICE_PROGRAMS } from "../../services/build";
import { buildDist } from "./helpers";

let dist: string;
beforeAll(async () => {
  dist = await buildDist();
});

test("every program is one executable file that needs only node's builtins", () => {
  const builtins = new Set([...builtinModules, ...builtinModules.map((m) => `node:${m}`)]);
  for (const name of Object.keys(SERVICE_PROGRAMS)) {
    const file = path.join(dist, `${name}.js`);
    expect((fs.statSync(file).mode & 0o777).toString(8)).toBe("755");
    const text = fs.readFileSync(file, "utf8");
    expect(text.startsWith("#!/usr/bin/env -S NODE_COMPILE_CACHE=${HOME}/.cache/qubes-build-infra/node node\n")).toBe(true);
    const required = [...text.matchAll(/\brequire\("([^"]+)"\)/g)].map((m) => m[1]);
    expect(required.filter((r) => !builtins.has(r))).toEqual([]);
  }
});

test("a program runs by its shebang, and fills its compile cache in the user's home", () => {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), "qbi-home-"));
  const r = spawnSync(path.join(dist, "gpg-client.js"), ["--export", "0000000000000000000000000000000000000000"], {
    env: { PATH: process.env.PATH, HOME: home, QUBES_GPG_DOMAIN: "keys-x" },
  });
  // No qrexec here: it fails at the call, but only after node ran the bundle.
  expect(r.stderr.toString()).toMatch(/qubes-gpg-client: |spawn qrexec-client-vm ENOENT/);
  expect(fs.readdirSync(path.join(home, ".cache", "qubes-build-infra", "node")).length).toBeGreaterThan(0);
});

test("the build VM's client does not carry zod (it starts on every signature)", () => {
  expect(fs.readFileSync(path.join(dist, "gpg-client.js"), "utf8")).not.toMatch(/ZodError|zod/i);
});
