/**
 * A full git commit id: 40 lower-case hex digits (SHA-1 repositories) or 64 (SHA-256 ones). Pins,
 * log entries and checkouts name commits this way; an abbreviated id could name another commit
 * later. Pure: zod only.
 */
import { z } from "zod";

export const COMMIT_ID_RE = /^([0-9a-f]{40}|[0-9a-f]{64})$/;
export const commitId = z.string().regex(COMMIT_ID_RE, "a full commit id: 40 or 64 lower-case hex digits");
