import * as fc from "fast-check";
import { diffRules, DomainInfo, evaluate, parsePolicyFile, renderPolicy, Rule, RuleParams, SystemInfo, MANAGED_HEADER, Verdict } from "../../qrexec";
import type * as EvaluateModule from "../../qrexec/evaluate";

const NAMES = ["a", "b", "c", "dvm"];
const strip = (r: Rule) => ({ service: r.service, argument: r.argument, source: r.source, target: r.target, action: r.action, params: r.params });

const sourceTok = fc.constantFrom("*", "@anyvm", "@adminvm", "dom0", ...NAMES, "@tag:t1", "@tag:t2", "@type:AppVM", "@type:DispVM", "@dispvm:dvm", "@dispvm:@tag:t1");
const targetTok = fc.constantFrom("*", "@anyvm", "@adminvm", "dom0", ...NAMES, "@tag:t1", "@type:AppVM", "@default", "@dispvm", "@dispvm:dvm", "@dispvm:a", "@dispvm:@tag:t1");
const redirectTok = fc.constantFrom("@adminvm", "dom0", "@dispvm", "@dispvm:dvm", ...NAMES, "nosuch");
const yesNo = fc.option(fc.boolean(), { nil: undefined });

const ruleArb: fc.Arbitrary<Rule> = fc
  .record({
    service: fc.constantFrom("qubes.A", "qubes.B", "*"),
    argument: fc.constantFrom("*", "+", "+x"),
    source: sourceTok,
    target: targetTok,
    action: fc.constantFrom("allow", "deny", "ask") as fc.Arbitrary<"allow" | "deny" | "ask">,
    redirect: fc.option(redirectTok, { nil: undefined }),
    def: fc.option(redirectTok, { nil: undefined }),
    user: fc.option(fc.constantFrom("root", "user"), { nil: undefined }),
    notify: yesNo,
    autostart: yesNo,
  })
  .map((x) => {
    const params: RuleParams = {};
    if (x.action !== "deny") {
      if (x.redirect !== undefined || (x.target === "@default" && x.action === "allow")) params.target = x.redirect ?? "b";
      if (x.action === "ask" && x.def !== undefined) params.default_target = x.def;
      if (x.user !== undefined) params.user = x.user;
      if (x.autostart !== undefined) params.autostart = x.autostart;
    }
    if (x.notify !== undefined) params.notify = x.notify;
    return { service: x.service, argument: x.service === "*" ? "*" : x.argument, source: x.source, target: x.target, action: x.action, params, file: "gen.policy", line: 0 };
  });

const systemArb: fc.Arbitrary<SystemInfo> = fc
  .tuple(
    ...NAMES.map(() =>
      fc.record({
        present: fc.boolean(),
        tags: fc.subarray(["t1", "t2"]),
        type: fc.constantFrom("AppVM", "DispVM"),
        default_dispvm: fc.constantFrom(null, "dvm", "a", "gone"),
        template_for_dispvms: fc.boolean(),
        running: fc.boolean(),
      }),
    ),
  )
  .map((ds) => {
    const domains: Record<string, DomainInfo> = {
      dom0: { type: "AdminVM", tags: ["t1"], default_dispvm: "dvm", template_for_dispvms: false, power_state: "Running", uuid: "00000000-0000-0000-0000-000000000000" },
    };
    ds.forEach((d, i) => {
      if (!d.present && NAMES[i] !== "a") return;
      domains[NAMES[i]] = {
        type: d.type,
        tags: d.tags,
        default_dispvm: d.default_dispvm,
        template_for_dispvms: d.template_for_dispvms,
        power_state: d.running ? "Running" : "Halted",
        uuid: `0000000${i + 1}-0000-4000-8000-000000000000`,
      };
    });
    return { domains };
  });

describe("render/parse round trip", () => {
  test("parse(render(rules)) equals rules (ignoring file/line); rendering is stable", () => {
    fc.assert(
      fc.property(fc.array(ruleArb, { maxLength: 30 }), (rules) => {
        const text = renderPolicy(rules);
        expect(text.startsWith(MANAGED_HEADER + "\n")).toBe(true);
        const parsed = parsePolicyFile(text, "r.policy");
        expect(parsed.errors).toEqual([]);
        expect(parsed.rules.map(strip)).toEqual(rules.map(strip));
        expect(renderPolicy(parsed.rules)).toBe(text);
        expect(diffRules(rules, parsed.rules).unchanged).toBe(rules.length);
      }),
      { numRuns: 500 },
    );
  });

  test("without alignment: the same rules, one space between columns, never longer", () => {
    fc.assert(
      fc.property(fc.array(ruleArb, { maxLength: 30 }), (rules) => {
        const text = renderPolicy(rules, { align: false });
        const parsed = parsePolicyFile(text, "r.policy");
        expect(parsed.errors).toEqual([]);
        expect(parsed.rules.map(strip)).toEqual(rules.map(strip));
        expect(text).not.toMatch(/\S {2,}\S/);
        expect(text.length).toBeLessThanOrEqual(renderPolicy(rules).length);
      }),
      { numRuns: 300 },
    );
  });
});

