// builders.list (contracts/buildersList.ts): what the site writes, the build VM's services read back.
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { BuildersListError, parseBuildersList, renderBuildersList, type BuildersListEntry } from "../../contracts/buildersList";
import { readBuildersList } from "../../services/lib/builders";
import { ConfigError } from "../../services/lib/outcome";

const ENTRIES: BuildersListEntry[] = [
  { release: "4.2", builderDir: "/home/user/builder-r4.2" },
  { release: "4.3", builderDir: "/home/user/qubes-builderv2", conf: "/home/user/artifacts-r4.3/builder.yml" },
  { release: "4.10", builderDir: "/home/user/qubes-builderv2", conf: "/home/user/artifacts-r4.10/builder.yml" },
];

test("what is rendered parses back to the same builders", () => {
  const text = renderBuildersList(ENTRIES);
  expect(text).toBe("r4.2=/home/user/builder-r4.2\nr4.3=/home/user/qubes-builderv2=/home/user/artifacts-r4.3/builder.yml\n"
    + "r4.10=/home/user/qubes-builderv2=/home/user/artifacts-r4.10/builder.yml\n");
  expect(parseBuildersList(text)).toEqual([
    { release: "4.2", builderDir: "/home/user/builder-r4.2", dir: "/home/user/builder-r4.2", conf: "", version: 1 },
    { release: "4.3", builderDir: "/home/user/qubes-builderv2", dir: "/home/user/artifacts-r4.3", conf: "/home/user/artifacts-r4.3/builder.yml", version: 2 },
    { release: "4.10", builderDir: "/home/user/qubes-builderv2", dir: "/home/user/artifacts-r4.10", conf: "/home/user/artifacts-r4.10/builder.yml", version: 2 },
  ]);
  expect(parseBuildersList(renderBuildersList([]))).toEqual([]);
});

test("blank lines, white space around a line and comments are ignored", () => {
  expect(parseBuildersList("# builders\n\n  r4.2=/b  \n")).toEqual([{ release: "4.2", builderDir: "/b", dir: "/b", conf: "", version: 1 }]);
});

test.each([
  ["a relative dir", "r4.2=relative/dir"],
  ["no r", "4.2=/b"],
  ["a release that is not a number", "rmain=/b"],
  ["a space in a path", "r4.2=/b c"],
  ["a relative builder.yml", "r4.2=/b=builder.yml"],
  ["a fourth field", "r4.2=/b=/c=/d"],
])("a line with %s is refused, naming the line and the format", (_what, line) => {
  let err: unknown;
  try {
    parseBuildersList(`r4.1=/ok\n${line}\n`);
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(BuildersListError);
  expect((err as BuildersListError).lineNumber).toBe(2);
  expect((err as BuildersListError).line).toBe(line);
  expect((err as Error).message).toBe("builders.list line 2: expected r<release>=<absolute builder dir>[=<absolute builder.yml path>]");
});

test("an entry the reader would refuse is never written", () => {
  expect(() => renderBuildersList([{ release: "4.2", builderDir: "/b=x" }])).toThrow(BuildersListError);
  expect(() => renderBuildersList([{ release: "4.2", builderDir: "/b", conf: "rel/builder.yml" }])).toThrow(/line 1/);
  expect(() => renderBuildersList([{ release: "4.2\nr4.3", builderDir: "/b" }])).toThrow(BuildersListError);
});

test("the services read the file with it, a bad line being a configuration error printed escaped", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "qbi-builders-"));
  try {
    const file = path.join(dir, "builders.list");
    fs.writeFileSync(file, renderBuildersList(ENTRIES));
    expect(readBuildersList(file)).toEqual(parseBuildersList(renderBuildersList(ENTRIES)));
    fs.writeFileSync(file, "r4.2=b\x1b[31m\n");
    expect(() => readBuildersList(file)).toThrow(ConfigError);
    expect(() => readBuildersList(file)).toThrow(/^bad builders\.list line: r4\.2=b/);
    try {
      readBuildersList(file);
    } catch (e) {
      expect((e as Error).message).not.toContain("\x1b");
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
