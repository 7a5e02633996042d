import * as fc from "fast-check";
import { parsePolicyFile, parseServicePolicyFile, PolicyError } from "../../qrexec";

function one(line: string) {
  return parsePolicyFile(line + "\n", "t.policy");
}

function firstError(line: string): PolicyError | undefined {
  return one(line).errors[0];
}

describe("parser: valid constructs", () => {
  test.each([
    ["qubes.Filecopy * work personal allow"],
    ["qubes.Filecopy * work personal deny"],
    ["qubes.Filecopy * work personal ask"],
    ["qubes.Gpg +key work gpg allow"],
    ["qubes.Gpg + work gpg allow"],
    ["qubes.Gpg +a+b.c_d-e work gpg allow"],
    ["* * @anyvm @anyvm deny"],
    ["* * * * deny"],
    ["qubes.X * @adminvm @anyvm allow"],
    ["qubes.X * dom0 @adminvm allow"],
    ["qubes.X * @anyvm @default allow target=gpg"],
    ["qubes.X * @anyvm @default ask"],
    ["qubes.X * @anyvm @default ask default_target=gpg"],
    ["qubes.X * @anyvm @dispvm allow"],
    ["qubes.X * @anyvm @dispvm:default-dvm allow"],
    ["qubes.X * @anyvm @dispvm:@tag:ok allow"],
    ["qubes.X * @dispvm:default-dvm work allow"],
    ["qubes.X * @dispvm:@tag:ok work allow"],
    ["qubes.X * @tag:work @tag:work allow"],
    ["qubes.X * @type:AppVM @type:TemplateVM allow"],
    ["qubes.X * uuid:11111111-2222-3333-4444-555555555555 uuid:00000000-0000-0000-0000-000000000000 allow"],
    ["qubes.X * work gpg allow target=@dispvm"],
    ["qubes.X * work gpg allow target=@dispvm:default-dvm"],
    ["qubes.X * work gpg allow target=@adminvm"],
    ["qubes.X * work gpg allow target=dom0 user=root notify=yes autostart=no"],
    ["qubes.X * work gpg ask target=gpg default_target=gpg user=user notify=no autostart=yes"],
    ["qubes.X * work gpg deny notify=no"],
    ["   qubes.X\t*  work\tgpg   allow   "],
  ])("%s", (line) => {
    const r = one(line);
    expect(r.errors).toEqual([]);
    expect(r.rules).toHaveLength(1);
    expect(r.rules[0].line).toBe(1);
    expect(r.rules[0].file).toBe("t.policy");
  });

  test("fields and params are structured", () => {
    const r = one("qubes.Gpg +k work @default ask target=gpg default_target=gpg user=u notify=yes autostart=no");
    expect(r.rules[0]).toEqual({
      service: "qubes.Gpg",
      argument: "+k",
      source: "work",
      target: "@default",
      action: "ask",
      params: { target: "gpg", default_target: "gpg", user: "u", notify: true, autostart: false },
      file: "t.policy",
      line: 1,
    });
  });

  test("comments, blank lines and line numbers (LF, CRLF, CR)", () => {
    const r = parsePolicyFile("# c\n\n  # indented\r\nqubes.A * a b allow\r\rqubes.B * a b deny\n", "f.policy");
    expect(r.errors).toEqual([]);
    expect(r.rules.map((x) => [x.service, x.line])).toEqual([["qubes.A", 4], ["qubes.B", 6]]);
  });

  test("directives are structured and kept in order with rules", () => {
    const r = parsePolicyFile(
      "!include include/a\nqubes.A * a b allow\n!include-dir include/d\n!include-service qubes.S +x include/s\n!compat-4.0\n",
      "f.policy",
    );
    expect(r.errors).toEqual([]);
    expect(r.statements.map((s) => s.kind)).toEqual(["include", "rule", "include-dir", "include-service", "compat-4.0"]);
    expect(r.directives[2]).toEqual({ kind: "include-service", service: "qubes.S", argument: "+x", path: "include/s", file: "f.policy", line: 4 });
  });
});

