/**
 * Sign-if-logged: what the gate costs, against floors measured in the same run.
 *
 * 1. Round trip of one signature from a build VM inside an open log session: digest → logged
 *    (prefix + request entries) → checkpoint published (git commit + push) → handed to the keys VM
 *    and verified there → signed. The site's bundled services and the real git, gpg and qbi-tlog
 *    (test/services/signSite.ts, a fake qrexec that plays dom0's redirects). Floor: a bare
 *    `qubes.Gpg` signature of the same bytes (the same fake qrexec hop to a keys VM that runs gpg
 *    with the same key, no gate), as split-gpg does without any log.
 * 2. Append throughput of the transparency log as the services use it (`qbi-tlog append`, one
 *    process per pass; 1 and 100 entries per pass), against Tessera's own POSIX appender measured
 *    here (`qbi-tlog bench-append`, in-process, batches of 256).
 * 3. `verify-log` over a 100k-entry log (qbi-tlog verify plus the entry checks), entries/s.
 */
import { execFileSync, spawn, spawnSync } from "child_process";
import * as crypto from "crypto";
import * as fs from "fs";
import * as path from "path";
import { verifyLog } from "../audit/verifyLog";
import { canonicalJson } from "../contracts/transparencyLog";
import { buildServices } from "../services/build";
import { makeSignSite, tlogProgram } from "../test/services/signSite";
import { distribution, now, ratio, roundSummary, secondsSince, sig, summary, table } from "./stats";

export interface SigningOptions {
  quick: boolean;
  workRoot: string;
  log: (line: string) => void;
}

const sha = (b: Buffer | string) => crypto.createHash("sha256").update(b).digest("hex");

