// The site: validated stack config in, the whole build site out (see README.md, docs/layout.md).
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import { Site } from "./site/components";
import { parseSiteConfig, type SiteConfig } from "./site/config";
import { rawSiteConfig } from "./site/stackConfig";

// The SDK takes a full stack trace for every resource and several of its promises. Formatting
// them through source maps (source-map-support, which the SDK's runner installs, or Node's own)
// cost ~1 s of a 20-environment no-op `up` (measured A/B); raw V8 traces cost almost nothing.
// QBI_SOURCE_MAPS=1 brings TypeScript positions back when debugging a crash of this program.
delete (Error as { prepareStackTrace?: unknown }).prepareStackTrace;
process.setSourceMapsEnabled(process.env.QBI_SOURCE_MAPS === "1");

const namespace = "qubes-build-infra";
// A bad config is the operator's to fix: its message names every key; no stack trace (RunError).
let config: SiteConfig;
try {
  config = parseSiteConfig(rawSiteConfig(pulumi.runtime.allConfig(), namespace, __dirname, process.env));
} catch (e) {
  throw new pulumi.RunError((e as Error).message);
}
const site = new Site("site", {
  config,
  webhookSecret: new pulumi.Config(namespace).requireSecret("webhookSecret"),
  servicesDir: path.join(__dirname, "dist", "services"),
});

export const policyFile = site.policyFile;
export const signingKeys = site.signingKeys;
