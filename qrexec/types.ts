/** Shared types of the qrexec policy module (Qubes 4.2+ policy format). */
import type { z } from "zod";
import type { action, PolicyRule, ruleParams } from "./rule";

/** A policy action. */
export type Action = z.infer<typeof action>;

/** Action parameters of a rule (qrexec/rule.ts `ruleParams`). */
export type RuleParams = z.infer<typeof ruleParams>;

/** One policy rule as read from a file: the rule (qrexec/rule.ts `policyRule`) and where it was read. */
export interface Rule extends PolicyRule {
  /** File the rule was read from. */
  file: string;
  /** 1-based line number in that file. */
  line: number;
}

/** A syntax or validity error; the parser reports these instead of throwing. */
export interface PolicyError {
  /** File name. */
  file: string;
  /** 1-based line (0 for whole-file errors). */
  line: number;
  /** 1-based column of the offending token, when known. */
  column?: number;
  /** What is wrong and what was expected. */
  message: string;
}

/** A `!include`-family directive as written in a policy file. */
export type Directive =
  | { kind: "include"; path: string; file: string; line: number }
  | { kind: "include-dir"; path: string; file: string; line: number }
  | { kind: "include-service"; service: string; argument: string; path: string; file: string; line: number }
  | { kind: "compat-4.0"; file: string; line: number };

/** A non-comment line of a policy file, in file order. */
export type Statement = { kind: "rule"; rule: Rule } | Directive;

/** Result of parsing one file. */
export interface ParsedFile {
  /** File name as given. */
  file: string;
  /** Rules and directives in file order. */
  statements: Statement[];
  /** The rules only, in file order (directives not resolved). */
  rules: Rule[];
  /** The directives only, in file order. */
  directives: Directive[];
  /** Every error found; a file with errors must not be used by qrexec. */
  errors: PolicyError[];
}

/** Ordered rules of a whole policy directory, with includes resolved. */
export interface PolicySet {
  /** Rules in evaluation order (files in C-locale name order, includes inlined). */
  rules: Rule[];
  /** All errors; qrexec refuses every call while any exist. */
  errors: PolicyError[];
  /** Files read, in load order. */
  files: string[];
}

/** One domain, and the whole of qubesd's `internal.GetSystemInfo`: defined by their schema. */
export type { DomainInfo, SystemInfo } from "./system";

/** A call to be decided. */
export interface Request {
  /** Service name without argument. */
  service: string;
  /** `""` (no argument) or `+arg`. */
  argument: string;
  /** Source domain name (or `uuid:`). */
  source: string;
  /** Target as requested by the caller (name, `@default`, `@dispvm`, `@dispvm:VM`, `@adminvm`, `uuid:`). */
  target: string;
}

/** The decision for a request. */
export interface Verdict {
  /** The decision. */
  action: Action;
  /** Resolved actual target (allow), or the preselected target (ask). */
  target?: string;
  /** `user=` of the deciding rule. */
  user?: string;
  /** Targets offered by an ask dialog, sorted. */
  targets?: string[];
  /** The deciding rule. */
  rule?: Rule;
  /** File of the deciding rule. */
  file?: string;
  /** Line of the deciding rule. */
  line?: number;
  /** Human-readable explanation. */
  reason: string;
}
