// The text a file resource writes: given inline (`content`) or by reference to a project file
// (`contentFile` + `contentSha256`, see providers/projectFile.ts).
import * as fs from "fs";
import * as path from "path";
import { z } from "zod";
import { sha256 } from "./common";

/** The content inputs shared by RpcService and ManagedFile (exactly one way is given: `oneContent`). */
export const contentInputs = z.object({
  /** The text inline (may be a Pulumi secret). */
  content: z.string().optional(),
  /**
   * Instead of `content`: a project file (see providers/projectFile.ts), its path relative to the
   * project directory (the engine's working directory) or absolute; only its hash goes through the engine.
   */
  contentFile: z.string().min(1).optional(),
  /** sha256 (hex) of `contentFile`'s text as the program read it; the provider refuses any other text. */
  contentSha256: z.string().regex(/^[0-9a-f]{64}$/, "a sha256 in hex").optional(),
});
/** `contentInputs`' fields, to spread into a resource's inputs. */
export const contentFields = contentInputs.shape;

type ContentInputs = z.infer<typeof contentInputs>;

/** What is wrong with the way content is given (`content`, or both `contentFile` and `contentSha256`, never both ways): field and message. */
export function contentProblem(p: ContentInputs): { field: keyof ContentInputs; message: string } | undefined {
  const byFile = p.contentFile !== undefined || p.contentSha256 !== undefined;
  if (p.content !== undefined && byFile) return { field: "contentFile", message: "give either content or contentFile, not both" };
  if (byFile && (p.contentFile === undefined || p.contentSha256 === undefined)) {
    return { field: p.contentFile === undefined ? "contentFile" : "contentSha256", message: "contentFile and contentSha256 go together" };
  }
  if (!byFile && p.content === undefined) return { field: "content", message: "content (or contentFile with contentSha256) is required" };
  return undefined;
}

/** zod refinement: `contentProblem` as an issue. */
export function oneContent(p: ContentInputs, ctx: z.RefinementCtx): void {
  const bad = contentProblem(p);
  if (bad) ctx.addIssue({ code: "custom", path: [bad.field], message: bad.message });
}

/** The sha256 the content should have, without reading anything. */
export function wantedSha256(p: ContentInputs): string {
  return p.contentSha256 ?? sha256(p.content ?? "");
}

/**
 * The content to write: inline text, or a referenced file's bytes (programs may be binaries), read
 * from the project (the dynamic provider's working directory); they must still hash to what the
 * program saw, otherwise nothing is written.
 */
export function loadContent(who: string, p: ContentInputs): string | Buffer {
  if (p.contentFile === undefined) return p.content ?? "";
  const abs = path.resolve(process.cwd(), p.contentFile);
  let text: Buffer;
  try {
    text = fs.readFileSync(abs);
  } catch (e) {
    throw new Error(`${who}: contentFile ${abs} cannot be read (${(e as NodeJS.ErrnoException).code ?? String(e)}); nothing was written`);
  }
  const got = sha256(text);
  if (got !== p.contentSha256) {
    throw new Error(`${who}: contentFile ${abs} changed since the program read it (sha256 ${got}, expected ${p.contentSha256}); nothing was written: run the update again`);
  }
  return text;
}
