/**
 * The entry check that `verify-log` and the keys VMs run on every logged entry: only the one
 * canonical encoding of a schema v1 entry is accepted, and every other byte string is refused
 * with the reason (not JSON, not schema v1, not canonical). The malleated variants are compared
 * with the plain definition (parse, validate, re-serialise and compare), so a faster check
 * cannot accept what the definition refuses or word a refusal differently.
 */
import { checkEntries, entriesOut } from "../../audit/entries";
import { LogEntry, canonicalJson, parseEntry } from "../../contracts/transparencyLog";

const hex = (c: string) => c.repeat(64);
const prefix = { v: 1, kind: "log-prefix", time: "2026-01-02T03:04:05.678Z", vm: "build-a", env: "a", path: "build-a/d/log_01", contentSha256: hex("a"), contentSize: 4096 };
const request = { v: 1, kind: "signature-request", time: "2026-01-02T03:04:05Z", vm: "build-a", env: "a", signer: "keys-a", key: "default", sha256: hex("b"), size: 1, logs: [0, 7] };
const final = { v: 1, kind: "build-log", time: "2026-01-02T03:04:05Z", vm: "build-a", env: "a", path: "build-a/d/log_01.xz", sha256: hex("c"), size: 10,
  contentSha256: hex("d"), contentSize: 12, commit: "e".repeat(40), ended: "cut at 1 MiB" };

/** The definition: JSON, schema v1, and the bytes are the UTF-8 of the entry's canonical JSON. */
function definition(bytes: Buffer): string {
  const text = bytes.toString("utf8");
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return "entry is not JSON";
  }
  const r = LogEntry.safeParse(raw);
  if (!r.success) return `entry does not match schema v1: ${r.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`;
  if (!Buffer.from(canonicalJson(r.data), "utf8").equals(bytes)) return "entry is not in canonical form";
  return "ok";
}

function outcome(bytes: Buffer | string): string {
  try {
    parseEntry(bytes);
    return "ok";
  } catch (e) {
    return (e as Error).message;
  }
}

const canonical = (e: unknown) => canonicalJson(e);

test("the canonical encoding of each kind is accepted, as bytes and as text", () => {
  for (const e of [prefix, request, final, { ...final, ended: undefined }, { ...prefix, env: "é ü \u2028 \" \\ \n" }]) {
    const text = canonical(e);
    expect(outcome(Buffer.from(text))).toBe("ok");
    expect(outcome(text)).toBe("ok");
    expect(parseEntry(text)).toEqual(JSON.parse(text));
  }
});

test("each malleated variant is refused with the reason the definition gives", () => {
  const t = canonical(prefix);
  const variants: [string, string][] = [
    [`${t} `, "entry is not in canonical form"],
    [`${t}\n`, "entry is not in canonical form"],
    [` ${t}`, "entry is not in canonical form"],
    [t.replace('"v":1', '"v": 1'), "entry is not in canonical form"],
    [t.replace('"v":1', '"v":1.0'), "entry is not in canonical form"],
    [t.replace('"contentSize":4096', '"contentSize":4.096e3'), "entry is not in canonical form"],
    [t.replace('"build-a"', '"build\\u002da"'), "entry is not in canonical form"],
    [t.replace('"env":"a"', '"env":"\\u0061"'), "entry is not in canonical form"],
    [t.replace("}", ',"v":1}'), "entry is not in canonical form"],
    [`{"v":1,${t.slice(1).replace(',"v":1', "")}`, "entry is not in canonical form"],
    [canonical({ ...prefix, env: "\u00e9" }).replace("\u00e9", "\\u00e9"), "entry is not in canonical form"],
    [canonical({ ...prefix, env: "\ud800" }).replace("\\ud800", "\\uD800"), "entry is not in canonical form"],
    [`\ufeff${t}`, "entry is not JSON"],
    [t.slice(0, -1), "entry is not JSON"],
    ["", "entry is not JSON"],
    [t.replace("}", ',"extra":1}'), "entry does not match schema v1: : Unrecognized key: \"extra\""],
    [canonical({ ...prefix, v: 2 }), "entry does not match schema v1: v: Invalid input: expected 1"],
    [canonical({ ...prefix, contentSize: -1 }), "entry does not match schema v1: contentSize: Too small: expected number to be >=0"],
  ];
  for (const [text, want] of variants) {
    expect([text, outcome(Buffer.from(text))]).toEqual([text, definition(Buffer.from(text))]);
    expect([text, outcome(Buffer.from(text))]).toEqual([text, want]);
  }
  // A lone surrogate has one canonical spelling (lower-case escape), which is accepted.
  expect(outcome(canonical({ ...prefix, env: "\ud800" }))).toBe("ok");
});

