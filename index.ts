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
const stackConfig = new pulumi.Config(namespace);
const openqaKey = stackConfig.getSecret("openqaKey");
const openqaSecret = stackConfig.getSecret("openqaSecret");
if ((openqaKey === undefined) !== (openqaSecret === undefined)) {
  throw new pulumi.RunError("qubes-build-infra:openqaKey and qubes-build-infra:openqaSecret go together: set both (pulumi config set --secret) or neither");
}
const site = new Site("site", {
  config,
  webhookSecret: stackConfig.requireSecret("webhookSecret"),
  webhookTlsKey: stackConfig.getSecret("webhookTlsKey"),
  servicesDir: path.join(__dirname, "dist", "services"),
  githubApiToken: stackConfig.getSecret("githubApiToken"),
  ...(openqaKey && openqaSecret ? { openqa: { key: openqaKey, secret: openqaSecret } } : {}),
  toolsDir: path.join(__dirname, ".tools", "bin"),
});

export const policyFile = site.policyFile;
/** Every policy file of the site, in the order qrexec reads them (several once one would be too big). */
export const policyFiles = site.policyFiles;
export const signingKeys = site.signingKeys;
/** Register each on GitHub as a deploy key with write access to the logs repository. */
export const deployKeys = site.deployKeys;
/** Authorise each on the upload hosts (the env's build VM uploads with it). */
export const uploadKeys = site.uploadKeys;
/** The transparency log verifier key of each logs VM: what `verify-log --verifier` takes. */
export const logVerifiers = site.logVerifiers;
