import { evaluate, loadPolicySet, parsePolicyFile, PolicySet, Verdict } from "../../qrexec";
import { system } from "./helpers";

function policy(text: string): PolicySet {
  const set = loadPolicySet([{ name: "50-test.policy", text }]);
  expect(set.errors).toEqual([]);
  return set;
}

function ev(text: string, call: string, source: string, target: string): Verdict {
  const plus = call.indexOf("+");
  const service = plus < 0 ? call : call.slice(0, plus);
  const argument = plus < 0 ? "" : call.slice(plus);
  return evaluate(policy(text), { service, argument, source, target }, system());
}

describe("evaluate: matching and resolution", () => {
  test.each<[string, string, string, string, string, string | undefined, number | undefined]>([
    // [policy, call, source, target, action, resolved target, deciding line]
    ["qubes.A * work gpg allow", "qubes.A", "work", "gpg", "allow", "gpg", 1],
    ["qubes.A * work gpg allow", "qubes.B", "work", "gpg", "deny", undefined, undefined],
    ["qubes.A +x work gpg allow", "qubes.A+x", "work", "gpg", "allow", "gpg", 1],
    ["qubes.A +x work gpg allow", "qubes.A+y", "work", "gpg", "deny", undefined, undefined],
    ["qubes.A +x work gpg allow", "qubes.A", "work", "gpg", "deny", undefined, undefined],
    ["qubes.A + work gpg allow", "qubes.A", "work", "gpg", "allow", "gpg", 1],
    ["qubes.A * work gpg allow", "qubes.A+anything", "work", "gpg", "allow", "gpg", 1],
    ["* * work gpg allow", "qubes.Z+q", "work", "gpg", "allow", "gpg", 1],
    // first match wins
    ["qubes.A * work gpg deny\nqubes.A * work gpg allow", "qubes.A", "work", "gpg", "deny", undefined, 1],
    ["qubes.A * work personal deny\nqubes.A * work gpg allow", "qubes.A", "work", "gpg", "allow", "gpg", 2],
    // @default and target= redirection
    ["qubes.A * work @default allow target=gpg", "qubes.A", "work", "", "allow", "gpg", 1],
    ["qubes.A * work @default allow target=gpg", "qubes.A", "work", "@default", "allow", "gpg", 1],
    ["qubes.A * work @default allow target=gpg", "qubes.A", "work", "personal", "deny", undefined, undefined],
    ["qubes.A * work @anyvm allow", "qubes.A", "work", "", "deny", undefined, 1],
    ["qubes.A * work personal allow target=gpg", "qubes.A", "work", "personal", "allow", "gpg", 1],
    ["qubes.A * work @default allow target=nonexistent", "qubes.A", "work", "", "deny", undefined, 1],
    // unknown target becomes @default as in qrexec
    ["qubes.A * work @default allow target=gpg", "qubes.A", "work", "no-such-vm", "allow", "gpg", 1],
    ["qubes.A * @anyvm @anyvm allow", "qubes.A", "work", "no-such-vm", "deny", undefined, 1],
    // unknown source
    ["qubes.A * @anyvm @anyvm allow", "qubes.A", "ghost", "gpg", "deny", undefined, undefined],
    // @anyvm never matches dom0, dom0 and @adminvm are synonyms
    ["qubes.A * @anyvm @anyvm allow", "qubes.A", "work", "dom0", "deny", undefined, undefined],
    ["qubes.A * @anyvm @anyvm allow", "qubes.A", "work", "@adminvm", "deny", undefined, undefined],
    ["qubes.A * @anyvm @anyvm allow", "qubes.A", "dom0", "work", "deny", undefined, undefined],
    ["qubes.A * @anyvm dom0 allow", "qubes.A", "work", "@adminvm", "allow", "dom0", 1],
    ["qubes.A * @anyvm @adminvm allow", "qubes.A", "work", "dom0", "allow", "dom0", 1],
    ["qubes.A * @adminvm @anyvm allow", "qubes.A", "dom0", "work", "allow", "work", 1],
    ["qubes.A * dom0 @anyvm allow", "qubes.A", "dom0", "work", "allow", "work", 1],
    ["qubes.A * @anyvm uuid:00000000-0000-0000-0000-000000000000 allow", "qubes.A", "work", "dom0", "allow", "dom0", 1],
    ["qubes.A * * * allow", "qubes.A", "work", "dom0", "allow", "dom0", 1],
    ["qubes.A * work gpg allow target=@adminvm", "qubes.A", "work", "gpg", "allow", "dom0", 1],
    // tags and types
    ["qubes.A * @tag:work @tag:work allow", "qubes.A", "work", "gpg", "allow", "gpg", 1],
    ["qubes.A * @tag:work @tag:work allow", "qubes.A", "personal", "gpg", "deny", undefined, undefined],
    ["qubes.A * @type:AppVM @type:TemplateVM allow", "qubes.A", "work", "fedora-40", "allow", "fedora-40", 1],
    ["qubes.A * @type:AppVM @type:TemplateVM allow", "qubes.A", "fedora-40", "work", "deny", undefined, undefined],
    ["qubes.A * @type:AdminVM @anyvm allow", "qubes.A", "dom0", "work", "allow", "work", 1],
    // uuid tokens and uuid requests
    ["qubes.A * uuid:00000001-0000-4000-8000-000000000000 gpg allow", "qubes.A", "work", "gpg", "allow", "gpg", 1],
    ["qubes.A * work uuid:00000004-0000-4000-8000-000000000000 allow", "qubes.A", "work", "gpg", "allow", "gpg", 1],
    ["qubes.A * work gpg allow", "qubes.A", "uuid:00000001-0000-4000-8000-000000000000", "uuid:00000004-0000-4000-8000-000000000000", "allow", "gpg", 1],
    // @dispvm resolution
    ["qubes.A * work @dispvm allow", "qubes.A", "work", "@dispvm", "allow", "@dispvm:default-dvm", 1],
    ["qubes.A * vault @dispvm allow", "qubes.A", "vault", "@dispvm", "deny", undefined, 1],
    ["qubes.A * work @dispvm:default-dvm allow", "qubes.A", "work", "@dispvm", "allow", "@dispvm:default-dvm", 1],
    ["qubes.A * work @dispvm:work-dvm allow", "qubes.A", "work", "@dispvm", "deny", undefined, undefined],
    ["qubes.A * work @dispvm:work-dvm allow", "qubes.A", "work", "@dispvm:work-dvm", "allow", "@dispvm:work-dvm", 1],
    ["qubes.A * work @anyvm allow", "qubes.A", "work", "@dispvm:gpg", "deny", undefined, undefined],
    ["qubes.A * work @anyvm allow", "qubes.A", "work", "@dispvm:no-such", "deny", undefined, undefined],
    ["qubes.A * work @anyvm allow", "qubes.A", "work", "@dispvm:work-dvm", "allow", "@dispvm:work-dvm", 1],
    ["qubes.A * work @dispvm allow", "qubes.A", "work", "@dispvm:work-dvm", "deny", undefined, undefined],
    ["qubes.A * work gpg allow target=@dispvm", "qubes.A", "work", "gpg", "allow", "@dispvm:default-dvm", 1],
    ["qubes.A * work gpg allow target=@dispvm:work-dvm", "qubes.A", "work", "gpg", "allow", "@dispvm:work-dvm", 1],
    ["qubes.A * work gpg allow target=@dispvm:gpg", "qubes.A", "work", "gpg", "deny", undefined, 1],
    // @dispvm:@tag:
    ["qubes.A * work @dispvm:@tag:work allow", "qubes.A", "work", "@dispvm:work-dvm", "allow", "@dispvm:work-dvm", 1],
    ["qubes.A * work @dispvm:@tag:work allow", "qubes.A", "work", "@dispvm:default-dvm", "deny", undefined, undefined],
    ["qubes.A * work @dispvm:@tag:dvm-ok allow", "qubes.A", "work", "@dispvm", "allow", "@dispvm:default-dvm", 1],
    ["qubes.A * work @dispvm:@tag:work allow", "qubes.A", "work", "@dispvm", "deny", undefined, undefined],
    ["qubes.A * work @dispvm:@tag:work allow", "qubes.A", "work", "gpg", "deny", undefined, undefined],
    // @dispvm:VM as source never matches a request source (qrexec compares it to a template token)
    ["qubes.A * @dispvm:default-dvm @anyvm allow", "qubes.A", "work", "gpg", "deny", undefined, undefined],
    // autostart=no, loopback, user
    ["qubes.A * work @anyvm allow autostart=no", "qubes.A", "work", "gpg", "allow", "gpg", 1],
    ["qubes.A * work @anyvm allow autostart=no", "qubes.A", "work", "personal", "deny", undefined, 1],
    ["qubes.A * work @anyvm allow autostart=no", "qubes.A", "work", "@dispvm", "deny", undefined, 1],
    ["qubes.A * work @anyvm allow autostart=no", "qubes.A", "work", "dom0", "deny", undefined, undefined],
    ["qubes.A * work @adminvm allow autostart=no", "qubes.A", "work", "dom0", "allow", "dom0", 1],
    ["qubes.A * work @anyvm allow", "qubes.A", "work", "work", "deny", undefined, 1],
    // invalid requested targets
    ["qubes.A * * * allow", "qubes.A", "work", "@anyvm", "deny", undefined, undefined],
    ["qubes.A * * * allow", "qubes.A", "work", "@tag:work", "deny", undefined, undefined],
    ["qubes.A * * * allow", "qubes.A", "work", "*", "deny", undefined, undefined],
  ])("%s | %s %s -> %s", (text, call, source, target, action, resolved, line) => {
    const v = ev(text, call, source, target);
    expect(v.action).toBe(action);
    if (action === "allow") expect(v.target).toBe(resolved);
    expect(v.line).toBe(line);
    expect(v.reason.length).toBeGreaterThan(0);
  });

  test("user= is reported", () => {
    expect(ev("qubes.A * work gpg allow user=root", "qubes.A", "work", "gpg")).toMatchObject({ action: "allow", user: "root", file: "50-test.policy", line: 1 });
  });

  test("ask: targets collected from rules (later deny removes), default target resolved", () => {
    const text = [
      "qubes.A * work @dispvm ask default_target=@dispvm",
      "qubes.A * work @tag:work ask",
      "qubes.A * work gpg deny",
      "qubes.A * work @anyvm ask",
    ].join("\n");
    const v = ev(text, "qubes.A", "work", "@dispvm");
    expect(v.action).toBe("ask");
    expect(v.target).toBe("@dispvm:default-dvm");
    // @anyvm adds everything but dom0; later deny of gpg is applied first (reverse order), then @tag:work re-adds gpg
    expect(v.targets).toContain("gpg");
    expect(v.targets).toContain("@dispvm:default-dvm");
    expect(v.targets).toContain("@dispvm:work-dvm");
    expect(v.targets).not.toContain("work");
    expect(v.targets).not.toContain("dom0");
    expect(v.targets).not.toContain("sys-hidden");
    expect(v.targets).not.toContain("sys-hidden-feature");
    expect(v.targets).toContain("sys-shown-feature");
  });

  test("ask: an earlier deny removes a target, a later one does not (rules scanned last to first)", () => {
    const v = ev("qubes.A * work @default ask\nqubes.A * work personal deny\nqubes.A * work @anyvm ask", "qubes.A", "work", "");
    expect(v.action).toBe("ask");
    expect(v.targets).not.toContain("personal");
    expect(v.target).toBeUndefined();
    const w = ev("qubes.A * work @default ask\nqubes.A * work @anyvm ask\nqubes.A * work personal deny", "qubes.A", "work", "");
    expect(w.targets).toContain("personal");
  });

  test("ask target= offers only that target; dom0 spelled dom0", () => {
    expect(ev("qubes.A * work @default ask target=@adminvm default_target=@adminvm", "qubes.A", "work", "")).toMatchObject({ action: "ask", targets: ["dom0"], target: "dom0" });
  });

  test("ask with nothing to choose from is deny", () => {
    expect(ev("qubes.A * work @default ask", "qubes.A", "work", "").action).toBe("deny");
  });

  test("ask default_target not among targets is dropped", () => {
    const v = ev("qubes.A * work gpg ask default_target=personal", "qubes.A", "work", "gpg");
    expect(v).toMatchObject({ action: "ask", targets: ["gpg"] });
    expect(v.target).toBeUndefined();
  });

  test("a policy with errors denies everything", () => {
    const set = loadPolicySet([{ name: "a.policy", text: "qubes.A * work gpg allow\nbroken line\n" }]);
    expect(evaluate(set, { service: "qubes.A", argument: "", source: "work", target: "gpg" }, system()).action).toBe("deny");
  });

  test("no matching rule is deny without rule", () => {
    const v = evaluate(parsePolicyFile("", "e.policy").rules, { service: "qubes.A", argument: "", source: "work", target: "gpg" }, system());
    expect(v).toEqual({ action: "deny", reason: "no matching rule found" });
  });

  test("invalid requests are deny, never throw", () => {
    const rules = policy("* * @anyvm @anyvm allow").rules;
    for (const [service, argument] of [["", ""], ["a+b", ""], ["*", ""], ["qubes.A", "x"], ["qubes.A", "+a b"]]) {
      expect(evaluate(rules, { service, argument, source: "work", target: "gpg" }, system()).action).toBe("deny");
    }
  });
});