describe("parser: validity rules (error names what was expected)", () => {
  test.each<[string, number, RegExp]>([
    ["qubes.X * work", 1, /expected at least 5 fields/],
    ["qubes.X+arg * work gpg allow", 1, /must not contain '\+'/],
    ["qubes/X * work gpg allow", 1, /invalid service/],
    ["qubes.X arg work gpg allow", 9, /expected \* or \+ARGUMENT/],
    ["qubes.X +a/b work gpg allow", 9, /after '\+' only/],
    ["* +arg work gpg allow", 3, /only \* argument allowed for \* service/],
    ["qubes.X * @default gpg allow", 11, /not allowed as source/],
    ["qubes.X * @dispvm gpg allow", 11, /not allowed as source/],
    ["qubes.X * @foo gpg allow", 11, /unknown keyword/],
    ["qubes.X * @tag: gpg allow", 11, /empty value after @tag:/],
    ["qubes.X * @dispvm:@foo:x gpg allow", 11, /unknown keyword after @dispvm:/],
    ["qubes.X * 1work gpg allow", 11, /invalid qube name/],
    ["qubes.X * work none allow", 16, /cannot be "none"/],
    ["qubes.X * work default allow", 16, /cannot be "default"/],
    ["qubes.X * work Domain-0 allow", 16, /Domain-0/],
    ["qubes.X * work foo-dm allow", 16, /cannot end with -dm/],
    ["qubes.X * work " + "a".repeat(32) + " allow", 16, /longer than 31/],
    ["qubes.X * work uuid:XYZ allow", 16, /invalid uuid token/],
    ["qubes.X * work gpg permit", 20, /expected allow, deny or ask/],
    ["qubes.X * work gpg allow target=@anyvm", 26, /not allowed as redirect target/],
    ["qubes.X * work gpg allow target=@tag:x", 26, /not allowed as redirect target/],
    ["qubes.X * work gpg allow target=@type:AppVM", 26, /not allowed as redirect target/],
    ["qubes.X * work gpg allow target=@default", 26, /not allowed as redirect target/],
    ["qubes.X * work gpg allow target=", 26, /empty token/],
    ["qubes.X * work gpg ask default_target=@anyvm", 24, /not allowed as redirect target/],
    ["qubes.X * work gpg allow default_target=gpg", 26, /default_target= is not valid for allow \(only for ask\)/],
    ["qubes.X * work gpg deny target=gpg", 25, /not valid for deny.*deny takes notify=/],
    ["qubes.X * work gpg deny user=root", 25, /not valid for deny/],
    ["qubes.X * work gpg deny autostart=no", 25, /not valid for deny/],
    ["qubes.X * work gpg allow notify=maybe", 26, /expected yes or no/],
    ["qubes.X * work gpg allow autostart=1", 26, /expected yes or no/],
    ["qubes.X * work gpg allow user=a user=b", 33, /given twice/],
    ["qubes.X * work gpg allow color=red", 26, /unknown parameter "color"/],
    ["qubes.X * work gpg allow notify", 26, /expected key=value/],
    ["qubes.X * work gpg allow user=", 26, /user= needs/],
    ["qubes.X * work @default allow", 25, /must specify target=/],
    ["!include", 1, /expects 1 parameter/],
    ["!include a b", 1, /expects 1 parameter/],
    ["!include-dir", 1, /expects 1 parameter/],
    ["!include-service qubes.S a", 1, /expects 3 parameter/],
    ["!include-service qubes.S bad path", 26, /expected \* or \+ARGUMENT/],
    ["!include-service * +x path", 20, /only \* argument/],
    ["!compat-4.0 x", 1, /expects 0 parameter/],
    ["!frobnicate", 1, /unknown directive.*expected !include/],
  ])("%s", (line, column, message) => {
    const r = one(line);
    expect(r.rules).toEqual([]);
    const e = firstError(line);
    expect(e).toBeDefined();
    expect(e?.file).toBe("t.policy");
    expect(e?.line).toBe(1);
    expect(e?.column).toBe(column);
    expect(e?.message).toMatch(message);
  });

  test("all errors of a file are reported, with their lines", () => {
    const r = parsePolicyFile("qubes.A * a b allow\nbad\nqubes.B * a b nope\n", "f.policy");
    expect(r.rules).toHaveLength(1);
    expect(r.errors.map((e) => e.line)).toEqual([2, 3]);
  });

  test("invalid UTF-8 bytes are an error value", () => {
    const r = parsePolicyFile(new Uint8Array([0x71, 0xff, 0xfe, 0x0a]), "b.policy");
    expect(r.errors).toEqual([{ file: "b.policy", line: 0, message: "file is not valid UTF-8" }]);
  });
});

describe("parser: 4.0 service files (!include-service)", () => {
  test("$ tokens, comma params and $include", () => {
    const r = parseServicePolicyFile("$anyvm $default ask,default_target=gpg\nwork gpg allow,user=root\n$include:include/x\n", "s", "qubes.S", "+x");
    expect(r.errors).toEqual([]);
    expect(r.rules[0]).toMatchObject({ service: "qubes.S", argument: "+x", source: "@anyvm", target: "@default", action: "ask", params: { default_target: "gpg" } });
    expect(r.rules[1].params).toEqual({ user: "root" });
    expect(r.directives).toEqual([{ kind: "include-service", service: "qubes.S", argument: "+x", path: "include/x", file: "s", line: 3 }]);
  });
});

describe("parser: fuzz (never throws, only error values)", () => {
  const check = (r: ReturnType<typeof parsePolicyFile>) => {
    for (const e of r.errors) {
      expect(typeof e.file).toBe("string");
      expect(Number.isInteger(e.line)).toBe(true);
      expect(typeof e.message).toBe("string");
      expect(e.message.length).toBeGreaterThan(0);
    }
  };
  test("random byte strings", () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => check(parsePolicyFile(bytes, "fuzz.policy"))), { numRuns: 2000 });
  });
  test("random unicode strings", () => {
    fc.assert(fc.property(fc.string({ unit: "binary", maxLength: 300 }), (s) => check(parsePolicyFile(s, "fuzz.policy"))), { numRuns: 2000 });
  });
  const piece = fc.constantFrom("qubes.X", "*", "+", "+a", "@anyvm", "@dispvm:", "@dispvm:@tag:", "@tag:", "dom0", "allow", "ask", "deny", "target=", "user=", "notify=yes", "=", "!include", "!include-service", "#", "\t", " ", "\n", "\r", "uuid:", "@default", "é", "\u0000");
  test("random token soup", () => {
    fc.assert(
      fc.property(fc.array(piece, { maxLength: 40 }), (ps) => {
        const text = ps.join(" ");
        check(parsePolicyFile(text, "soup.policy"));
        check(parseServicePolicyFile(text, "soup", "qubes.X", "+"));
      }),
      { numRuns: 3000 },
    );
  });
  test("non-string inputs", () => {
    for (const bad of [undefined, null, 42, {}, []] as unknown[]) {
      const r = parsePolicyFile(bad as string, "x.policy");
      expect(r.errors.length).toBe(1);
    }
  });
});
