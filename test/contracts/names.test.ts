// One rule for a qube's name (contracts/names.ts): every place that reads one accepts and refuses
// the same names: the stack config, the providers, the qrexec policy parser, the policy pack's
// builderv2 schema, the transparency log's entries, the services (which also refuse dom0) and
// qubes-sim's qubesd.
import { isVmName, MAX_VM_NAME, vmNameFault, vmNameProblem } from "../../contracts/names";
import { canonicalJson, parseEntry } from "../../contracts/transparencyLog";
import { vmInputs } from "../../providers/impl/qubesVm";
import { proxyInputs } from "../../providers/impl/sshProxyConfig";
import { parsePolicyFile } from "../../qrexec";
import { isDomUName } from "../../services/lib/names";
import { vmName as serviceVmName } from "../../services/lib/shapes";
import { validateName } from "../../sim/model";
import { parseSiteConfig } from "../../site/config";
import { builderYmlSchema } from "../../site/builderv2Schema";

/** Names Qubes accepts (qubes-core-admin's validate_name), among them the edges of each check. */
const VALID = [
  "work", "a", "Z", "sys-net", "fedora-43-xfce", "A_b.c-d", "a".repeat(MAX_VM_NAME), "dom0", "a..b", "a.", "a-", "Domain-1",
  "work-dmx", "dm", "none1", "defaults", "Default", "x-d", "keys-fedora",
];
/** Names Qubes refuses, each with the check that refuses it. */
const INVALID: [string, string][] = [
  ["", "empty"],
  ["a".repeat(MAX_VM_NAME + 1), "too-long"],
  ["1work", "bad-start"],
  ["-a", "bad-start"],
  ["_a", "bad-start"],
  [".a", "bad-start"],
  ["a b", "bad-characters"],
  ["a/b", "bad-characters"],
  ["a+b", "bad-characters"],
  ["a:b", "bad-characters"],
  ["wörk", "bad-characters"],
  ["a\n", "bad-characters"],
  ["Domain-0", "reserved"],
  ["none", "reserved"],
  ["default", "reserved"],
  ["work-dm", "dm-suffix"],
  ["a-dm", "dm-suffix"],
];
const INVALID_NAMES = INVALID.map(([n]) => n);

/** Each place, as "does it accept this name?". */
const site = (name: string): boolean => {
  try {
    parseSiteConfig({
      admin: { transport: "sim", socket: "/tmp/s.sock" },
      envs: { fedora: { logs: "logs", builders: [{ dir: "/home/user/b", release: "4.2" }] } },
      logs: { repo: "file:///srv/logs.git" },
      netTemplate: name,
    });
    return true;
  } catch (e) {
    if (!/qubes-build-infra:netTemplate/.test((e as Error).message)) throw e; // refused for another reason: the test is wrong
    return false;
  }
};
const qrexec = (name: string): boolean => {
  if (/\s/.test(name)) return false; // a token never holds white space: the line would have other fields
  const parsed = parsePolicyFile(`qubes.X * work ${name} allow\n`, "t.policy");
  return parsed.errors.length === 0;
};
const logEntry = (name: string): boolean => {
  const entry = { v: 1, kind: "log-prefix", time: "2026-01-01T00:00:00Z", vm: name, env: "fedora", path: "work/x/log_1", contentSha256: "0".repeat(64), contentSize: 0 };
  try {
    parseEntry(canonicalJson(entry));
    return true;
  } catch {
    return false;
  }
};
const sim = (name: string): boolean => {
  try {
    validateName(name);
    return true;
  } catch {
    return false;
  }
};
const dispvm = builderYmlSchema.shape.executor.shape.options.shape.dispvm;

const PLACES: Record<string, (name: string) => boolean> = {
  "contracts isVmName": isVmName,
  "contracts vmNameProblem": (n) => vmNameProblem(n) === undefined,
  "site config (netTemplate)": site,
  "QubesVm name": (n) => vmInputs.shape.name.safeParse(n).success,
  "SshProxyConfig vm": (n) => proxyInputs.shape.vm.safeParse(n).success,
  "SshProxyConfig netvm": (n) => proxyInputs.shape.netvm.safeParse(n).success,
  "qrexec policy target": qrexec,
  "builderv2 executor dispvm": (n) => dispvm.safeParse(n).success,
  "transparency log entry vm": logEntry,
  "qubes-sim validateName": sim,
};
/** The services take every valid name but dom0's. */
const SERVICE_PLACES: Record<string, (name: string) => boolean> = {
  "services isDomUName": isDomUName,
  "services config vmName": (n) => serviceVmName.safeParse(n).success,
};

describe("a qube's name", () => {
  it.each(Object.keys(PLACES))("%s accepts every valid name and refuses every invalid one", (place) => {
    const accepts = PLACES[place];
    expect(VALID.filter((n) => !accepts(n))).toEqual([]);
    expect(INVALID_NAMES.filter((n) => accepts(n))).toEqual([]);
  });

  it.each(Object.keys(SERVICE_PLACES))("%s accepts every valid name but dom0 and refuses every invalid one", (place) => {
    const accepts = SERVICE_PLACES[place];
    expect(VALID.filter((n) => !accepts(n))).toEqual(["dom0"]);
    expect(INVALID_NAMES.filter((n) => accepts(n))).toEqual([]);
  });

  it("names the check that refuses it, as Qubes orders them", () => {
    expect(INVALID.map(([n]) => [n, vmNameFault(n)])).toEqual(INVALID);
    expect(VALID.map(vmNameFault).filter((f) => f !== undefined)).toEqual([]);
  });

  it("is refused with a message that names it and what was expected", () => {
    expect(vmNameProblem("1work")).toBe(`invalid qube name "1work": expected a letter followed by letters, digits, '_', '.' or '-'`);
    expect(vmNameProblem("a".repeat(32))).toMatch(/is longer than 31 characters/);
    expect(vmNameProblem("work-dm")).toBe(`qube name "work-dm" cannot end with -dm`);
    expect(() => validateName("Domain-0")).toThrow("VM name cannot be 'Domain-0'");
    expect(() => validateName("x-dm")).toThrow("VM name cannot end with -dm");
    expect(() => validateName("none")).toThrow("VM name cannot be 'none' nor 'default'");
  });
});