/** A deliberately naive re-statement of qrexec's decision, for allow/deny outcomes. */
function reference(
  rules: Rule[], req: { service: string; argument: string; source: string; target: string }, sys: SystemInfo,
): { action: string; target?: string } {
  const D = sys.domains;
  const has = (n: string | null | undefined) => n !== null && n !== undefined && Object.prototype.hasOwnProperty.call(D, n);
  if (!has(req.source)) return { action: "deny" };
  const src = req.source;
  let intended: string;
  if (req.target === "" || req.target === "@default") intended = "@default";
  else if (req.target === "dom0" || req.target === "@adminvm") intended = req.target; // qrexec keeps @adminvm distinct from the name dom0
  else if (req.target === "@dispvm") intended = "@dispvm";
  else if (req.target.startsWith("@dispvm:")) {
    const t = req.target.slice(8);
    if (!has(t) || !D[t].template_for_dispvms) return { action: "deny" };
    intended = req.target;
  } else intended = has(req.target) ? req.target : "@default";
  const isD0 = (t: string) => t === "dom0" || t === "@adminvm";
  const arg = req.argument === "" ? "+" : req.argument;
  const tmplOf = (t: string) => (t === "@dispvm" ? D[src].default_dispvm : t.startsWith("@dispvm:") ? t.slice(8) : null);
  const srcOk = (tok: string) => {
    if (tok === "*") return true;
    if (tok === "@anyvm") return src !== "dom0";
    if (tok === "@adminvm" || tok === "dom0") return src === "dom0";
    if (tok.startsWith("@tag:")) return D[src].tags.includes(tok.slice(5));
    if (tok.startsWith("@type:")) return D[src].type === tok.slice(6);
    if (tok.startsWith("@dispvm:")) return false;
    return tok === src;
  };
  const tgtOk = (tok: string) => {
    if (tok === "*") return true;
    if (tok === "@anyvm") return !isD0(intended);
    if (tok === "@adminvm" || tok === "dom0") return isD0(intended);
    if (tok === "@default" || tok === "@dispvm") return intended === tok;
    if (tok.startsWith("@tag:")) return has(intended) && D[intended].tags.includes(tok.slice(5));
    if (tok.startsWith("@type:")) return has(intended) && D[intended].type === tok.slice(6);
    if (tok.startsWith("@dispvm:@tag:")) {
      const t = tmplOf(intended);
      return has(t) && D[t as string].template_for_dispvms && D[t as string].tags.includes(tok.slice(13));
    }
    if (tok.startsWith("@dispvm:")) return tmplOf(intended) === tok.slice(8);
    return tok === intended;
  };
  for (const r of rules) {
    if (!((r.service === "*" || r.service === req.service) && (r.argument === "*" || r.argument === arg) && srcOk(r.source) && tgtOk(r.target))) continue;
    if (r.action === "deny") return { action: "deny" };
    if (r.action === "ask") return { action: "ask" };
    let t = intended;
    if (r.params.target !== undefined) {
      const p = r.params.target;
      if (p === "dom0" || p === "@adminvm") t = "dom0";
      else if (p === "@dispvm") t = "@dispvm";
      else if (p.startsWith("@dispvm:")) {
        if (!has(p.slice(8)) || !D[p.slice(8)].template_for_dispvms) return { action: "deny" };
        t = p;
      } else t = has(p) ? p : "@default";
    }
    if (t === "@default") return { action: "deny" };
    if (isD0(t)) t = "dom0";
    if (t === "@dispvm") {
      if (!D[src].default_dispvm) return { action: "deny" };
      t = "@dispvm:" + D[src].default_dispvm;
    }
    if (r.params.autostart === false && t !== "dom0" && (t.startsWith("@dispvm") || D[t]?.power_state !== "Running")) return { action: "deny" };
    if (t === src) return { action: "deny" };
    return { action: "allow", target: t };
  }
  return { action: "deny" };
}

describe("evaluator agrees with a naive reference", () => {
  const requestArb = fc.record({
    service: fc.constantFrom("qubes.A", "qubes.B"),
    argument: fc.constantFrom("", "+x", "+y"),
    source: fc.constantFrom("dom0", ...NAMES, "ghost"),
    target: fc.constantFrom("", "@default", "dom0", "@adminvm", "@dispvm", "@dispvm:dvm", "@dispvm:a", ...NAMES, "ghost"),
  });
  test("random small rule sets, systems and requests", () => {
    fc.assert(
      fc.property(fc.array(ruleArb, { maxLength: 12 }), systemArb, fc.array(requestArb, { minLength: 1, maxLength: 10 }), (rules, sys, reqs) => {
        for (const req of reqs) {
          const want = reference(rules, req, sys);
          const got = evaluate(rules, req, sys);
          if (want.action === "ask") {
            // ask becomes deny when nothing can be offered; the reference does not model the dialog
            expect(["ask", "deny"]).toContain(got.action);
            if (got.action === "deny") expect(got.reason).toMatch(/no target is available/);
          } else {
            expect({ action: got.action, target: got.action === "allow" ? got.target : undefined }).toEqual({ action: want.action, target: want.target });
          }
        }
      }),
      { numRuns: 1000 },
    );
  });
});

