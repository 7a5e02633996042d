/**
 * qubesbuilder.WinSign.QueryKey / GetCert / Sign (Windows keys VM, win-keys-ENV): Authenticode
 * signing for builderv2's Windows builds, through the same sign-if-logged gate as qubes.Gpg.
 * builderv2 calls these services directly with the whole binary on stdin, so this VM logs the
 * request itself: it spools and hashes the input, asks the logs VM to log the digest on behalf of
 * the calling build VM (`qrexec-client-vm dom0 qubesbuilder.LogDigest+<build VM>`), verifies the
 * returned entry, checkpoint and proofs itself (`qbi-tlog witness`, the same witness state and
 * alarm as LogReceived), consumes the entry once, and only then runs osslsigncode. Key creation
 * and deletion are not services here: keys are made by the site, never by a build VM.
 *
 * The service is known by QREXEC_SERVICE_FULL_NAME (one program installed under the three
 * names); the argument is the key name with `__` for a space, as builderv2 sends it.
 * Exit 0; 1 refused (the reason on stderr and in the journal); 2 configuration; 3 failure.
 */
import { spawn } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { WinSignConfig } from "../contracts/serviceConfig/winSign";
import { loadConfig } from "./lib/config";
import { appendJsonLine } from "./lib/files";
import { log } from "./lib/log";
import { runMain } from "./lib/main";
import { EXIT, printable, Refusal } from "./lib/outcome";
import { qrexecEnv, run } from "./lib/proc";
import { consumeEntry, recordEntry, refuseOnAlarm, signingStateDir, witnessStateFile } from "./lib/signing";
import { spool } from "./lib/spool";
import { ProofBundle, TlogTool, checkpointSize, parseEntry } from "./lib/tlog";

const SERVICE = "qubesbuilder.WinSign";

export { WinSignConfig };

const keyFiles = (cfg: WinSignConfig, arg: string) => {
  const name = arg.replace(/__/g, " ");
  return { key: path.join(cfg.keysDir, `${name}.key`), crt: path.join(cfg.keysDir, `${name}.crt`) };
};

/** Logs the digest through the logs VM and verifies the entry it comes back with. */
async function logAndVerify(cfg: WinSignConfig, dir: string, caller: string, keyArg: string, sha256: string, size: number): Promise<void> {
  const tool = new TlogTool(cfg.tlogProgram);
  let from = 0;
  try {
    from = checkpointSize(fs.readFileSync(witnessStateFile(dir), "utf8"));
  } catch {
    /* no checkpoint accepted yet */
  }
  const key = `win:${keyArg}`;
  const r = await run(["qrexec-client-vm", "--", "dom0", `qubesbuilder.LogDigest+${caller}`], {
    input: `${JSON.stringify({ sha256, size, key, from })}\n`,
    timeoutMs: 300000,
  });
  if (r.code !== 0) throw new Refusal(`the logs VM did not log these bytes (exit ${r.code}): ${printable(r.stderr.trim(), 300)}`);
  let bundle: ProofBundle;
  try {
    bundle = ProofBundle.parse(JSON.parse(r.stdout));
  } catch {
    throw new Refusal("the logs VM's answer is not a proof bundle");
  }
  const w = await tool.witness(witnessStateFile(dir), cfg.verifier, bundle);
  if (!w.ok) throw new Refusal(`transparency log check failed (${w.reason}): ${printable(w.message, 300)}`);
  const entry = parseEntry(Buffer.from(bundle.entry, "base64"));
  if (entry.kind !== "signature-request" || entry.vm !== caller || entry.signer !== cfg.self || entry.key !== key || entry.sha256 !== sha256 || entry.size !== size) {
    throw new Refusal(`logged entry ${bundle.index} is not this request (${entry.kind} of ${entry.vm})`);
  }
  recordEntry(dir, w.origin, bundle.index, entry, cfg.entryTtlSeconds);
}

function osslsign(cfg: WinSignConfig, files: { key: string; crt: string }, input: string): Promise<number> {
  const out = `${input}.signed`;
  return new Promise<number>((resolve, reject) => {
    const child = spawn(cfg.osslsigncode, ["sign", "-certs", files.crt, "-key", files.key, "-h", "sha256", "-in", input, "-out", out], { stdio: ["ignore", "ignore", "pipe"] });
    let err = "";
    child.stderr.on("data", (d: Buffer) => (err += d.toString().slice(0, 2000)));
    child.on("error", reject);
    child.on("close", (c) => {
      if (c !== 0) {
        log(SERVICE, `osslsigncode failed (${c}): ${printable(err.trim(), 300)}`);
        resolve(EXIT.FAILED);
        return;
      }
      const s = fs.createReadStream(out);
      s.on("error", reject);
      s.on("end", () => {
        fs.rmSync(out, { force: true });
        // Resolve once everything is flushed to the caller (the process exits right after).
        process.stdout.write("", () => resolve(EXIT.OK));
      });
      s.pipe(process.stdout, { end: false });
    });
  });
}

async function main(): Promise<number> {
  const q = qrexecEnv();
  const cfg = loadConfig("win-sign", WinSignConfig);
  const dir = signingStateDir();
  const journal = path.join(dir, "gate.jsonl");
  const op = /^qubesbuilder\.WinSign\.(QueryKey|GetCert|Sign)(\+|$)/.exec(process.env.QREXEC_SERVICE_FULL_NAME ?? "")?.[1];
  const refuse = (reason: string, extra: Record<string, unknown> = {}): never => {
    appendJsonLine(journal, { caller: q.remoteDomain, service: `WinSign.${op ?? "?"}`, decision: "refused", reason, ...extra });
    throw new Refusal(reason);
  };
  if (!op) refuse(`not a WinSign service: ${printable(process.env.QREXEC_SERVICE_FULL_NAME ?? "")}`);
  if (!cfg.clients.includes(q.remoteDomain)) refuse(`caller ${printable(q.remoteDomain)} is not an allowed client`);
  if (!cfg.keys.includes(q.argument)) refuse(`key ${printable(q.argument)} is not a signing key of this VM`);
  const files = keyFiles(cfg, q.argument);
  const exists = fs.existsSync(files.key) && fs.existsSync(files.crt);
  if (op === "QueryKey") {
    process.stdout.write(`Key '${q.argument}' ${exists ? "exists" : "does not exist"}\n`);
    return EXIT.OK;
  }
  if (!exists) refuse(`key '${q.argument}' does not exist`);
  if (op === "GetCert") {
    process.stdout.write(fs.readFileSync(files.crt));
    return EXIT.OK;
  }
  refuseOnAlarm(dir);
  let data;
  try {
    data = await spool(path.join(dir, "spool"), process.stdin, cfg.maxInputBytes);
  } catch (e) {
    return refuse((e as Error).message);
  }
  try {
    const wanted = { vm: q.remoteDomain, key: `win:${q.argument}`, sha256: data.sha256, size: data.size };
    let entry;
    try {
      await logAndVerify(cfg, dir, q.remoteDomain, q.argument, data.sha256, data.size);
      entry = await consumeEntry(dir, wanted);
    } catch (e) {
      return refuse((e as Error).message, { sha256: data.sha256, size: data.size, key: wanted.key });
    }
    appendJsonLine(journal, { caller: q.remoteDomain, service: "WinSign.Sign", decision: "signed", entry: entry.index, sha256: data.sha256, size: data.size, key: wanted.key });
    return await osslsign(cfg, files, data.file);
  } finally {
    data.remove();
  }
}

if (require.main === module) runMain(SERVICE, main);
