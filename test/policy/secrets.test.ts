// Secret markers recovered from the raw property map the engine sends, through the SDK's own deserializer and proxy.
import { Struct } from "google-protobuf/google/protobuf/struct_pb";
import { isSecretAt } from "../../policy/model";
import { installSecretTracking, secretKeysOf, secretKeysOfRaw, secretPathsOf, secretPathsOfRaw } from "../../policy/secrets";

const SIG = "4dabf18193072939515e22adb298388d";
const SECRET = "1b47061264138c4ac30d75fd1eb44270";
const raw = { vm: "sys-net", path: "/x", content: { [SIG]: SECRET, value: "hmac" }, nested: { a: [{ [SIG]: SECRET, value: 1 }] } };

describe("secret tracking", () => {
  it("finds secret top-level props, nested ones included", () => {
    expect([...secretKeysOfRaw(raw)].sort()).toEqual(["content", "nested"]);
  });

  it("finds where nested secrets sit, and what lies inside one", () => {
    const paths = secretPathsOfRaw(raw);
    expect([...paths].sort()).toEqual(['["content"]', '["nested","a",0]']);
    expect(isSecretAt(paths, ["content"])).toBe(true);
    expect(isSecretAt(paths, ["nested", "a", 0, "deeper"])).toBe(true);
    expect(isSecretAt(paths, ["nested", "a", 1])).toBe(false);
    expect(isSecretAt(paths, ["vm"])).toBe(false);
  });

  it("reads them back through the props proxy that @pulumi/policy hands to stack policies", () => {
    expect(installSecretTracking()).toBe(true);
    const deser = require("@pulumi/policy/deserialize") as { deserializeProperties: (s: Struct, p: boolean) => object };
    const { unknownCheckingProxy } = require("@pulumi/policy/proxy") as { unknownCheckingProxy: (o: object) => Record<string, unknown> };
    const props = unknownCheckingProxy(deser.deserializeProperties(Struct.fromJavaScript(raw), false));
    expect(props.content).toBe("hmac"); // the SDK unwraps the value ...
    expect([...(secretKeysOf(props) ?? [])].sort()).toEqual(["content", "nested"]); // ... the pack still knows
    expect([...(secretPathsOf(props) ?? [])].sort()).toEqual(['["content"]', '["nested","a",0]']);
    expect(secretKeysOf({ content: "plain" })).toBeUndefined();
  });
});
