// Which stacks a fleet run covers (fleet/spec.ts) and the fleet command line (fleet/cli.ts).
import * as fs from "fs";
import * as path from "path";
import { parseArgs } from "../../fleet/cli";
import { specFromFile, specFromList } from "../../fleet/spec";
import { projectRoot, tempDir } from "../helpers/pulumi";

describe("fleet specs", () => {
  it("reads --stacks", () => {
    expect(specFromList("machine-a, machine-b", "/p")).toEqual({
      stacks: [{ name: "machine-a" }, { name: "machine-b" }], parallel: 2, policyPacks: ["/p/policy"],
    });
    expect(specFromList("a,b,c", "/p", 1).parallel).toBe(1);
    expect(() => specFromList(" , ", "/p")).toThrow("--stacks: give at least one stack name, comma-separated");
    expect(() => specFromList("a,a", "/p")).toThrow("--stacks: stack a is listed twice");
    expect(() => specFromList("a,b c", "/p")).toThrow(`--stacks: "b c": a stack name: letters, digits, '_', '.', '-'`);
  });

  it("reads a fleet file, paths relative to it", () => {
    const text = "stacks:\n  - machine-a\n  - stack: machine-b\n    passphraseFile: secrets/b.passphrase\nparallel: 1\npolicyPackConfig: policy.json\n";
    expect(specFromFile(text, "/etc/qbi/fleet.yaml", "/p")).toEqual({
      stacks: [{ name: "machine-a" }, { name: "machine-b", passphraseFile: "/etc/qbi/secrets/b.passphrase" }],
      parallel: 1,
      policyPacks: ["/p/policy"],
      policyPackConfig: "/etc/qbi/policy.json",
    });
    expect(specFromFile("stacks: [a]\npolicyPacks: [packs/one, /abs/two]\n", "/etc/f.yaml", "/p").policyPacks).toEqual(["/etc/packs/one", "/abs/two"]);
  });

  it("names the file, line and field of a bad fleet file", () => {
    expect(() => specFromFile("stacks:\n  - a\n  - stack: b\n    passphrase: x\n", "fleet.yaml", "/p"))
      .toThrow(/^fleet\.yaml:3: stacks\.1: /);
    expect(() => specFromFile("stacks:\n  - a\nparallel: 0\n", "fleet.yaml", "/p")).toThrow(/^fleet\.yaml:3: parallel: Too small/);
    expect(() => specFromFile("stacks: []\n", "fleet.yaml", "/p")).toThrow("fleet.yaml:1: stacks: at least one stack");
    expect(() => specFromFile("stacks:\n  - a\n  - a\n", "fleet.yaml", "/p")).toThrow("fleet.yaml: stack a is listed twice");
    expect(() => specFromFile("stacks: [a\n", "fleet.yaml", "/p")).toThrow(/^fleet\.yaml:\d+: not YAML: /);
    expect(() => specFromFile("stack: [a]\n", "fleet.yaml", "/p")).toThrow(/^fleet\.yaml:1: /);
  });
});

describe("fleet command line", () => {
  const dir = tempDir("fleet-cli");
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it("takes preview|up with --stacks or --file, --parallel and --json", () => {
    expect(parseArgs(["up", "--stacks", "a,b", "--parallel", "1", "--json"])).toEqual({
      mode: "up", json: true, spec: { stacks: [{ name: "a" }, { name: "b" }], parallel: 1, policyPacks: [path.join(projectRoot, "policy")] },
    });
    const file = path.join(dir, "fleet.yaml");
    fs.writeFileSync(file, "stacks: [a]\n");
    expect(parseArgs(["preview", `--file=${file}`])).toMatchObject({ mode: "preview", json: false, spec: { stacks: [{ name: "a" }] } });
  });

  it("says what is wrong with a command line", () => {
    expect(parseArgs([])).toBe("preview or up?");
    expect(parseArgs(["destroy", "--stacks", "a"])).toBe("unknown fleet command destroy: preview or up");
    expect(parseArgs(["up"])).toBe("give the stacks with either --stacks a,b or --file fleet.yaml");
    expect(parseArgs(["up", "--stacks", "a", "--file", "f.yaml"])).toBe("give the stacks with either --stacks a,b or --file fleet.yaml");
    expect(parseArgs(["up", "--stacks"])).toBe("--stacks needs a value");
    expect(parseArgs(["up", "--stacks", "--json"])).toBe("--stacks needs a value");
    expect(parseArgs(["up", "--stacks", "a", "--parallel", "0"])).toBe("--parallel 0: a whole number from 1 to 64");
    expect(parseArgs(["up", "--stacks", "a", "--yes"])).toBe("unexpected argument --yes");
    expect(parseArgs(["up", "--file", path.join(dir, "missing.yaml")])).toMatch(/^--file .*missing\.yaml: ENOENT/);
  });
});
