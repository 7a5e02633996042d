/** Benchmark of the qrexec policy module: parse and evaluate rates for generated policies. */
import { evaluate, loadPolicySet, parsePolicyFile, renderPolicy, Rule, SystemInfo } from "../qrexec";

const SIZES = [100, 1000, 10000];
const REPS = 5;
const DOMAINS = 50;

function makeSystem(): SystemInfo {
  const domains: SystemInfo["domains"] = {
    dom0: { type: "AdminVM", tags: [], default_dispvm: "dvm-0", template_for_dispvms: false, power_state: "Running", uuid: "00000000-0000-0000-0000-000000000000" },
  };
  for (let i = 0; i < DOMAINS; i++) {
    domains[`vm-${i}`] = {
      type: i % 7 === 0 ? "TemplateVM" : "AppVM",
      tags: [`t${i % 5}`],
      default_dispvm: "dvm-0",
      template_for_dispvms: false,
      power_state: i % 2 === 0 ? "Running" : "Halted",
      uuid: `${i.toString(16).padStart(8, "0")}-0000-4000-8000-000000000001`,
    };
  }
  domains["dvm-0"] = { type: "AppVM", tags: [], default_dispvm: null, template_for_dispvms: true, power_state: "Halted", uuid: "ffffffff-0000-4000-8000-000000000001" };
  return { domains };
}

function makeRules(n: number): Rule[] {
  const rules: Rule[] = [];
  for (let i = 0; i < n - 1; i++) {
    const k = i % 6;
    rules.push({
      service: `svc.S${i % 97}`,
      argument: i % 3 === 0 ? `+arg${i % 11}` : "*",
      source: k === 0 ? `@tag:t${i % 5}` : k === 1 ? "@anyvm" : `vm-${i % DOMAINS}`,
      target: k === 2 ? "@default" : k === 3 ? "@dispvm" : k === 4 ? `@type:AppVM` : `vm-${(i * 7) % DOMAINS}`,
      action: k === 2 ? "ask" : i % 4 === 0 ? "deny" : "allow",
      params: k === 5 ? { user: "root", notify: true } : {},
      file: "",
      line: 0,
    });
  }
  rules.push({ service: "*", argument: "*", source: "@anyvm", target: "@anyvm", action: "deny", params: {}, file: "", line: 0 });
  return rules;
}

function stats(xs: number[]): { min: number; median: number; max: number } {
  const s = [...xs].sort((a, b) => a - b);
  return { min: s[0], median: s[Math.floor(s.length / 2)], max: s[s.length - 1] };
}

const round = (x: number): number => Math.round(x);

/** Parse rate (rules/s) and evaluate rate (requests/s) for 100 / 1,000 / 10,000 rules; min/median/max over repetitions. */
export async function benchQrexec(): Promise<Record<string, unknown>> {
  const system = makeSystem();
  const out: Record<string, unknown> = {};
  for (const n of SIZES) {
    const text = renderPolicy(makeRules(n));
    const parseRates: number[] = [];
    for (let r = 0; r < REPS; r++) {
      const t0 = process.hrtime.bigint();
      const parsed = parsePolicyFile(text, "bench.policy");
      const dt = Number(process.hrtime.bigint() - t0) / 1e9;
      if (parsed.errors.length > 0) throw new Error(`generated policy invalid: ${parsed.errors[0].message}`);
      parseRates.push(n / dt);
    }
    const set = loadPolicySet([{ name: "50-bench.policy", text }]);
    const requests = Array.from({ length: 200 }, (_, i) => ({
      service: `svc.S${(i * 13) % 101}`,
      argument: i % 2 === 0 ? `+arg${i % 11}` : "",
      source: `vm-${i % DOMAINS}`,
      target: i % 10 === 0 ? "@dispvm" : `vm-${(i * 3) % DOMAINS}`,
    }));
    const evalRates: number[] = [];
    for (let r = 0; r < REPS; r++) {
      const t0 = process.hrtime.bigint();
      for (const req of requests) evaluate(set, req, system);
      const dt = Number(process.hrtime.bigint() - t0) / 1e9;
      evalRates.push(requests.length / dt);
    }
    const p = stats(parseRates);
    const e = stats(evalRates);
    out[`parse_rules_per_s_${n}`] = { min: round(p.min), median: round(p.median), max: round(p.max) };
    out[`evaluate_requests_per_s_${n}`] = { min: round(e.min), median: round(e.median), max: round(e.max) };
  }
  out.repetitions = REPS;
  out.domains = DOMAINS + 2;
  return out;
}

if (require.main === module) {
  benchQrexec().then((r) => {
    const rows: string[][] = [["metric", "min", "median", "max"]];
    for (const [k, v] of Object.entries(r)) {
      if (typeof v === "object" && v !== null) {
        const s = v as { min: number; median: number; max: number };
        rows.push([k, String(s.min), String(s.median), String(s.max)]);
      } else rows.push([k, String(v), "", ""]);
    }
    const w = rows[0].map((_, i) => Math.max(...rows.map((row) => row[i].length)));
    for (const row of rows) console.log(row.map((c, i) => (i === 0 ? c.padEnd(w[i]) : c.padStart(w[i]))).join("  "));
  });
}
