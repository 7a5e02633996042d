/**
 * The e2e tests' site: a fresh qubes-sim with the stand-in GitHub (logs repository and the
 * stand-in builder repositories), the `local` stack deployed into it with the real `pulumi up`
 * (policy pack included), an upload host (a TCP endpoint of the sim's stand-in internet,
 * uploads.qubes-sim.test), command-signing keys, and the sim restarted so that sys-net boots with
 * its webhook receiver behind its uplink.
 */
import { execFileSync } from "child_process";
import * as crypto from "crypto";
import * as fs from "fs";
import * as net from "net";
import * as path from "path";
import type { Stack } from "@pulumi/pulumi/automation";
import { parse } from "yaml";
import { readJournal, type JournalEntry } from "../../sim/broker";
import { createStandinGithub } from "../../sim/standin-builders";
import { receiverOf, sendWebhook, type WebhookResult } from "../../sim/webhook";
import { openStack, projectRoot, tempDir } from "../helpers/pulumi";
import { startSim, type StartedSim } from "../helpers/sim";

export const NS = "qubes-build-infra";
export const SECRET = "e2e-webhook-secret-0123456789abcdef";
export const localConfig = (parse(fs.readFileSync(path.join(projectRoot, "Pulumi.local.yaml"), "utf8")) as { config: Record<string, unknown> }).config;

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
export async function waitFor<T>(fn: () => T | undefined | null | false, timeoutMs: number, what: string): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(200);
  }
}
/** Whether something accepts TCP connections at the URL's host and port. */
export const answers = (url: string) =>
  new Promise<boolean>((r) => {
    const u = new URL(url);
    const c = net.connect({ host: u.hostname, port: Number(u.port || 80), timeout: 1000 });
    c.on("connect", () => {
      c.destroy();
      r(true);
    });
    c.on("error", () => r(false));
    c.on("timeout", () => {
      c.destroy();
      r(false);
    });
  });

export interface E2eSite {
  sim: StartedSim;
  stack: Stack;
  state: () => string;
  /** A VM's file on the host (its private storage in the sim's state). */
  vmFile: (vm: string, p: string) => string;
  journal: () => JournalEntry[];
  hostGpg: (args: string[], input?: string) => string;
  /** git in the stand-in GitHub's logs repository. */
  logsGit: (...args: string[]) => string;
  /** Everything the upload host received (`<name> <size> <sigsize>\n<data><sig>` each). */
  uploads: Buffer[];
  commandKey: string;
  untrustedKey: string;
  /** The last `up`'s stack outputs. */
  outputs: Record<string, unknown>;
  signingKeys: () => Record<string, string>;
  deploy: (refresh?: boolean) => Promise<void>;
  setConfig: (patch?: Record<string, unknown>) => Promise<void>;
  webhook: (service: "trigger_build" | "process_comment", event: string, payload: unknown) => Promise<WebhookResult>;
  clearsign: (fpr: string, command: string) => string;
  stop: () => Promise<void>;
}

/**
 * The upload host of the stand-in internet (uploads.qubes-sim.test): reads
 * "<name> <size> <sigsize>\n<data><sig>", keeps it in `uploads`, answers OK with its sha256.
 * Listening on every address follows the sim's stand-in internet across restarts.
 */
export async function startUploadHost(uploads: Buffer[]): Promise<net.Server> {
  const upload = net.createServer((c) => {
    const chunks: Buffer[] = [];
    c.on("data", (d: Buffer) => {
      chunks.push(d);
      const all = Buffer.concat(chunks);
      const nl = all.indexOf(10);
      if (nl < 0) return;
      const [, size, sig] = all.subarray(0, nl).toString().split(" ");
      if (all.length >= nl + 1 + Number(size) + Number(sig)) {
        uploads.push(all);
        c.end(`OK ${crypto.createHash("sha256").update(all).digest("hex")}\n`);
      }
    });
    c.on("error", () => undefined);
  });
  await new Promise<void>((r) => upload.listen(0, "0.0.0.0", () => r()));
  return upload;
}

