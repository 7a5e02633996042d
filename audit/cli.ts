/**
 * `qubes-build-infra verify-log <logs repository | git URL | log directory> --verifier <key>...
 *  [--since <checkpoint file>]... [--monitor <state file>] [--json]`
 *
 * Exit codes: 0 everything verifies; 1 a finding (tampering, fork, rewind, unknown signer,
 * a log that does not match its entry) or a monitor alert; 2 usage; 3 I/O or tool failure.
 */
import { verifyLog, type VerifyOptions } from "./verifyLog";

const USAGE = "usage: qubes-build-infra verify-log <logs repository | git URL | log directory> --verifier <note verifier key>... "
  + "[--since <checkpoint file>]... [--monitor <state file>] [--json]\n";

export function parseArgs(argv: string[]): (VerifyOptions & { json: boolean }) | string {
  const o: VerifyOptions & { json: boolean } = { target: "", verifiers: [], since: [], json: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    try {
      if (a === "--verifier") o.verifiers.push(value());
      else if (a === "--since") o.since.push(value());
      else if (a === "--monitor") o.monitor = value();
      else if (a === "--json") o.json = true;
      else if (a.startsWith("-")) return `unknown option ${a}`;
      else if (!o.target) o.target = a;
      else return `unexpected argument ${a}`;
    } catch (e) {
      return (e as Error).message;
    }
  }
  if (!o.target) return "the logs repository or log directory is missing";
  if (o.verifiers.length === 0) return "give the verifier key of each log with --verifier (the stack output logVerifiers)";
  for (const v of o.verifiers) if (!/^[^\s+]+\+[0-9a-f]{8}\+[A-Za-z0-9+/]+=*$/.test(v)) return `--verifier ${v}: not a note verifier key (<origin>+<hash>+<key>)`;
  return o;
}

export async function main(argv: string[]): Promise<number> {
  const o = parseArgs(argv);
  if (typeof o === "string") {
    process.stderr.write(`verify-log: ${o}\n${USAGE}`);
    return 2;
  }
  try {
    const reports = await verifyLog(o);
    if (o.json) process.stdout.write(`${JSON.stringify(reports, null, 2)}\n`);
    let bad = false;
    for (const r of reports) {
      const c = r.counts;
      if (!o.json) {
        process.stdout.write(`${r.origin} (${r.dir}): ${r.size} entries (${c["build-log"] ?? 0} build logs, ${c["log-prefix"] ?? 0} prefixes, `
          + `${c["signature-request"] ?? 0} signature requests), ${r.checkpoints} checkpoint(s) checked: ${r.problems.length + r.alerts.length === 0 ? "OK" : "FAILED"}\n`);
      }
      for (const a of r.alerts) process.stderr.write(`ALERT ${r.origin}: ${a}\n`);
      for (const p of r.problems) process.stderr.write(`${r.origin}: ${p}\n`);
      bad ||= r.problems.length + r.alerts.length > 0;
    }
    return bad ? 1 : 0;
  } catch (e) {
    process.stderr.write(`verify-log: ${(e as Error).message}\n`);
    return 3;
  }
}