describe("evaluate: first match across files in C-locale order", () => {
  test("uppercase sorts before lowercase, digits before letters", () => {
    const set = loadPolicySet([
      { name: "b.policy", text: "qubes.A * work gpg deny" },
      { name: "Z.policy", text: "qubes.A * work gpg ask" },
      { name: "a.policy", text: "qubes.A * work gpg allow" },
      { name: "30-user.policy", text: "qubes.A * work personal allow" },
    ]);
    // "Z.policy" is not a valid policy file name (qrexec allows only lowercase) -> error
    expect(set.errors.map((e) => e.file)).toEqual(["Z.policy"]);
    expect(set.files).toEqual(["30-user.policy", "a.policy", "b.policy"]);
  });

  test("earlier file decides", () => {
    const set = loadPolicySet([
      { name: "90-default.policy", text: "qubes.A * @anyvm @anyvm deny" },
      { name: "50-site.policy", text: "qubes.A * work gpg allow" },
      { name: "50-site.policy.bak", text: "garbage" },
      { name: ".hidden.policy", text: "garbage" },
    ]);
    expect(set.errors).toEqual([]);
    expect(evaluate(set, { service: "qubes.A", argument: "", source: "work", target: "gpg" }, system())).toMatchObject({ action: "allow", file: "50-site.policy", line: 1 });
    expect(evaluate(set, { service: "qubes.A", argument: "", source: "work", target: "personal" }, system())).toMatchObject({ action: "deny", file: "90-default.policy" });
  });

  test("byte order: '-' < '.' < '0' < '_' < 'a'", () => {
    const set = loadPolicySet(["a.policy", "_.policy", "0.policy", "..policy", "-.policy"].map((name) => ({ name, text: "" })));
    expect(set.files).toEqual(["-.policy", "0.policy", "_.policy", "a.policy"]);
  });
});

