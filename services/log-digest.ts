/**
 * qubesbuilder.LogDigest (logs VM): a build VM asks for a signature of some bytes. Before any
 * keys VM may sign them, this service logs the request in the transparency log: the sha256 and
 * size of the bytes, the key, the keys VM, and the state of the caller's log at this moment (a
 * `log-prefix` entry per open BuildLog session, or its last published log), publishes the new
 * checkpoint, and hands the entry with its proofs to the keys VM (services/lib/publisher.ts).
 *
 * Callers: a build VM (dom0 redirects `qrexec-client-vm dom0 qubesbuilder.LogDigest` here); or a
 * Windows keys VM asking on behalf of the build VM named in the argument (builderv2 calls WinSign
 * directly, so win-keys-ENV logs what it was asked to sign before it signs), which gets the proof
 * bundle back on stdout and verifies it itself.
 *
 * stdin: one line of JSON `{"sha256": <hex>, "size": <bytes>, "key": <fingerprint | "default" |
 * "win:<name>">, "from"?: <checkpoint size the caller holds>}`. stdout: `{"index", "checkpointSize"}`
 * for a build VM, the proof bundle for a Windows keys VM. Exit 0; 1 refused (reason on stderr);
 * 2 configuration; 3 not published (the reason on stderr).
 */
import { randomBytes } from "crypto";
import * as fs from "fs";
import * as path from "path";
import { z } from "zod";
import { homeDir, loadConfig, stateDir } from "./lib/config";
import { acquireLock, readStdinLimited, writeFileAtomic } from "./lib/files";
import { trace } from "./lib/log";
import { runMain } from "./lib/main";
import { SIGNER_KEY_RE } from "../contracts/transparencyLog";
import { isDomUName } from "./lib/names";
import { EXIT, printable, Refusal } from "./lib/outcome";
import { qrexecEnv } from "./lib/proc";
import { DigestRequest, DigestResult, LogsState, LogsVmConfig, Publisher } from "./lib/publisher";

const SERVICE = "qubesbuilder.LogDigest";

const Request = z.strictObject({
  sha256: z.string().regex(/^[0-9a-f]{64}$/, "a sha256 in lower-case hex"),
  size: z.number().int().nonnegative().max(2 ** 40),
  key: z.string().regex(SIGNER_KEY_RE, "a fingerprint, default or win:<key name>"),
  from: z.number().int().nonnegative().optional(),
});

/** Who is asking, for which build VM, and who may sign. */
export function requester(cfg: LogsVmConfig, caller: string, argument: string): { vm: string; signer: string; deliver: boolean } {
  const direct = cfg.buildVms[caller];
  if (direct) {
    if (argument) throw new Refusal("a build VM asks without an argument");
    return { vm: caller, signer: direct.keysVm, deliver: true };
  }
  const served = Object.entries(cfg.buildVms).find(([, b]) => b.winKeysVm === caller);
  if (!served) throw new Refusal(`caller ${printable(caller)} is neither a build VM nor a Windows keys VM served here`);
  if (argument !== served[0]) throw new Refusal(`${caller} signs for ${served[0]}, not for ${printable(argument)}`);
  return { vm: served[0], signer: caller, deliver: false };
}

async function main(): Promise<number> {
  const t0 = Date.now();
  trace("log-digest started (since process start)", Math.round(performance.timeOrigin));
  const q = qrexecEnv();
  const cfg = loadConfig("build-log", LogsVmConfig);
  if (!isDomUName(q.remoteDomain)) throw new Refusal("unknown or invalid caller");
  const who = requester(cfg, q.remoteDomain, q.argument);
  const { data, overflow } = await readStdinLimited(1024);
  if (overflow) throw new Refusal("request longer than 1024 bytes");
  let req: z.infer<typeof Request>;
  try {
    req = Request.parse(JSON.parse(data.toString("utf8")));
  } catch (e) {
    throw new Refusal(`malformed request: ${e instanceof z.ZodError ? e.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ") : "not JSON"}`);
  }
  const windows = req.key.startsWith("win:");
  if (windows !== !who.deliver) throw new Refusal(windows ? "a build VM cannot log a Windows key request" : "a Windows keys VM logs only win:<key> requests");

  const st = new LogsState(stateDir(path.join(homeDir(), ".local/state/qubes-build-infra/build-log")), cfg);
  const id = `${Date.now()}-${process.pid}-${randomBytes(4).toString("hex")}`;
  const request: DigestRequest = {
    id, vm: who.vm, env: cfg.buildVms[who.vm].env, signer: who.signer, deliver: who.deliver, from: req.from ?? 0,
    key: req.key, sha256: req.sha256, size: req.size, time: new Date().toISOString(), pid: process.pid,
  };
  writeFileAtomic(st.requestFile(id), JSON.stringify(request));
  // Whoever holds the lock publishes every waiting request (ours included) in one pass.
  const release = await acquireLock(st.lock, cfg.lockTimeoutMs);
  trace("log-digest lock", t0);
  try {
    if (!fs.existsSync(st.resultFile(id))) await new Publisher(cfg, st, SERVICE).pass();
    trace("log-digest pass", t0);
  } catch (e) {
    if (!fs.existsSync(st.resultFile(id))) {
      fs.rmSync(st.requestFile(id), { force: true });
      throw e;
    }
  } finally {
    release();
  }
  let res: DigestResult;
  try {
    res = DigestResult.parse(JSON.parse(fs.readFileSync(st.resultFile(id), "utf8")));
  } finally {
    fs.rmSync(st.resultFile(id), { force: true });
    fs.rmSync(st.requestFile(id), { force: true });
  }
  if (!res.ok) {
    if (res.code === EXIT.REFUSED) throw new Refusal(res.reason);
    throw new Error(res.reason);
  }
  // Quiet on success: the caller's stderr is the builder's log (the journal has the details).
  process.stdout.write(`${JSON.stringify(who.deliver ? { index: res.index, checkpointSize: res.checkpointSize } : res.bundle)}\n`);
  return EXIT.OK;
}

if (require.main === module) runMain(SERVICE, main, { reasonOnStdout: true });
