import { checkRules, diffRules, isManaged, MANAGED_HEADER, parsePolicyFile, renderPolicy, Rule } from "../../qrexec";

const rules = (text: string): Rule[] => parsePolicyFile(text, "x.policy").rules;

describe("renderPolicy", () => {
  test("managed header, aligned columns, canonical param order, no trailing spaces", () => {
    const text = renderPolicy(rules("qubes.Gpg * work gpg allow autostart=no user=u\nqubes.Filecopy +x personal @default ask default_target=work target=work\n* * @anyvm @anyvm deny"));
    expect(text).toBe(
      [
        MANAGED_HEADER,
        "qubes.Gpg      *  work     gpg      allow user=u autostart=no",
        "qubes.Filecopy +x personal @default ask   target=work default_target=work",
        "*              *  @anyvm   @anyvm   deny",
        "",
      ].join("\n"),
    );
    expect(isManaged(text)).toBe(true);
  });

  test("extra header lines and no header", () => {
    expect(renderPolicy([], { header: "stack prod\nsecond" })).toBe(`${MANAGED_HEADER}\n# stack prod\n# second\n`);
    expect(renderPolicy([], { header: false })).toBe("");
    expect(renderPolicy(rules("a * b c allow"), { header: false })).toBe("a * b c allow\n");
  });

  test("same input gives the same bytes; file/line do not matter", () => {
    const a = rules("qubes.A * work gpg allow");
    const b = a.map((r) => ({ ...r, file: "other", line: 99 }));
    expect(renderPolicy(a)).toBe(renderPolicy(b));
  });

  test("checkRules reports rules that cannot be rendered", () => {
    const bad: Rule = { service: "qubes A", argument: "*", source: "work", target: "gpg", action: "allow", params: {}, file: "", line: 0 };
    expect(checkRules(rules("qubes.A * work gpg allow"))).toEqual([]);
    expect(checkRules([bad]).length).toBeGreaterThan(0);
  });
});

describe("diffRules", () => {
  test("added and removed at rule level, order-aware", () => {
    const old = rules("a * w g allow\nb * w g allow\nc * w g deny");
    const neu = rules("a * w g allow\nb * w g ask\nc * w g deny\nd * w g allow");
    const d = diffRules(old, neu);
    expect(d.removed.map((r) => r.service)).toEqual(["b"]);
    expect(d.added.map((r) => r.service)).toEqual(["b", "d"]);
    expect(d.unchanged).toBe(2);
    expect(d.lines.map((l) => l.op + l.text)).toEqual([" a * w g allow", "-b * w g allow", "+b * w g ask", " c * w g deny", "+d * w g allow"]);
  });
  test("moving a rule is a change (order matters in policy)", () => {
    const d = diffRules(rules("a * w g allow\nb * w g deny"), rules("b * w g deny\na * w g allow"));
    expect(d.added).toHaveLength(1);
    expect(d.removed).toHaveLength(1);
  });
  test("identical lists", () => {
    const r = rules("a * w g allow");
    expect(diffRules(r, r)).toMatchObject({ added: [], removed: [], unchanged: 1 });
  });
});