describe("includes", () => {
  test("!include inlines rules at the directive, !include-dir in name order, !include-service", () => {
    const includes = {
      "include/first": "qubes.A * work gpg deny",
      "/etc/qubes/policy.d/include/d/b.policy": "qubes.B * work gpg deny",
      "include/d/a.policy": "qubes.B * work gpg allow",
      "include/d/ignored.txt": "garbage",
      "include/svc": "$anyvm $default ask,default_target=gpg\nwork gpg allow",
    };
    const set = loadPolicySet(
      [{ name: "50-a.policy", text: "!include include/first\nqubes.A * work gpg allow\n!include-dir include/d\n!include-service qubes.C +x include/svc\n" }],
      includes,
    );
    expect(set.errors).toEqual([]);
    expect(set.rules.map((r) => `${r.file}:${r.line} ${r.service}${r.argument} ${r.action}`)).toEqual([
      "include/first:1 qubes.A* deny",
      "50-a.policy:2 qubes.A* allow",
      "include/d/a.policy:1 qubes.B* allow",
      "include/d/b.policy:1 qubes.B* deny",
      "include/svc:1 qubes.C+x ask",
      "include/svc:2 qubes.C+x allow",
    ]);
    const s = system();
    expect(evaluate(set, { service: "qubes.A", argument: "", source: "work", target: "gpg" }, s)).toMatchObject({ action: "deny", file: "include/first" });
    expect(evaluate(set, { service: "qubes.B", argument: "", source: "work", target: "gpg" }, s)).toMatchObject({ action: "allow", file: "include/d/a.policy" });
  });

  test("missing files, circular includes and errors inside includes are reported", () => {
    const set = loadPolicySet([{ name: "a.policy", text: "!include include/x\n!include include/missing\n!include-dir include/nodir" }], {
      "include/x": "!include include/y",
      "include/y": "!include include/x\nbad rule",
    });
    expect(set.errors.map((e) => `${e.file}:${e.line}`)).toEqual(expect.arrayContaining(["include/y:1", "include/y:2", "a.policy:2", "a.policy:3"]));
    expect(set.errors.find((e) => e.file === "include/y" && e.line === 1)?.message).toMatch(/circular include/);
    expect(set.errors.find((e) => e.line === 2 && e.file === "a.policy")?.message).toMatch(/no such policy file/);
    expect(set.errors.find((e) => e.line === 3)?.message).toMatch(/not a directory/);
  });
});