describe("evaluation caches (per rules array, per system) never change a verdict", () => {
  const requestArb = fc.record({
    service: fc.constantFrom("qubes.A", "qubes.B", "qubes.Unnamed"),
    argument: fc.constantFrom("", "+x", "+y"),
    source: fc.constantFrom("dom0", ...NAMES, "ghost", "uuid:00000002-0000-4000-8000-000000000000"),
    target: fc.constantFrom("", "@default", "dom0", "@adminvm", "@dispvm", "@dispvm:dvm", "@dispvm:a", ...NAMES, "ghost", "uuid:00000003-0000-4000-8000-000000000000"),
  });
  type Req = { service: string; argument: string; source: string; target: string };

  /** A freshly loaded evaluate module: its caches have seen nothing. */
  function freshEvaluate(): typeof EvaluateModule.evaluate {
    let m: typeof EvaluateModule | undefined;
    jest.isolateModules(() => {
      m = jest.requireActual<typeof EvaluateModule>("../../qrexec/evaluate");
    });
    if (m === undefined) throw new Error("module not loaded");
    return m.evaluate;
  }

  /** Allow/deny agree with the naive reference where it applies (it knows neither uuid tokens nor dialogs). */
  function agreesWithReference(rules: Rule[], req: Req, sys: SystemInfo, got: Verdict): void {
    if (req.source.startsWith("uuid:") || req.target.startsWith("uuid:")) return;
    const want = reference(rules, req, sys);
    if (want.action === "ask") expect(["ask", "deny"]).toContain(got.action);
    else expect({ action: got.action, target: got.action === "allow" ? got.target : undefined }).toEqual(want);
  }

  test("one rules array against several systems, interleaved: same as the reference and as an unwarmed module", () => {
    fc.assert(
      fc.property(
        fc.array(ruleArb, { maxLength: 16 }), fc.array(systemArb, { minLength: 2, maxLength: 3 }), fc.array(requestArb, { minLength: 1, maxLength: 12 }),
        (rules, systems, reqs) => {
          const got = new Map<SystemInfo, Verdict[]>(systems.map((s) => [s, []]));
          for (let round = 0; round < 2; round++) {
            for (const req of reqs) {
              for (const sys of systems) {
                const v = evaluate(rules, req, sys);
                agreesWithReference(rules, req, sys, v);
                if (round === 1) got.get(sys)?.push(v);
              }
            }
          }
          // An unwarmed module per system sees only that system and this array.
          for (const sys of systems) {
            const cold = freshEvaluate();
            expect(got.get(sys)).toEqual(reqs.map((req) => cold(rules, req, sys)));
          }
        },
      ),
      { numRuns: 100 },
    );
  });

  test("a new array is never served an older array's results, even with the same requests and system", () => {
    fc.assert(
      fc.property(
        fc.array(ruleArb, { maxLength: 12 }), fc.array(ruleArb, { maxLength: 12 }), systemArb, fc.array(requestArb, { minLength: 1, maxLength: 8 }),
        (a, b, sys, reqs) => {
          for (const req of reqs) evaluate(a, req, sys);
          const edited = [...a.slice(0, Math.floor(a.length / 2)), ...b];
          for (const rules of [edited, b]) {
            const cold = freshEvaluate();
            for (const req of reqs) {
              const v = evaluate(rules, req, sys);
              agreesWithReference(rules, req, sys, v);
              expect(v).toEqual(cold(rules, req, sys));
            }
          }
        },
      ),
      { numRuns: 100 },
    );
  });

  test("regression: a fence rule added in a new array takes effect", () => {
    const d = (n: number): DomainInfo => ({ type: "AppVM", tags: [], default_dispvm: null, template_for_dispvms: false, power_state: "Running", uuid: `0000000${n}-0000-4000-8000-000000000000` });
    const sys: SystemInfo = { domains: { dom0: { ...d(0), type: "AdminVM", uuid: "00000000-0000-0000-0000-000000000000" }, a: d(1), b: d(2) } };
    const rule = (service: string, source: string, target: string, action: "allow" | "deny"): Rule =>
      ({ service, argument: "*", source, target, action, params: {}, file: "t.policy", line: 1 });
    const allow = [rule("qubes.A", "a", "b", "allow")];
    const req = { service: "qubes.A", argument: "", source: "a", target: "b" };
    expect(evaluate(allow, req, sys).action).toBe("allow");
    expect(evaluate(allow, { ...req, service: "qubes.B" }, sys).reason).toBe("no matching rule found");
    const fenced = [rule("*", "@anyvm", "b", "deny"), ...allow];
    expect(evaluate(fenced, req, sys).reason).toMatch(/denied by policy/);
    expect(evaluate(fenced, { ...req, service: "qubes.B" }, sys).reason).toMatch(/denied by policy/);
    expect(evaluate(allow, req, sys).action).toBe("allow");
  });
});
