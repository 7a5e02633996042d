/**
 * The CrossGuard policy pack of the site: `pulumi preview --policy-pack policy`.
 *
 * Thin wiring only: every policy is a stack policy that hands the stack's resources (plain JSON,
 * with which props are secrets) to the pure checks in `policy/checks.ts`.
 */
import { PolicyConfigSchema, PolicyPack, PolicyResource, StackValidationPolicy } from "@pulumi/policy";
import { z } from "zod";
import { DEFAULT_CONFIG, PackConfig, POLICIES, ResourceInput, runChecks } from "./checks";
import { UNKNOWN_AT_PREVIEW } from "./model";
import { installSecretTracking, secretKeysOf, secretPathsOf } from "./secrets";

installSecretTracking();

export { UNKNOWN_AT_PREVIEW };

/** Reads one proxied value; the SDK throws when a value is not known yet during a preview. */
function read(get: () => unknown): unknown {
  try {
    return plain(get());
  } catch (e) {
    if (e instanceof Error && /can't be known during preview/.test(e.message)) return UNKNOWN_AT_PREVIEW;
    throw e;
  }
}

/** Plain JSON from the SDK's proxied props, unknown (preview) values replaced by a marker. */
function plain(v: unknown): unknown {
  if (v === null || typeof v !== "object") return v;
  if (Array.isArray(v)) return v.map((_, i) => read(() => (v as unknown[])[i]));
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(v)) out[k] = read(() => (v as Record<string, unknown>)[k]);
  return out;
}

/** Only our dynamic resources matter to the checks (the Stack's outputs are not read at all). */
const isSiteResource = (r: PolicyResource): boolean => r.type.startsWith("pulumi-nodejs:dynamic");

function toInput(r: PolicyResource): ResourceInput {
  const input: ResourceInput = { type: r.type, urn: r.urn, name: r.name, props: plain(r.props) };
  const secrets = secretKeysOf(r.props);
  if (secrets !== undefined) input.secretKeys = secrets;
  const paths = secretPathsOf(r.props);
  if (paths !== undefined) input.secretPaths = paths;
  return input;
}

const CONFIG_SCHEMA: Record<keyof Omit<PackConfig, "now">, PolicyConfigSchema["properties"][string]> = {
  torGateway: { type: "string", default: DEFAULT_CONFIG.torGateway, description: "The Tor gateway build VMs must use as netvm." },
  netvm: { type: "string", default: DEFAULT_CONFIG.netvm, description: "The clearnet net VM (webhook receiver, ssh relay)." },
  minBuildVolumeBytes: { type: "integer", minimum: 0, default: DEFAULT_CONFIG.minBuildVolumeBytes, description: "Floor of a build VM's private volume, in bytes." },
  templateMaxAgeDays: { type: "integer", minimum: 0, default: 0, description: "Maximum age of a VM's last-updated feature, in days (0: off)." },
};

const configOf = z.looseObject({
  torGateway: z.string().default(DEFAULT_CONFIG.torGateway),
  netvm: z.string().default(DEFAULT_CONFIG.netvm),
  minBuildVolumeBytes: z.number().int().min(0).default(DEFAULT_CONFIG.minBuildVolumeBytes),
  templateMaxAgeDays: z.number().int().min(0).default(0),
});

const policies: StackValidationPolicy[] = POLICIES.map((p) => {
  const policy: StackValidationPolicy = {
    name: p.name,
    description: p.description,
    enforcementLevel: p.enforcementLevel,
    validateStack: (args, reportViolation) => {
      // A check that cannot run must stop the change, not pass it: errors become violations.
      try {
        const cfg = configOf.parse(args.getConfig<Record<string, unknown>>());
        const resources = args.resources.filter(isSiteResource).map(toInput);
        for (const v of runChecks(resources, cfg, [p.name])) reportViolation(v.message, v.urn);
      } catch (e) {
        reportViolation(`${p.name} could not be checked, so the change is refused: ${e instanceof Error ? e.message : String(e)}`);
      }
    },
  };
  if (p.config.length > 0) {
    const properties: PolicyConfigSchema["properties"] = {};
    for (const k of p.config) if (k !== "now") properties[k] = CONFIG_SCHEMA[k];
    policy.configSchema = { properties };
  }
  return policy;
});

new PolicyPack("qubes-build-infra-policy", { policies });
