/**
 * Bundles every in-VM service into one standalone file `dist/services/<name>.js` (esbuild,
 * node22, cjs, minified, mode 0755, started by `/usr/bin/env -S` with V8's compile cache in the
 * user's `~/.cache`). A VM needs only `node` to run them.
 *
 *   npx ts-node --transpile-only services/build.ts [outdir]
 */
import * as fs from "fs";
import * as path from "path";

/** Program file (without `.js`) → the qrexec service name it is installed as (if any). */
export const SERVICE_PROGRAMS: Record<string, string | null> = {
  "build-log": "qubesbuilder.BuildLog",
  "log-digest": "qubesbuilder.LogDigest",
  "log-received": "qubesbuilder.LogReceived",
  "gpg-gate": "qubes.Gpg",
  "gpg-client": null, // build VM: the qubes-gpg-client-wrapper replacement, e.g. /usr/local/bin/qbi-gpg-client
  "win-sign": null, // win-keys VMs: installed as qubesbuilder.WinSign.QueryKey, .GetCert and .Sign
  "connect-ssh": "local.ConnectSSH",
  webhooks: null, // sys-net: long-running HTTP server behind nginx
  supervise: null, // sys-net: restarts the webhook receiver (started by rc.local at boot)
  "builder-cleanup": null, // build VMs: run by the weekly user timer qbi-builder-cleanup.timer
  "trigger-build": "qubesbuilder.TriggerBuild",
  "process-github-command": "qubesbuilder.ProcessGithubCommand",
};

export async function buildServices(outDir: string): Promise<string[]> {
  // Required lazily so that importing SERVICE_PROGRAMS does not load esbuild.
  const esbuild = require("esbuild") as typeof import("esbuild");
  fs.mkdirSync(outDir, { recursive: true });
  const names = Object.keys(SERVICE_PROGRAMS);
  const outputs: string[] = [];
  await Promise.all(
    names.map(async (name) => {
      const outfile = path.join(outDir, `${name}.js`);
      await esbuild.build({
        entryPoints: [path.join(__dirname, `${name}.ts`)],
        outfile,
        bundle: true,
        platform: "node",
        target: "node22",
        format: "cjs",
        // V8's compile cache (per user, survives between calls) and a minified bundle: a service's
        // start is on the signing path several times per signature (~50 ms and ~30 ms saved).
        banner: { js: "#!/usr/bin/env -S NODE_COMPILE_CACHE=${HOME}/.cache/qubes-build-infra/node node" },
        minify: true,
        keepNames: true,
        logLevel: "silent",
        legalComments: "none",
      });
      fs.chmodSync(outfile, 0o755);
      outputs.push(outfile);
    }),
  );
  return outputs.sort();
}

if (require.main === module) {
  const outDir = path.resolve(process.argv[2] ?? path.join(__dirname, "..", "dist", "services"));
  buildServices(outDir).then(
    (files) => {
      for (const f of files) process.stdout.write(`${f}\n`);
    },
    (e: unknown) => {
      process.stderr.write(`build failed: ${e instanceof Error ? e.message : String(e)}\n`);
      process.exit(1);
    },
  );
}