test("bytes that are not UTF-8 are refused, though they decode to the text of a valid entry", () => {
  const t = canonical({ ...prefix, env: "\u00e9" });
  const at = Buffer.from(t).indexOf(Buffer.from("\u00e9"));
  for (const bad of [[0xff], [0xc3], [0xc3, 0xa9, 0xa9], [0xf0, 0x9f, 0x98], [0xc0, 0xaf], [0xed, 0xa0, 0x80]]) {
    const bytes = Buffer.concat([Buffer.from(t).subarray(0, at), Buffer.from(bad), Buffer.from(t).subarray(at + 2)]);
    expect(outcome(bytes.toString("utf8"))).toBe("ok");
    expect(outcome(bytes)).toBe("entry is not in canonical form");
    expect(definition(bytes)).toBe("entry is not in canonical form");
  }
  expect(outcome(Buffer.from(t))).toBe("ok");
});

test("each field out of bounds, of the wrong type, missing or unknown is refused as zod words it", () => {
  const wrong: unknown[] = [{}, [], null, true, "", -1, 1.5, 2 ** 53, "x".repeat(513), ".", "a/../b", "a/./b", "a/b/", "A".repeat(40), "win:", "win:k",
    "2026-02-30T00:00:00Z", "2026-01-02T03:04:05+01:00", "2026-01-02 03:04:05Z", "é".repeat(64), "é".repeat(65), "x".repeat(200), "x".repeat(201),
    [0], [-1], [1.5], Array.from({ length: 64 }, (_v, i) => i), Array.from({ length: 65 }, (_v, i) => i), "1", 1, 2];
  let checked = 0;
  for (const e of [prefix, request, final] as Record<string, unknown>[]) {
    for (const k of [...Object.keys(e), "extra", "__proto__", "constructor"]) {
      for (const w of [...wrong, undefined]) {
        const text = canonical({ ...e, [k]: w });
        expect([text, outcome(text)]).toEqual([text, definition(Buffer.from(text))]);
        checked++;
      }
    }
    const { ended: _ended, ...rest } = e;
    expect(outcome(canonical(rest))).toBe(definition(Buffer.from(canonical(rest))));
  }
  expect(checked).toBeGreaterThan(1000);
});

test("random single-byte edits of canonical entries get exactly the definition's verdict", () => {
  let seed = 42;
  const rand = (n: number) => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed % n;
  };
  const alphabet = Buffer.from(' {}[]",:.-+0123456789eE\\u/abcdefvlkindtimeT\n\t');
  let refused = 0;
  for (const e of [prefix, request, final]) {
    const good = Buffer.from(canonical(e));
    for (let i = 0; i < 1500; i++) {
      const at = rand(good.length);
      const c = alphabet[rand(alphabet.length)];
      const op = rand(3);
      const bad = op === 0 ? Buffer.concat([good.subarray(0, at), Buffer.from([c]), good.subarray(at)])
        : op === 1 ? Buffer.concat([good.subarray(0, at), good.subarray(at + 1)])
          : Buffer.concat([good.subarray(0, at), Buffer.from([c]), good.subarray(at + 1)]);
      const want = definition(bad);
      if (want !== "ok") refused++;
      expect([bad.toString(), outcome(bad)]).toEqual([bad.toString(), want]);
    }
  }
  expect(refused).toBeGreaterThan(3000);
});

test("checkEntries reports each refused entry by index and keeps checking the rest", () => {
  const raw = [canonical(prefix), `${canonical(prefix)} `, Buffer.from(canonical({ ...request, logs: [0] })), "{"];
  const r = checkEntries(raw);
  expect(r.problems).toEqual([
    { index: 1, message: "entry is not in canonical form" },
    { index: 3, message: "entry is not JSON" },
  ]);
  expect(r.counts).toEqual({ "build-log": 0, "log-prefix": 1, "signature-request": 1 });
});

/** What `qbi-tlog verify --entries-out` writes for these entries. */
const entriesFile = (entries: Buffer[]) => Buffer.from(entries.map((e, i) => `{"index":${i},"entry":"${e.toString("base64")}"}\n`).join(""));