/** Deploys the local site into a fresh qubes-sim; `name` keeps stacks and temp dirs apart. */
export async function startE2eSite(name: string): Promise<E2eSite> {
  const dir = tempDir(name);
  const backend = tempDir(`${name}-backend`);
  const gnupg = tempDir(`${name}-gnupg`);
  const stackName = `${name}${process.pid}`;
  const stackFile = path.join(projectRoot, `Pulumi.${stackName}.yaml`);
  // The receiver's loopback port inside sys-net (any: sys-net has its own network namespace).
  const webhooksPort = 18500 + (process.pid % 1000);
  const uploads: Buffer[] = [];
  const upload = await startUploadHost(uploads);
  const uploadPort = (upload.address() as net.AddressInfo).port;

  const hostGpg = (args: string[], input?: string) =>
    execFileSync("gpg", ["--homedir", gnupg, "--batch", "--yes", ...args], { input, stdio: ["pipe", "pipe", "pipe"] }).toString();
  const mk = (uid: string) => {
    hostGpg(["--passphrase", "", "--quick-gen-key", uid, "ed25519", "sign", "never"]);
    return /fpr:::::::::([0-9A-F]{40}):/.exec(hostGpg(["--with-colons", "--list-secret-keys", uid]))![1];
  };
  const commandKey = mk("Trusted maintainer <m@example.org>");
  const untrustedKey = mk("Stranger <s@example.org>");
  const trustedKeys = hostGpg(["--armor", "--export", commandKey]);

  let sim = await startSim({ dir });
  const state = () => sim.stateDir;
  // The builders' code (read-only for every VM; only the logs VM writes build-logs.git).
  createStandinGithub(path.join(state(), "github"));
  const stack = await openStack(projectRoot, stackName, backend);

  const setConfig = async (patch: Record<string, unknown> = {}) => {
    const all: Record<string, { value: string; secret?: boolean }> = {};
    for (const [k, v] of Object.entries({ ...localConfig, ...patch })) {
      // The stack file's secrets are encrypted with its own passphrase: set below instead.
      if (typeof v === "object" && v !== null && "secure" in v) continue;
      all[k] = { value: typeof v === "string" ? v : JSON.stringify(v) };
    }
    const hosts = localConfig[`${NS}:uploadHosts`] as Record<string, Record<string, unknown>>;
    const yum = { ...hosts["yum.qubes-os.org"], address: "uploads.qubes-sim.test", port: uploadPort };
    all[`${NS}:uploadHosts`] = { value: JSON.stringify({ "yum.qubes-os.org": yum }) };
    all[`${NS}:admin`] = { value: JSON.stringify({ transport: "sim", socket: sim.socket }) };
    all[`${NS}:protectKeys`] = { value: "false" };
    all[`${NS}:signingWindowSeconds`] = { value: "60" };
    all[`${NS}:commands`] = { value: JSON.stringify({ trustedKeys, maintainers: { [commandKey]: { components: "_all_", releases: "_all_" } } }) };
    all[`${NS}:webhooks`] = { value: JSON.stringify({ ...(localConfig[`${NS}:webhooks`] as object), receiverPort: webhooksPort }) };
    all[`${NS}:webhookSecret`] = { value: SECRET, secret: true };
    all[`${NS}:githubApiToken`] = { value: "e2e-stand-in-token", secret: true };
    await stack.setAllConfig(all);
  };

  const site: E2eSite = {
    get sim() {
      return sim;
    },
    stack,
    state,
    vmFile: (vm, p) => path.join(state(), "vms", vm, "rw", p.startsWith("/home/") ? p.replace(/^\/home/, "home") : p.replace(/^\/usr\/local/, "usrlocal")),
    journal: () => readJournal(path.join(state(), "qrexec-journal.jsonl")),
    hostGpg,
    // The repository belongs to the logs VM's user (a host id of the sim's range), not to us.
    logsGit: (...args) => execFileSync("git", ["-c", "safe.directory=*", "-C", path.join(state(), "github", "build-logs.git"), ...args]).toString(),
    uploads,
    commandKey,
    untrustedKey,
    outputs: {},
    signingKeys: () => Object.fromEntries(Object.entries((site.outputs.signingKeys ?? {}) as Record<string, unknown>).map(([k, v]) => [k, String(v)])),
    deploy: async (refresh = false) => {
      const r = await stack.up({ policyPacks: [path.join(projectRoot, "policy")], refresh });
      if (r.summary.result !== "succeeded") throw new Error(`pulumi up: ${r.summary.result}`);
      site.outputs = Object.fromEntries(Object.entries(r.outputs).map(([k, v]) => [k, v.value]));
    },
    setConfig,
    webhook: async (service, event, payload) =>
      sendWebhook({ url: `${receiverOf(state()).url}/api/services/${service}`, event, secret: SECRET, payload }),
    clearsign: (fpr, command) => hostGpg(["-u", fpr, "--digest-algo", "SHA256", "--clearsign"], `${command}\n`),
    stop: async () => {
      await sim?.stop();
      upload.close();
      execFileSync("gpgconf", ["--homedir", gnupg, "--kill", "all"], { stdio: "ignore" });
      fs.rmSync(stackFile, { force: true });
      for (const d of [dir, backend, gnupg]) fs.rmSync(d, { recursive: true, force: true });
    },
  };

  try {
    await setConfig();
    await site.deploy();
    // sys-net's boot starts the webhook receiver (the site's rc.local block); the sim is restarted
    // so that running VMs boot again, as after a reboot of the machine.
    await sim.stop();
    sim = await startSim({ dir });
    for (const end = Date.now() + 30_000; !(await answers(receiverOf(state()).url)); await sleep(200)) {
      if (Date.now() > end) throw new Error("timed out waiting for the webhook receiver behind sys-net's uplink");
    }
    await sleep(500);
    return site;
  } catch (e) {
    // The caller gets no site to stop: leave nothing running behind.
    await site.stop();
    throw e;
  }
}
