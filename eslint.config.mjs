// Lint: typescript-eslint's recommended rules; `any` is an error so module boundaries stay typed;
// the layering of docs/layout.md ("may import") is checked by the local rule `layering/imports`;
// lines are at most 160 characters.
import js from "@eslint/js";
import { builtinModules } from "node:module";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import tseslint from "typescript-eslint";

const ROOT = path.dirname(fileURLToPath(import.meta.url));

/**
 * What each folder may import (docs/layout.md's table). `project`: the project's modules, a folder
 * as `dir/` or one file as `dir/file` (no extension); the importing folder itself is always allowed.
 * `packages`: a test on a package name (`@pulumi/pulumi/automation`, `zod`, `fs`), absent: any.
 * Files not under a listed folder (test/, bench/, tools/) may import anything.
 */
const NODE = new Set(builtinModules.flatMap((m) => [m, `node:${m}`]));
const nodeOrZod = (p) => NODE.has(p) || p === "zod" || p.startsWith("zod/");
const notPulumi = (p) => !p.startsWith("@pulumi/");
const LAYERS = [
  // The first entry whose `files` matches decides (more specific entries first).
  { files: "qrexec/", project: ["contracts/"], packages: notPulumi },
  { files: "contracts/", project: [], packages: nodeOrZod },
  { files: "admin/", project: ["qrexec/", "contracts/"], packages: notPulumi },
  // The sim's CLI is a client of the sim daemon (ls, show): it uses the project's Admin client; the
  // daemon itself shares only the wire format with it, so a bug of the client is not mirrored in it.
  { files: "sim/cli.ts", project: ["admin/", "qrexec/", "contracts/"], packages: notPulumi },
  { files: "sim/", project: ["admin/wire", "qrexec/", "contracts/"], packages: notPulumi },
  // esbuild is the bundler of the services, never part of one.
  { files: "services/build.ts", project: [], packages: (p) => nodeOrZod(p) || p === "esbuild" },
  { files: "services/", project: ["contracts/"], packages: nodeOrZod },
  { files: "providers/", project: ["admin/", "qrexec/", "contracts/"] },
  // site/cli.ts's `admin` command is one raw Admin call.
  { files: "site/cli.ts", project: ["providers/", "qrexec/", "contracts/", "admin/client"] },
  { files: "site/", project: ["providers/", "qrexec/", "contracts/"] },
  { files: "policy/", project: ["qrexec/", "contracts/"] },
  { files: "fleet/", project: ["site/config", "site/stackConfig", "contracts/"] },
  { files: "audit/", project: ["contracts/"], packages: notPulumi },
  { files: "index.ts", project: ["site/", "contracts/"] },
];

const under = (target, entry) => (entry.endsWith("/") ? target === entry.slice(0, -1) || target.startsWith(entry) : target === entry);
/** A module path relative to the project, without extension or trailing /index (`qrexec`, `admin/wire`). */
const moduleOf = (abs) => path.relative(ROOT, abs).split(path.sep).join("/").replace(/\.(ts|js|json)$/, "").replace(/\/index$/, "");

const layering = {
  meta: { type: "problem", schema: [], messages: { layer: "{{from}} may not import {{what}} (docs/layout.md: {{from}} may import {{allowed}})" } },
  create(context) {
    const file = moduleOf(context.filename) + path.extname(context.filename);
    const layer = LAYERS.find((l) => under(file, l.files));
    if (!layer) return {};
    const own = layer.files.endsWith("/") ? layer.files : `${layer.files.split("/")[0]}/`;
    const allowed = [own, ...layer.project];
    const check = (node, spec) => {
      if (typeof spec !== "string") return;
      if (spec.startsWith(".")) {
        const target = moduleOf(path.resolve(path.dirname(context.filename), spec));
        if (!allowed.some((a) => under(target, a))) {
          context.report({ node, messageId: "layer", data: { from: layer.files, what: target, allowed: allowed.join(", ") } });
        }
      } else if (layer.packages && !layer.packages(spec)) {
        context.report({ node, messageId: "layer", data: { from: layer.files, what: `the package ${spec}`, allowed: allowed.join(", ") } });
      }
    };
    const literal = (n) => (n && n.type === "Literal" ? n.value : undefined);
    return {
      ImportDeclaration: (n) => check(n, n.source.value),
      ExportNamedDeclaration: (n) => n.source && check(n, n.source.value),
      ExportAllDeclaration: (n) => check(n, n.source.value),
      ImportExpression: (n) => check(n, literal(n.source)),
      TSImportType: (n) => check(n, n.source?.value ?? literal(n.argument?.literal)),
      TSExternalModuleReference: (n) => check(n, literal(n.expression)),
      CallExpression: (n) => {
        if (n.callee.type === "Identifier" && n.callee.name === "require" && n.arguments.length === 1) check(n, literal(n.arguments[0]));
      },
    };
  },
};

export default tseslint.config(
  { ignores: ["node_modules/", "dist/", ".tools/", "coverage/", "policy/node_modules/", "bench/results/", "**/*.js", "**/*.mjs"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    plugins: { layering: { rules: { imports: layering } } },
    rules: {
      "@typescript-eslint/no-explicit-any": "error",
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "@typescript-eslint/no-require-imports": "off",
      "layering/imports": "error",
      // Lines of at most 160 characters; a line that is long because of one string, template,
      // regular expression or URL is left whole (breaking those would only hide what they say).
      "max-len": ["error", { code: 160, ignoreUrls: true, ignoreStrings: true, ignoreTemplateLiterals: true, ignoreRegExpLiterals: true }],
    },
  },
);