test("entriesOut gives back each entry's exact bytes: as text when all are ASCII, else as bytes", () => {
  const ascii = [Buffer.from(canonical(prefix)), Buffer.from(""), Buffer.from("a\nb"), Buffer.from(canonical(request))];
  expect(entriesOut(entriesFile(ascii))).toEqual(ascii.map((b) => b.toString("latin1")));
  const mixed = [...ascii, Buffer.from(canonical({ ...prefix, env: "\u00e9" })), Buffer.from([0xff, 0x0a, 0x00])];
  expect(entriesOut(entriesFile(mixed))).toEqual(mixed);
  expect(entriesOut(Buffer.alloc(0))).toEqual([]);
  const tails = Array.from({ length: 8 }, (_v, n) => Buffer.from([0xfb, 0xef, 0xbe, 0x00, 0xff, 0x3e, 0x3f, 0x80].slice(0, n)));
  expect(entriesOut(entriesFile(tails))).toEqual(tails);
});

test("entriesOut refuses a line that is not the tool's, or out of order", () => {
  const good = entriesFile([Buffer.from("x"), Buffer.from("y")]);
  const cases: [string, string][] = [
    [good.toString().replace('"index":1', '"index":2'), "line 2"],
    [good.toString().replace('"index":0', '"index":'), "line 1"],
    [good.toString().slice(0, -1), "line 2"],
    [good.toString().replace('{"index":1,', '{"index": 1,'), "line 2"],
    [good.toString().replace('"entry":"eA=="', '"entry":1'), "line 1"],
    [`${good.toString()}\n`, "line 3"],
    [good.toString().replace('"entry":"eA=="', '"entry":"eA="'), "line 1"],
    [good.toString().replace('"entry":"eA=="', '"entry":"e A="'), "line 1"],
    [good.toString().replace('"entry":"eA=="', '"entry":"=A=="'), "line 1"],
    [good.toString().replace('"entry":"eA=="', '"entry":"eA==eA=="'), "line 1"],
    [good.toString().replace('"entry":"eA=="', '"entry":"eA=x"'), "line 1"],
  ];
  for (const [text, line] of cases) expect(() => entriesOut(Buffer.from(text))).toThrow(`--entries-out ${line}: not {"index":`);
});

test("checkEntries: links and order problems, each with its entry, unreadable entries first", () => {
  const p = (vm: string, file: string) => canonical({ ...prefix, vm, path: `${vm}/d/${file}` });
  const req = (logs: number[], vm = "build-a") => canonical({ ...request, vm, logs });
  const fin = (file: string) => canonical({ ...final, path: `build-a/d/${file}` });
  const raw = [
    p("build-a", "log_1"), // 0
    "not json", // 1
    p("build-b", "log_2"), // 2
    req([0, 1, 2, 3, 9]), // 3: unreadable 1, another VM's 2, itself 3, later 9
    req([3], "build-a"), // 4: a request
    canonical({ ...prefix, vm: "build-b", path: "build-a/d/log_3" }), // 5: another VM's log
    fin("log_1.xz"), // 6: final of build-a/d/log_1
    p("build-a", "log_1"), // 7: prefix after the final
    `${p("build-a", "log_4")} `, // 8
    req([7, 6, 0]), // 9
  ];
  const r = checkEntries(raw);
  expect(r.problems).toEqual([
    { index: 1, message: "entry is not JSON" },
    { index: 8, message: "entry is not in canonical form" },
    { index: 3, message: "signature request points at entry 1, which is unreadable" },
    { index: 3, message: "signature request of build-a points at entry 2, a log of build-b" },
    { index: 3, message: "signature request points at entry 3, which is not earlier" },
    { index: 3, message: "signature request points at entry 9, which is not earlier" },
    { index: 4, message: "signature request points at entry 3, another signature request" },
    { index: 5, message: "log-prefix of build-b names a log of another VM (build-a/d/log_3)" },
    { index: 7, message: "prefix of build-a/d/log_1 logged after the session's final log (entry 6)" },
  ]);
  expect(r.counts).toEqual({ "build-log": 1, "log-prefix": 4, "signature-request": 3 });
  expect(r.buildLogs.map((b) => b.index)).toEqual([6]);
  expect([...r.prefixes].map(([k, v]) => [k, v.map((x) => x.index)])).toEqual([["build-a/d/log_1", [0, 7]], ["build-b/d/log_2", [2]], ["build-a/d/log_3", [5]]]);
});
