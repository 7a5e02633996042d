/**
 * qubesbuilder.LogReceived (keys VM): the logs VM tells us (through dom0's redirect) that a
 * build VM's log was committed and pushed. Records the acknowledgement and opens that build VM's
 * signing window for `windowSeconds`. See services/README.md.
 *
 * stdin: exactly one line `<commit: 40 or 64 lowercase hex> <relative log path>\n`.
 */
import * as path from "path";
import { z } from "zod";
import { EXIT, Refusal, appendJsonLine, isVmName, loadConfig, log, printable, qrexecEnv, readStdinLimited, runMain, vmName } from "./lib/common";
import { signingStateDir, writeWindow } from "./lib/window";

const SERVICE = "qubesbuilder.LogReceived";

export const LogReceivedConfig = z
  .object({
    /** Logs VMs allowed to acknowledge (QREXEC_REMOTE_DOMAIN). */
    logsVms: z.array(vmName).min(1),
    /** Build VMs this keys VM serves; the argument must be one of them. */
    buildVms: z.array(vmName).min(1),
    windowSeconds: z.number().int().min(1).max(3600).default(300),
  })
  .strict();

const REL_PATH_RE = /^[A-Za-z0-9_.-]+(\/[A-Za-z0-9_.-]+){0,8}$/;

export function parseAck(text: string, vm: string): { commit: string; path: string } {
  const m = /^([0-9a-f]{40}|[0-9a-f]{64}) ([^\n]{1,512})\n?$/.exec(text);
  if (!m) throw new Refusal("stdin must be one line: <commit hex> <log path>");
  const rel = m[2];
  if (!REL_PATH_RE.test(rel) || rel.split("/").some((s) => s === "." || s === "..")) throw new Refusal(`bad log path: ${printable(rel)}`);
  if (rel.split("/")[0] !== vm) throw new Refusal(`log path ${printable(rel)} is not a log of ${vm}`);
  if (!/^log_[0-9-]+(\.[0-9]+)?(\.xz)?$/.test(path.posix.basename(rel))) throw new Refusal(`not a log file name: ${printable(rel)}`);
  return { commit: m[1], path: rel };
}

async function main(): Promise<number> {
  const q = qrexecEnv();
  const cfg = loadConfig("log-received", LogReceivedConfig);
  if (!cfg.logsVms.includes(q.remoteDomain)) throw new Refusal(`caller ${printable(q.remoteDomain)} is not a configured logs VM`);
  if (!isVmName(q.argument) || !cfg.buildVms.includes(q.argument)) throw new Refusal(`argument ${printable(q.argument)} is not a build VM served here`);
  const { data, overflow } = await readStdinLimited(1024);
  if (overflow) throw new Refusal("stdin too long");
  const ack = parseAck(data.toString("latin1"), q.argument);
  const dir = signingStateDir();
  const now = Date.now();
  appendJsonLine(path.join(dir, "acks.jsonl"), { from: q.remoteDomain, vm: q.argument, commit: ack.commit, path: ack.path });
  writeWindow(dir, { vm: q.argument, openedAt: now, expiresAt: now + cfg.windowSeconds * 1000, commit: ack.commit, path: ack.path, signatures: 0 });
  log(SERVICE, `signing window for ${q.argument} open for ${cfg.windowSeconds}s (log ${ack.path} at ${ack.commit.slice(0, 12)})`);
  return EXIT.OK;
}

if (require.main === module) runMain(SERVICE, main);
