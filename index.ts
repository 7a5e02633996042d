// The site: validated stack config in, the whole build site out (see README.md, docs/layout.md).
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import { Site } from "./site/components";
import { parseSiteConfig } from "./site/config";
import { rawSiteConfig } from "./site/stackConfig";

const namespace = "qubes-build-infra";
const config = parseSiteConfig(rawSiteConfig(pulumi.runtime.allConfig(), namespace, __dirname, process.env));
const site = new Site("site", {
  config,
  webhookSecret: new pulumi.Config(namespace).requireSecret("webhookSecret"),
  servicesDir: path.join(__dirname, "dist", "services"),
});

export const policyFile = site.policyFile;
export const signingKeys = site.signingKeys;
