/**
 * qubesbuilder.LogReceived (keys VM): the logs VM hands over (through dom0's redirect, which pins
 * the build VM as argument) one signature request it has logged and published: the entry, the
 * log's checkpoint, an inclusion proof and a consistency proof from the checkpoint this keys VM
 * accepted last. This VM checks all of it itself (`qbi-tlog witness`): the checkpoint signature by
 * the logs VM's log key, consistency (a fork or rewind raises a sticky alarm and stops all
 * signing), inclusion. Only then the entry is recorded as signable, once, for a limited time.
 * See services/README.md.
 *
 * stdin: the proof bundle as JSON (≤ 1 MiB). stdout: `ok <checkpoint size>`, or `have <size>`
 * (exit 1) when the bundle's consistency proof starts from another size than ours.
 */
import * as path from "path";
import { z } from "zod";
import { LogReceivedConfig } from "../contracts/serviceConfig/logReceived";
import { loadConfig } from "./lib/config";
import { appendJsonLine, readStdinLimited } from "./lib/files";
import { runMain } from "./lib/main";
import { isDomUName } from "./lib/names";
import { EXIT, printable, Refusal } from "./lib/outcome";
import { qrexecEnv } from "./lib/proc";
import { pruneEntries, recordEntry, refuseOnAlarm, signingStateDir, witnessStateFile } from "./lib/signing";
import { ProofBundle, TlogTool, parseEntry } from "./lib/tlog";

const SERVICE = "qubesbuilder.LogReceived";

export { LogReceivedConfig };

async function main(): Promise<number> {
  const q = qrexecEnv();
  const cfg = loadConfig("log-received", LogReceivedConfig);
  const dir = signingStateDir();
  const journal = path.join(dir, "acks.jsonl");
  const refuse = (reason: string): never => {
    appendJsonLine(journal, { from: q.remoteDomain, vm: q.argument, decision: "refused", reason });
    throw new Refusal(reason);
  };
  if (!cfg.logsVms.includes(q.remoteDomain)) refuse(`caller ${printable(q.remoteDomain)} is not a configured logs VM`);
  if (!isDomUName(q.argument) || !cfg.buildVms.includes(q.argument)) refuse(`argument ${printable(q.argument)} is not a build VM served here`);
  refuseOnAlarm(dir);
  const { data, overflow } = await readStdinLimited(1024 * 1024);
  if (overflow) refuse("stdin too long");
  let bundle: ProofBundle;
  try {
    bundle = ProofBundle.parse(JSON.parse(data.toString("utf8")));
  } catch (e) {
    return refuse(`malformed proof bundle: ${e instanceof z.ZodError ? e.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ") : "not JSON"}`);
  }
  const w = await new TlogTool(cfg.tlogProgram).witness(witnessStateFile(dir), cfg.verifier, bundle);
  if (!w.ok) {
    if (w.reason === "wrong-from") {
      process.stdout.write(`have ${w.have}\n`);
      appendJsonLine(journal, { from: q.remoteDomain, vm: q.argument, decision: "retry", reason: w.message, have: w.have });
      return EXIT.REFUSED;
    }
    refuse(`transparency log check failed (${w.reason}): ${printable(w.message, 300)}`);
  }
  if (!w.ok) return EXIT.REFUSED;
  let entry;
  try {
    entry = parseEntry(Buffer.from(bundle.entry, "base64"));
  } catch (e) {
    return refuse(`logged entry ${bundle.index}: ${(e as Error).message}`);
  }
  if (entry.kind !== "signature-request") refuse(`entry ${bundle.index} is a ${entry.kind} entry, not a signature request`);
  if (entry.kind !== "signature-request") return EXIT.REFUSED;
  if (entry.vm !== q.argument) refuse(`entry ${bundle.index} is a request of ${entry.vm}, not of ${q.argument}`);
  if (entry.signer !== cfg.self) refuse(`entry ${bundle.index} is for signer ${entry.signer}, not for ${cfg.self}`);
  const a = recordEntry(dir, w.origin, bundle.index, entry, cfg.entryTtlSeconds);
  pruneEntries(dir);
  appendJsonLine(journal, { from: q.remoteDomain, vm: q.argument, decision: "accepted", index: a.index, sha256: a.sha256, key: a.key, checkpointSize: w.size });
  process.stdout.write(`ok ${w.size}\n`);
  return EXIT.OK;
}

if (require.main === module) runMain(SERVICE, main, { reasonOnStdout: true });
