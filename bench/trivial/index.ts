// N dynamic resources (stack config `count`) with a provider that does no work: what the engine
// and the SDK cost per resource, to set beside the site's no-op up with as many resources. Each
// resource carries inputs of the size of a typical site resource (~300 bytes).
import * as pulumi from "@pulumi/pulumi";

const provider: pulumi.dynamic.ResourceProvider = {
  async check(_olds, news) {
    return { inputs: news };
  },
  async diff() {
    return { changes: false };
  },
  async create(inputs) {
    return { id: "trivial", outs: inputs };
  },
};

class Trivial extends pulumi.dynamic.Resource {}

const count = new pulumi.Config().requireNumber("count");
for (let i = 0; i < count; i++) {
  new Trivial(provider, `r${i}`, { vm: `vm${i % 50}`, path: `/usr/local/etc/resource-${i}`, mode: 0o644, content: "x".repeat(240) });
}
