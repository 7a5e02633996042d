/**
 * The bridge between Pulumi's dynamic resources and our provider implementations.
 *
 * Pulumi serializes a dynamic provider's code into the state and, on refresh and delete, runs the
 * code stored there (pulumi/pulumi#6490): a fixed bug would keep running in its old form. So the
 * serialized provider is only this shim: the dynamic-provider process loads the implementation
 * module from the project on disk (`providers/impl/*.ts`, bundled by esbuild when first used)
 * and delegates every call to it. Changed provider
 * code is therefore always the code that runs, and each implementation's `diff` compares what the
 * current code would apply with what the outputs record was applied, so a change of behaviour
 * shows up in `pulumi preview` as a precise diff.
 *
 * Caveat of that design: `read` and `delete` run the shim stored in the resource's outputs, and
 * the outputs are rewritten only by a create or an update. A shim change therefore reaches old
 * resources at their next update; the implementations keep working with older shims.
 */
import * as pulumi from "@pulumi/pulumi";

/** A provider implementation module: the dynamic-provider methods, typed loosely at this edge. */
export type ProviderImpl = Required<Pick<pulumi.dynamic.ResourceProvider, "create" | "diff" | "read" | "update" | "delete">> &
  Pick<pulumi.dynamic.ResourceProvider, "check">;

// One provider object per module: the SDK serializes a provider's closure once per object (by
// inspecting it through node:inspector, ~1.5 ms), so sharing it keeps that cost per kind, not per resource.
const providers = new Map<string, pulumi.dynamic.ResourceProvider>();

/**
 * Returns the provider for the implementation module at `modulePath`, relative to the Pulumi
 * program's directory (the working directory of the dynamic-provider process).
 */
export function diskProvider(modulePath: string): pulumi.dynamic.ResourceProvider {
  let p = providers.get(modulePath);
  if (!p) {
    p = makeDiskProvider(modulePath);
    providers.set(modulePath, p);
  }
  return p;
}

function makeDiskProvider(modulePath: string): pulumi.dynamic.ResourceProvider {
  // Everything used below must be inside the functions: only they are serialized.
  const loadModule = <T>(relPath: string): T => {
    const nodePath = require("path") as typeof import("path");
    const g = globalThis as { __qbiImpls?: Map<string, unknown> };
    const loaded = (g.__qbiImpls ??= new Map());
    let mod = loaded.get(relPath);
    if (!mod) {
      // The module and our TypeScript it imports, bundled by esbuild once per process (~25 ms a
      // module; ts-node took ~1 s to start); packages from node_modules stay plain requires.
      const file = nodePath.resolve(process.cwd(), relPath);
      const esbuild = require("esbuild") as typeof import("esbuild");
      const out = esbuild.buildSync({
        entryPoints: [file], bundle: true, packages: "external", platform: "node", format: "cjs",
        target: "node22", write: false, logLevel: "silent",
      });
      const { createRequire } = require("module") as typeof import("module");
      const { runInThisContext } = require("vm") as typeof import("vm");
      const wrapped = runInThisContext(`(function (exports, require, module, __filename, __dirname) {${out.outputFiles[0].text}\n})`, { filename: file }) as
        (e: object, r: NodeJS.Require, m: { exports: object }, f: string, d: string) => void;
      const m = { exports: {} };
      wrapped(m.exports, createRequire(file), m, file, nodePath.dirname(file));
      mod = m.exports;
      loaded.set(relPath, mod);
    }
    return mod as T;
  };
  const load = (): ProviderImpl => loadModule<ProviderImpl>(modulePath);
  return {
    // The engine passes the stack configuration of the current run: the Admin connection of every
    // provider kind comes from there (providers/impl/admin.ts), never from the state.
    // A program without the project's providers (the engine test's fixture) has nothing to configure;
    // in the project a provider without a configured connection fails naming the config key.
    configure: async (req) => {
      const adminModule = "providers/impl/admin.ts";
      const { existsSync } = require("fs") as typeof import("fs");
      if (!existsSync((require("path") as typeof import("path")).resolve(process.cwd(), adminModule))) return;
      await loadModule<Pick<pulumi.dynamic.ResourceProvider, "configure">>(adminModule).configure?.(req);
    },
    check: async (olds, news) => {
      const impl = load();
      return impl.check ? impl.check(olds, news) : { inputs: news };
    },
    diff: async (id, olds, news) => load().diff(id, olds, news),
    create: async (inputs) => load().create(inputs),
    read: async (id, props) => load().read(id, props),
    update: async (id, olds, news) => load().update(id, olds, news),
    delete: async (id, props) => load().delete(id, props),
  };
}
