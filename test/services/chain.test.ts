/**
 * The bundles are standalone: each is one executable file needing only node's builtins (the
 * sign-if-logged chain across them: sign-if-logged.test.ts).
 */
import { builtinModules } from "module";
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
    expect(text.startsWith("#!/usr/bin/env node\n")).toBe(true);
    const required = [...text.matchAll(/\brequire\("([^"]+)"\)/g)].map((m) => m[1]);
    expect(required.filter((r) => !builtins.has(r))).toEqual([]);
  }
});
