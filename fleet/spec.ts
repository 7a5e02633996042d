/**
 * Which stacks a fleet run covers: `--stacks a,b` or a fleet file (YAML), one stack per Qubes
 * machine, all of the same program. Pure: the caller reads the file.
 *
 *   stacks:
 *     - machine-a                       # its passphrase as bin/pulumi finds it
 *     - stack: machine-b
 *       passphraseFile: /etc/qbi/machine-b.passphrase
 *   parallel: 2                         # default: every stack at once
 *   policyPacks: [policy]               # default: the project's policy pack
 *   policyPackConfig: policy/config.json
 */
import * as path from "path";
import { isNode, LineCounter, parseDocument } from "yaml";
import { z } from "zod";

/** A Pulumi stack name as this project uses them (no organization or project part). */
const stackName = z.string().regex(/^[A-Za-z0-9_.-]{1,100}$/, "a stack name: letters, digits, '_', '.', '-'");

const entry = z.union([
  stackName,
  z.strictObject({
    stack: stackName,
    /** The stack's passphrase file (when its secrets use a passphrase and stacks/<stack>.passphrase is not it). */
    passphraseFile: z.string().min(1).optional(),
  }),
]);

export const fleetFileSchema = z.strictObject({
  stacks: z.array(entry).min(1, "at least one stack"),
  parallel: z.number().int().min(1).max(64).optional(),
  policyPacks: z.array(z.string().min(1)).min(1).optional(),
  policyPackConfig: z.string().min(1).optional(),
});

export interface FleetStack {
  name: string;
  /** Absolute path, when the fleet file names one. */
  passphraseFile?: string;
}

export interface FleetSpec {
  stacks: FleetStack[];
  parallel: number;
  /** Absolute paths. */
  policyPacks: string[];
  policyPackConfig?: string;
}

function checkUnique(stacks: FleetStack[], where: string): void {
  const seen = new Set<string>();
  for (const s of stacks) {
    if (seen.has(s.name)) throw new Error(`${where}: stack ${s.name} is listed twice`);
    seen.add(s.name);
  }
}

/** `--stacks a,b,c`. */
export function specFromList(list: string, projectRoot: string, parallel?: number): FleetSpec {
  const names = list.split(",").map((s) => s.trim()).filter((s) => s !== "");
  if (names.length === 0) throw new Error("--stacks: give at least one stack name, comma-separated");
  const stacks = names.map((n) => {
    const r = stackName.safeParse(n);
    if (!r.success) throw new Error(`--stacks: ${JSON.stringify(n)}: ${r.error.issues[0].message}`);
    return { name: r.data };
  });
  checkUnique(stacks, "--stacks");
  return { stacks, parallel: parallel ?? stacks.length, policyPacks: [path.join(projectRoot, "policy")] };
}

/** A fleet file's text; relative paths in it are relative to the file's directory. */
export function specFromFile(text: string, file: string, projectRoot: string, parallel?: number): FleetSpec {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false });
  if (doc.errors.length > 0) {
    const e = doc.errors[0];
    throw new Error(`${file}:${e.linePos?.[0].line ?? 1}: not YAML: ${e.message.split("\n")[0]}`);
  }
  const r = fleetFileSchema.safeParse(doc.toJS());
  if (!r.success) {
    const i = r.error.issues[0];
    // The line of the offending value, or of the nearest enclosing one that exists.
    let line = 1;
    for (let n = i.path.length; n >= 0; n--) {
      const node = n === 0 ? doc.contents : doc.getIn(i.path.slice(0, n) as (string | number)[], true);
      if (isNode(node) && node.range) {
        line = lines.linePos(node.range[0]).line;
        break;
      }
    }
    throw new Error(`${file}:${line}: ${i.path.map(String).join(".") || "(top)"}: ${i.message}`);
  }
  const dir = path.dirname(path.resolve(file));
  const abs = (p: string) => path.resolve(dir, p);
  const stacks = r.data.stacks.map((e): FleetStack => (typeof e === "string" ? { name: e } : {
    name: e.stack, ...(e.passphraseFile ? { passphraseFile: abs(e.passphraseFile) } : {}),
  }));
  checkUnique(stacks, file);
  return {
    stacks,
    parallel: parallel ?? r.data.parallel ?? stacks.length,
    policyPacks: (r.data.policyPacks ?? []).map(abs).concat(r.data.policyPacks ? [] : [path.join(projectRoot, "policy")]),
    ...(r.data.policyPackConfig ? { policyPackConfig: abs(r.data.policyPackConfig) } : {}),
  };
}
