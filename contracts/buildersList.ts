/**
 * `builders.list`, the build VM's list of its builders: the site writes it, TriggerBuild and
 * ProcessGithubCommand read it. One line per builder, blank lines and `#` comments ignored:
 *
 *   r<release>=<builder dir>                       a builder v1 (its directory is also its artifacts)
 *   r<release>=<builder dir>=<builder.yml path>    a builderv2 and the config of one release
 *
 * Paths are absolute, without `=` or white space (the format has no quoting).
 */
import * as path from "path";

/** What the site writes for one builder: `conf` (the builder.yml path) makes it a builderv2. */
export interface BuildersListEntry {
  release: string;
  builderDir: string;
  conf?: string;
}

/** One builder as read back. */
export interface BuilderLine {
  release: string;
  /** v1: the builder dir; v2: the artifacts dir (dirname of conf). */
  dir: string;
  builderDir: string;
  /** The builder.yml path (v2), empty for v1. */
  conf: string;
  version: 1 | 2;
}

const LINE_RE = /^r([0-9]+(?:\.[0-9]+)*)=(\/[^=\s]+)(?:=(\/[^=\s]+))?$/;
const EXPECTED = "expected r<release>=<absolute builder dir>[=<absolute builder.yml path>]";

/** A line that is not in the format; `line` is the raw text (untrusted when parsing: print it escaped). */
export class BuildersListError extends Error {
  constructor(
    readonly lineNumber: number,
    readonly line: string,
  ) {
    super(`builders.list line ${lineNumber}: ${EXPECTED}`);
    this.name = "BuildersListError";
  }
}

/** The file's text; throws BuildersListError for an entry the reader would refuse. */
export function renderBuildersList(entries: readonly BuildersListEntry[]): string {
  const lines = entries.map((e) => (e.conf !== undefined ? `r${e.release}=${e.builderDir}=${e.conf}` : `r${e.release}=${e.builderDir}`));
  lines.forEach((l, i) => {
    if (!LINE_RE.test(l)) throw new BuildersListError(i + 1, l);
  });
  return lines.join("\n") + "\n";
}

/** The builders listed in `text`; throws BuildersListError at the first line not in the format. */
export function parseBuildersList(text: string): BuilderLine[] {
  const out: BuilderLine[] = [];
  text.split("\n").forEach((raw, i) => {
    const line = raw.trim();
    if (!line || line.startsWith("#")) return;
    const m = LINE_RE.exec(line);
    if (!m) throw new BuildersListError(i + 1, line);
    if (m[3]) out.push({ release: m[1], builderDir: m[2], conf: m[3], dir: path.posix.dirname(m[3]), version: 2 });
    else out.push({ release: m[1], builderDir: m[2], conf: "", dir: m[2], version: 1 });
  });
  return out;
}
