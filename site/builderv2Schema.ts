/**
 * What qubes-builderv2's configuration loader accepts for the keys this site writes into a
 * builder's `builder.yml` and `builder-github.yml`, as a zod schema: a bad value fails
 * `pulumi preview` instead of the first build.
 *
 * Written from the behaviour of qubes-builderv2 at commit bcb20f285b9fc729217d3efb60c56dd55b152c80
 * (`qubesbuilder/config.py`: the loader, its properties and `get_executor`; `executors/*.py`;
 * the sign, publish and upload plugins) and qubes-builderv2-github at
 * afc53f0b7c24a45be4dcca9b354c526edaf102f9 (`github-command.py`, `githubbuilder/action.py`).
 * builderv2 has no schema of its own: most values are read with `.get()` and used as they are,
 * many of them pasted into shell command strings. So the rules below are stricter than "does not
 * raise": they refuse the values builderv2 would reject *or* silently mis-handle.
 */
import { z } from "zod";
import { FINGERPRINT_RE } from "../contracts/fingerprint";
import { isVmName } from "../contracts/names";

const fpr = z.string().regex(FINGERPRINT_RE, "a 40-hex fingerprint (passed to gpg -u in a shell command)");
// Pasted unquoted into shell command strings (`{gpg_client} --armor --export ...`, `rsync ... {remote}/...`).
const shellWord = /^[A-Za-z0-9@%+=:,./_-]+$/;

/** Keys of `sign-key` the sign/publish plugins look up (a distribution name may also be used). */
export const SIGN_KEY_KINDS = ["rpm", "deb", "archlinux", "iso", "windows"] as const;
/** Keys of `repository-upload-remote-host` the upload, template and installer plugins look up. */
export const UPLOAD_HOST_KINDS = ["rpm", "deb", "archlinux", "windows", "iso"] as const;
/** `executor.type` values `Config.get_executor` knows; anything else raises "Cannot determine which executor to use". */
export const EXECUTOR_TYPES = ["podman", "docker", "local", "qubes", "windows", "windows-ssh"] as const;

const listOrAll = z.union([z.literal("_all_"), z.array(z.string().min(1))]);

/** The `builder.yml` the site writes for a builderv2 builder (its own keys; the config file is included). */
export const builderYmlSchema = z.strictObject({
  // `_load_config` resolves relative includes against the including file and raises
  // ConfigError for a file it cannot find or parse; YAML is the only format it reads.
  include: z.array(z.string().regex(/^[^\s]+\.ya?ml$/, "a .yml or .yaml file (builderv2 parses every include as YAML)")).min(1),
  // `artifacts_dir` resolves it as a path; relative paths would depend on the caller's cwd.
  "artifacts-dir": z.string().regex(/^\/[A-Za-z0-9._/-]+$/, "an absolute path (letters, digits, ._/-)"),
  // `parse_qubes_release` matches r<one digit>.<digits> and otherwise silently falls back to r4.2.
  "qubes-release": z.string().regex(/^r[1-9]\.[0-9]+$/, "r<digit>.<digits>: builderv2 reads any other release as r4.2 without a word"),
  executor: z.strictObject({
    type: z.enum(EXECUTOR_TYPES),
    options: z.strictObject({
      // QubesExecutor: a dispvm template name, or "@dispvm" (the default disposable template).
      dispvm: z.string().refine((s) => s === "@dispvm" || isVmName(s), "a disposable template name or @dispvm"),
      // Executor.__init__: a bool, or a string that str_to_bool reads ("true"/"1", anything else is false).
      clean: z.union([z.boolean(), z.enum(["true", "false", "1", "0"])]).optional(),
    }),
  }),
  "gpg-client": z.string().regex(/^\/[A-Za-z0-9._/-]+$/, "an absolute program path without spaces (it is pasted into shell commands)"),
  "sign-key": z.partialRecord(z.enum(SIGN_KEY_KINDS), fpr),
  "repository-upload-remote-host": z.partialRecord(
    z.enum(UPLOAD_HOST_KINDS),
    z.string()
      .regex(/^[a-z_][a-z0-9_-]*@[a-z0-9.-]+:\/[A-Za-z0-9._/-]*$/, "user@host:/absolute/path (an rsync destination)")
      .refine((s) => shellWord.test(s), "no characters a shell would interpret (builderv2 runs rsync through a shell string)"),
  ),
});
export type BuilderYml = z.infer<typeof builderYmlSchema>;

const repo = z.string().regex(/^[A-Za-z0-9_.-]+\/[A-Za-z0-9_.-]+$/, "owner/name");

/** The `builder-github.yml` included by every builderv2 builder: the `github` section builderv2-github reads. */
export const builderGithubYmlSchema = z.strictObject({
  github: z.strictObject({
    // BaseAutoAction: state files are created under it (mkdir parents).
    "state-dir": z.string().regex(/^\/[A-Za-z0-9._/-]+$/, "an absolute path"),
    // An empty key only turns GitHub notifications off ("API key not set").
    "api-key": z.string().regex(/^[A-Za-z0-9_-]*$/, "a GitHub token (letters, digits, '_' and '-')"),
    "build-report-repo": repo,
    "build-issues-repo": repo,
    "logs-repo": repo,
    "iso-base-url": z.url().optional(),
    // github-command.py action: `maintainers.<signer>.components|distributions|templates|iso`.
    maintainers: z.record(
      z.string().regex(FINGERPRINT_RE, "a 40-hex upper-case fingerprint (compared as text with the signer)"),
      z.strictObject({ components: listOrAll, distributions: listOrAll, templates: listOrAll, iso: z.boolean() }),
    ),
  }),
});
export type BuilderGithubYml = z.infer<typeof builderGithubYmlSchema>;

/** Problems of a document against a schema, one `key.path: reason` per issue (empty when valid). */
export function schemaProblems(schema: z.ZodType, doc: unknown): string[] {
  const r = schema.safeParse(doc);
  return r.success ? [] : r.error.issues.map((i) => `${i.path.map(String).join(".") || "(document)"}: ${i.message}`);
}
