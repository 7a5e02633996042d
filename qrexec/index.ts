/** Public API of the qrexec policy module: parse, validate, render, evaluate and graph Qubes 4.2+ policies. */
export type {
  Action,
  Directive,
  DomainInfo,
  ParsedFile,
  PolicyError,
  PolicySet,
  Request,
  Rule,
  RuleParams,
  Statement,
  SystemInfo,
  Verdict,
} from "./types";
export type { Token, TokenContext, TokenKind, TokenResult } from "./tokens";
export { ALLOWED_KINDS, DOM0_UUID, MAX_VM_NAME, argumentProblem, classifyToken, isDom0, serviceProblem, vmNameProblem } from "./tokens";
export { parsePolicyFile, parseServicePolicyFile, splitLines } from "./parser";
export type { IncludeSource, PolicyReader } from "./load";
export { POLICY_DIR, compareCLocale, loadPolicySet, normalizePath, policyFileName, resolveIncludes } from "./load";
export type { DiffLine, RenderOptions, RuleDiff } from "./render";
export { MANAGED_HEADER, checkRules, diffRules, isManaged, renderParams, renderPolicy, ruleKey } from "./render";
export { domainName, evaluate, matchesButTarget, sourceMatches, targetMatches, targetsForAsk, verifyTarget } from "./evaluate";
export type { FlowEdge, Reach } from "./graph";
export { flowGraph, servicesInPolicy, sourcesReaching, toDot } from "./graph";
export { DomainInfoSchema, SystemInfoSchema, parseSystemInfo } from "./system";
export type { PolicyRule } from "./rule";
export { action, policyRule, ruleParams } from "./rule";