export async function benchSigning(o: SigningOptions): Promise<Record<string, unknown>> {
  const dist = path.join(o.workRoot, "signing-dist");
  await buildServices(dist);
  const site = makeSignSite(dist);
  const n = o.quick ? 10 : 40;

  // A session stays open for the whole run, as in a builderv2 build.
  const buildLog = spawn(path.join(site.fake.routeDir, "qubesbuilder.BuildLog"), [], {
    env: { ...process.env, ...site.envOf("build-a"), QREXEC_REMOTE_DOMAIN: "build-a" }, stdio: ["pipe", "pipe", "ignore"],
  });
  await new Promise<void>((r) => buildLog.stdout.once("data", () => r()));
  buildLog.stdin.write("bench build running\n");

  // Bare qubes.Gpg: the same hop, gpg with the same key, no gate.
  const bare = path.join(site.fake.routeDir, "bench.BareGpg");
  fs.writeFileSync(bare, `#!/bin/sh\nread -r opts\nexec gpg --homedir ${site.keysHome} --batch --no-tty $opts\n`, { mode: 0o755 });
  const env = { ...process.env, ...site.envOf("build-a") };
  const data = (i: number) => {
    const f = path.join(site.root, `pkg-${i}.rpm`);
    fs.writeFileSync(f, crypto.randomBytes(4096));
    return f;
  };
  const gated: number[] = [];
  const floor: number[] = [];
  for (let i = 0; i < n; i++) {
    const f = data(i);
    let t = now();
    const g = spawnSync(path.join(dist, "gpg-client.js"), ["--detach-sign", "--armor", "-o", `${f}.asc`, f], { env });
    gated.push(secondsSince(t) * 1000);
    if (g.status !== 0) throw new Error(`gated signature failed: ${g.stderr.toString()}`);
    t = now();
    const b = spawnSync("qrexec-client-vm", ["--", "keys-a", "bench.BareGpg"], { env, input: Buffer.concat([Buffer.from("--detach-sign --armor\n"), fs.readFileSync(f)]) });
    floor.push(secondsSince(t) * 1000);
    if (b.status !== 0) throw new Error(`bare signature failed: ${b.stderr.toString()}`);
  }
  buildLog.stdin.end();
  await new Promise((r) => buildLog.on("close", r));
  const g = distribution(gated);
  const f = distribution(floor);

  // Append throughput.
  const tlogDir = (name: string) => path.join(site.root, `append-${name}`);
  const entry = (i: number) => canonicalJson({ v: 1, kind: "log-prefix", time: new Date(0).toISOString(), vm: "build-a", env: "a", path: `build-a/d/log_${i}`, contentSha256: sha(String(i)), contentSize: i });
  const appendRate = (perPass: number, passes: number): number => {
    const dir = tlogDir(`${perPass}`);
    const t = now();
    for (let p = 0; p < passes; p++) {
      execFileSync(tlogProgram(), ["append", "--dir", dir, "--private", site.tlogKey], { input: Array.from({ length: perPass }, (_v, i) => `${entry(p * perPass + i)}\n`).join("") });
    }
    return (perPass * passes) / secondsSince(t);
  };
  const one = appendRate(1, o.quick ? 10 : 30);
  const hundred = appendRate(100, o.quick ? 5 : 20);
  const tessera = JSON.parse(execFileSync(tlogProgram(), ["bench-append", "--dir", tlogDir("tessera"), "--n", String(o.quick ? 5000 : 50000), "--batch", "256"]).toString()) as { perSecond: number };

  // verify-log over 100k entries: prefixes and requests pointing at them, as a busy site writes.
  const size = o.quick ? 20000 : 100000;
  const big = tlogDir("verify");
  const lines: string[] = [];
  for (let i = 0; i < size; i += 2) {
    const vm = `build-${"abcd"[(i / 2) % 4]}`;
    lines.push(canonicalJson({ v: 1, kind: "log-prefix", time: new Date(0).toISOString(), vm, env: vm.slice(6), path: `${vm}/d/log_${i}`, contentSha256: sha(String(i)), contentSize: i }));
    lines.push(canonicalJson({ v: 1, kind: "signature-request", time: new Date(0).toISOString(), vm, env: vm.slice(6), signer: `keys-${vm.slice(6)}`, key: "default",
      sha256: sha(`pkg ${i}`), size: 4096, logs: [i] }));
  }
  for (let i = 0; i < lines.length; i += 10000) {
    execFileSync(tlogProgram(), ["append", "--dir", big, "--private", site.tlogKey], { input: `${lines.slice(i, i + 10000).join("\n")}\n`, maxBuffer: 64 << 20 });
  }
  const runs: number[] = [];
  for (let r = 0; r < (o.quick ? 1 : 3); r++) {
    const t = now();
    const [rep] = await verifyLog({ target: big, verifiers: [site.verifier], since: [], tlogProgram: tlogProgram() });
    runs.push(secondsSince(t));
    if (rep.problems.length) throw new Error(`verify-log found problems: ${rep.problems[0]}`);
  }
  const verifyS = summary(runs);
  const result = {
    round_trip_ms: roundSummary(g),
    bare_gpg_ms: roundSummary(f),
    added_p50_ms: sig(g.p50 - f.p50),
    added_p99_ms: sig(g.p99 - f.p99),
    ratio_p50: sig(ratio(g.p50, f.p50)),
    ratio_p99: sig(ratio(g.p99, f.p99)),
    append_entries_per_s: { one_per_pass: sig(one), hundred_per_pass: sig(hundred), tessera_in_process: sig(tessera.perSecond) },
    verify_log: { entries: size, seconds: roundSummary(verifyS), entries_per_s: sig(size / verifyS.median) },
  };
  o.log(`signing: round trip p50 ${result.round_trip_ms.p50} ms / p99 ${result.round_trip_ms.p99} ms; bare gpg p50 ${result.bare_gpg_ms.p50} / p99 ${result.bare_gpg_ms.p99} ms`);
  const tbl = table([
    ["sign-if-logged", "p50", "p99", "unit", "vs floor"],
    ["round trip (digest → logged → published → signed)", result.round_trip_ms.p50, result.round_trip_ms.p99, "ms", `${result.ratio_p50}x / ${result.ratio_p99}x`],
    ["floor: bare qubes.Gpg, same bytes", result.bare_gpg_ms.p50, result.bare_gpg_ms.p99, "ms", "1x"],
    ["added by the gate", result.added_p50_ms, result.added_p99_ms, "ms", "goal p99 ≤ 1000"],
    ["append, 1 entry per pass", sig(one), "", "entries/s", `${sig(one / tessera.perSecond, 2)}x`],
    ["append, 100 entries per pass", sig(hundred), "", "entries/s", `${sig(hundred / tessera.perSecond, 2)}x`],
    ["floor: Tessera POSIX in-process (batch 256)", sig(tessera.perSecond), "", "entries/s", "1x"],
    [`verify-log, ${size} entries`, sig(size / verifyS.median), "", "entries/s", "goal ≥ 50000"],
  ]);
  return { ...result, table: tbl };
}
