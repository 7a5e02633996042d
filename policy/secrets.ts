/**
 * Which props of a resource are Pulumi secrets, as the engine sent them to the pack.
 *
 * The engine sends secrets to analyzers marked (`KeepSecrets: true` in the Go analyzer plugin),
 * but @pulumi/policy 1.21 unwraps them for stack and resource policies without any marker
 * (`deserializeProperties(props, false)` in its server.js). What we rely on, checked against
 * node_modules/@pulumi/policy 1.21.0:
 *  - server.js calls `deserialize_1.deserializeProperties(struct, false)` through the module's
 *    exports object for every resource, so replacing that export here takes effect;
 *  - its first argument is the raw protobuf Struct, whose `toJavaScript()` still holds secrets as
 *    `{"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270", value}`;
 *  - the props a policy receives are `unknownCheckingProxy(result)`, whose
 *    `__getSpecialProxyTarget` key returns `result` itself.
 * We record the secret top-level keys (and the paths of nested secrets) of each result in a WeakMap and read them back through the
 * proxy. If any of this changes, `secretKeysOf` returns undefined and the checks fail closed.
 */
import { specialSecretSig, specialSigKey } from "@pulumi/pulumi/runtime/rpc";

interface StructLike { toJavaScript(): unknown }
type Deserialize = (struct: StructLike, proxySecrets: boolean) => unknown;

const recorded = new WeakMap<object, { keys: Set<string>; paths: Set<string> }>();
let installed = false;

const isSecret = (v: unknown): boolean =>
  typeof v === "object" && v !== null && (v as Record<string, unknown>)[specialSigKey] === specialSecretSig;

/** Top-level keys of a raw property map that are, or contain, a secret. */
export function secretKeysOfRaw(raw: unknown): Set<string> {
  const out = new Set<string>();
  const contains = (v: unknown): boolean => {
    if (isSecret(v)) return true;
    if (Array.isArray(v)) return v.some(contains);
    if (typeof v === "object" && v !== null) return Object.values(v).some(contains);
    return false;
  };
  if (typeof raw === "object" && raw !== null) for (const [k, v] of Object.entries(raw)) if (contains(v)) out.add(k);
  return out;
}

/**
 * Where a raw property map holds secrets: each path (JSON-encoded array of keys and indexes) at
 * which a secret value sits. A path inside a secret is not listed: the whole value is secret.
 */
export function secretPathsOfRaw(raw: unknown): Set<string> {
  const out = new Set<string>();
  const walk = (v: unknown, at: (string | number)[]): void => {
    if (isSecret(v)) out.add(JSON.stringify(at));
    else if (Array.isArray(v)) v.forEach((x, i) => walk(x, [...at, i]));
    else if (typeof v === "object" && v !== null) for (const [k, x] of Object.entries(v)) walk(x, [...at, k]);
  };
  if (typeof raw === "object" && raw !== null) for (const [k, v] of Object.entries(raw)) walk(v, [k]);
  return out;
}

/** Wrap @pulumi/policy's deserializer so that secret keys are remembered (idempotent). */
export function installSecretTracking(): boolean {
  if (installed) return true;
  try {
    const mod = require("@pulumi/policy/deserialize") as { deserializeProperties?: Deserialize };
    const original = mod.deserializeProperties;
    if (typeof original !== "function") return false;
    mod.deserializeProperties = function (struct: StructLike, proxySecrets: boolean): unknown {
      const result = original.call(this, struct, proxySecrets);
      try {
        if (typeof result === "object" && result !== null) {
          const raw = struct.toJavaScript();
          recorded.set(result, { keys: secretKeysOfRaw(raw), paths: secretPathsOfRaw(raw) });
        }
      } catch {
        // Unknown shape: nothing recorded, the checks fail closed.
      }
      return result;
    };
    installed = true;
  } catch {
    installed = false;
  }
  return installed;
}

function recordOf(props: unknown) {
  if (!installed || typeof props !== "object" || props === null) return undefined;
  const target = (props as Record<string, unknown>)["__getSpecialProxyTarget"];
  const key = typeof target === "object" && target !== null ? target : props;
  return recorded.get(key);
}

/** The secret top-level keys of a policy's `props`, or undefined when the pack cannot tell. */
export function secretKeysOf(props: unknown): Set<string> | undefined {
  return recordOf(props)?.keys;
}

/** The paths of the secrets in a policy's `props` (see `secretPathsOfRaw`), or undefined when the pack cannot tell. */
export function secretPathsOf(props: unknown): Set<string> | undefined {
  return recordOf(props)?.paths;
}
