/**
 * A quick look at `verify-log` throughput without `npm run bench`: builds a log of N entries as
 * the signing case does (log-prefix and signature-request pairs of four build VMs), then times
 * verifyLog over it and, apart, its two halves: `qbi-tlog verify` (tree, tiles, checkpoint,
 * --entries-out) and the TypeScript entry checks (read and decode --entries-out, checkEntries).
 *
 *   npx ts-node --transpile-only bench/verify-log-quick.ts [entries=20000] [runs=3] [log dir]
 *
 * The log is kept in the given directory (default: a temporary one) and reused when it is already
 * there. QBI_TLOG picks the qbi-tlog binary.
 */
import { execFileSync } from "child_process";
import * as crypto from "crypto";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { checkEntries, entriesOut } from "../audit/entries";
import { verifyLog } from "../audit/verifyLog";
import { canonicalJson } from "../contracts/transparencyLog";
import { tlogProgram } from "../test/services/signSite";

const size = Number(process.argv[2] ?? 20000);
const runs = Number(process.argv[3] ?? 3);
const dir = process.argv[4] ?? fs.mkdtempSync(path.join(os.tmpdir(), "qbi-verify-log-quick-"));
const sha = (b: string) => crypto.createHash("sha256").update(b).digest("hex");
const ms = (t: number) => performance.now() - t;
const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
const fmt = (a: number[]) => `median ${median(a).toFixed(0)} ms [${a.map((x) => x.toFixed(0)).join(", ")}]`;

function buildLog(): { log: string; verifier: string } {
  const key = path.join(dir, "key");
  const log = path.join(dir, `log-${size}`);
  if (!fs.existsSync(key)) {
    const out = JSON.parse(execFileSync(tlogProgram(), ["keygen", "--origin", "example.org/build-logs/logs", "--private-out", key]).toString()) as { verifier: string };
    fs.writeFileSync(path.join(dir, "verifier"), out.verifier);
  }
  if (!fs.existsSync(path.join(log, "checkpoint"))) {
    const lines: string[] = [];
    const time = new Date(0).toISOString();
    for (let i = 0; i < size; i += 2) {
      const vm = `build-${"abcd"[(i / 2) % 4]}`;
      const env = vm.slice(6);
      lines.push(canonicalJson({ v: 1, kind: "log-prefix", time, vm, env, path: `${vm}/d/log_${i}`, contentSha256: sha(String(i)), contentSize: i }));
      lines.push(canonicalJson({ v: 1, kind: "signature-request", time, vm, env, signer: `keys-${env}`, key: "default", sha256: sha(`pkg ${i}`), size: 4096, logs: [i] }));
    }
    for (let i = 0; i < lines.length; i += 10000) {
      execFileSync(tlogProgram(), ["append", "--dir", log, "--private", key], { input: `${lines.slice(i, i + 10000).join("\n")}\n`, maxBuffer: 64 << 20 });
    }
  }
  return { log, verifier: fs.readFileSync(path.join(dir, "verifier"), "utf8") };
}

async function main(): Promise<void> {
  const { log, verifier } = buildLog();
  const whole: number[] = [];
  const cpu: number[] = [];
  const go: number[] = [];
  const read: number[] = [];
  const check: number[] = [];
  const out = path.join(dir, "entries.jsonl");
  for (let r = 0; r < runs; r++) {
    let t = performance.now();
    const c = process.cpuUsage();
    const [rep] = await verifyLog({ target: log, verifiers: [verifier], since: [], tlogProgram: tlogProgram() });
    whole.push(ms(t));
    const used = process.cpuUsage(c);
    cpu.push((used.user + used.system) / 1000);
    if (rep.problems.length || rep.size !== size) throw new Error(`verify-log: ${rep.problems[0] ?? `size ${rep.size}`}`);
    t = performance.now();
    execFileSync(tlogProgram(), ["verify", "--dir", log, "--verifier", verifier, "--entries-out", out]);
    go.push(ms(t));
    t = performance.now();
    const raw = entriesOut(fs.readFileSync(out));
    read.push(ms(t));
    t = performance.now();
    if (checkEntries(raw).problems.length) throw new Error("entry problems");
    check.push(ms(t));
  }
  console.log(`verify-log, ${size} entries: ${Math.round((size / median(whole)) * 1000)} entries/s; wall ${fmt(whole)}; this process's CPU ${fmt(cpu)}`);
  console.log(`  qbi-tlog verify alone ${fmt(go)}; read + decode --entries-out ${fmt(read)}; checkEntries ${fmt(check)}`);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
