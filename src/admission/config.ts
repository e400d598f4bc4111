/**
 * The admission sections of the EndpointPickerConfig. scheduling/config.ts hands every top-level section it does not
 * own back raw (`PickerConfig.sections`); this module validates the three admission owns, once, at start-up, and
 * reports problems as ConfigErrors with the exact field path (`admission.budgets[2].tokensPerMinute: …`).
 *
 * ```yaml
 * featureGates: [flowControl]          # or just a flowControl section
 * admission:
 *   tenantHeader: x-tenant-id          # default: --tenant-header (x-gateway-inference-fairness-id)
 *   defaultMaxTokens: 256              # completion estimate when the request has no max_tokens
 *   maxTrackedKeys: 10000              # budget keys kept (LRU beyond)
 *   tenantLabelLimit: 100              # distinct tenant/model label values before "other"
 *   budgets:
 *     - {name: per-tenant, tenant: "*", tokensPerMinute: 100000, requestsPerMinute: 600}
 *     - {name: llama-total, model: llama-3, tokensPerMinute: 2000000}
 * flowControl:                         # GIE field names
 *   maxRequests: 10000
 *   maxBytes: 1Gi
 *   defaultRequestTTL: 30s
 *   defaultPriorityBand: {maxRequests: 5000, maxBytes: 500Mi}
 *   priorityBands: [{priority: 10, maxRequests: 1000}]
 * autoscaling:
 *   minReplicas: 3
 *   maxReplicas: 10
 *   targetGpuCacheUtilization: 75      # percent (75) or fraction (0.75)
 *   scaleDownStabilizationWindow: 300s
 * ```
 *
 * Unknown keys are rejected everywhere: a misspelt limit silently left at its default is the worst failure mode of
 * an admission policy.
 */

// The autoscaling section is validated here with its sibling sections (one reader for the config's non-scheduling
// sections); what it means belongs to src/autoscaling.
import {
  type AutoscalingSettings,
  DEFAULT_AUTOSCALE_INTERVAL_MS,
  DEFAULT_AUTOSCALE_TOLERANCE,
  DEFAULT_SCALE_DOWN_STABILIZATION_MS,
} from "../autoscaling/autoscale.js";
import { ConfigReader, type MappingReader, parseByteQuantity } from "../common/config-reader.js";
import type { Plugin } from "../common/registry.js";
import { describeValue } from "../common/values.js";
import {
  type FairnessPolicy,
  type FlowControlPolicyKind,
  isFairnessPolicy,
  policyInstance,
  policyTypes,
  registerFlowControlPolicies,
} from "./policies.js";

/** The config parts admission reads; PickerConfig satisfies it. */
export interface AdmissionConfigSource {
  readonly file: string | undefined;
  readonly featureGates: readonly string[];
  readonly sections: Readonly<Record<string, unknown>>;
}

/**
 * One budget rule. `model`/`tenant` select what the rule applies to:
 * - a name ("llama-3") — only that model / tenant;
 * - `"*"` — every model / tenant, each with its OWN budget;
 * - absent — every model / tenant, all SHARING one budget.
 */
export interface BudgetRule {
  readonly name: string;
  readonly model: string | undefined;
  readonly tenant: string | undefined;
  readonly tokensPerMinute: number | undefined;
  readonly requestsPerMinute: number | undefined;
  /** Field path, for messages. */
  readonly path: string;
}

export interface AdmissionSettings {
  /** Header naming the tenant; undefined = the --tenant-header flag. */
  readonly tenantHeader: string | undefined;
  readonly defaultMaxTokens: number;
  readonly budgets: readonly BudgetRule[];
  readonly maxTrackedKeys: number;
  readonly tenantLabelLimit: number;
}

export interface BandLimits {
  /** 0 = no limit. */
  readonly maxRequests: number;
  /** 0 = no limit. */
  readonly maxBytes: number;
}

export type { FairnessPolicy };

export interface FlowControlSettings {
  readonly enabled: boolean;
  /** Global limits across every band; 0 = no limit. */
  readonly maxRequests: number;
  readonly maxBytes: number;
  /** How long a request may wait; 0 = until the client or Envoy gives up (GIE's default). */
  readonly defaultRequestTTLMs: number;
  /** Limits of bands not listed in priorityBands. */
  readonly defaultPriorityBand: BandLimits;
  readonly priorityBands: ReadonlyMap<number, BandLimits>;
  /** Order among tenants of one band. */
  readonly fairness: FairnessPolicy;
}

export interface AdmissionConfig {
  readonly admission: AdmissionSettings;
  readonly flowControl: FlowControlSettings;
  readonly autoscaling: AutoscalingSettings;
}

/** Completion tokens assumed when a request has no max_tokens. */
export const DEFAULT_MAX_TOKENS = 256;
export const DEFAULT_MAX_TRACKED_KEYS = 10_000;
export const DEFAULT_TENANT_LABEL_LIMIT = 100;
/**
 * GIE's TTL default is 0 (wait until the context is cancelled); Envoy's ext_proc message_timeout (300 s in the
 * gateways' configs) then ends the stream with an opaque error. A bounded wait answers with a clear 503 instead.
 */
export const DEFAULT_REQUEST_TTL_MS = 30_000;
/** Bounds memory by default; GIE has no count limit. */
export const DEFAULT_MAX_QUEUED_REQUESTS = 10_000;
/** GIE's per-band default (1 GB). */
export const DEFAULT_BAND_MAX_BYTES = 1_000_000_000;

export const FLOW_CONTROL_GATE = "flowControl";

const ADMISSION_KEYS = new Set(["tenantHeader", "defaultMaxTokens", "maxTrackedKeys", "tenantLabelLimit", "budgets"]);
const BUDGET_KEYS = new Set(["name", "model", "tenant", "tokensPerMinute", "requestsPerMinute"]);
const FLOW_KEYS = new Set([
  "maxBytes",
  "maxRequests",
  "defaultRequestTTL",
  "defaultPriorityBand",
  "priorityBands",
  "usageLimitPolicyPluginRef",
]);
const BAND_KEYS = new Set(["priority", "maxBytes", "maxRequests", "fairnessPolicyRef", "orderingPolicyRef"]);
const AUTOSCALING_KEYS = new Set([
  "minReplicas",
  "maxReplicas",
  "targetGpuCacheUtilization",
  "scaleDownStabilizationWindow",
  "interval",
  "tolerance",
]);

/**
 * A reference to a registered flow-control policy of `kind` (src/admission/policies.ts), checked against the
 * registry with the field path; undefined when absent.
 */
function policyRef(m: MappingReader, key: string, kind: FlowControlPolicyKind, why = ""): Plugin | undefined {
  const ref = m.get(key);
  if (ref === undefined) return undefined;
  const types = policyTypes(kind);
  if (typeof ref !== "string" || !types.includes(ref))
    m.fail(
      key,
      types.length === 1
        ? `only "${types[0]}" is supported${why}, got ${describeValue(ref)}`
        : `must be one of ${types.join(", ")}, got ${describeValue(ref)}`,
    );
  return policyInstance(ref);
}

export { parseByteQuantity };

function readBudgets(r: ConfigReader, raw: unknown): BudgetRule[] {
  const names = new Map<string, string>();
  return r.list(raw, "admission.budgets").map((item, i) => {
    const path = `admission.budgets[${i}]`;
    const b: MappingReader = r.mapping(item, path).only(BUDGET_KEYS);
    const name = b.string("name");
    if (name === undefined) b.fail("name", "required");
    const clash = names.get(name);
    if (clash) b.fail("name", `duplicate budget name "${name}" (also ${clash})`);
    names.set(name, path);
    const tokensPerMinute = b.integer("tokensPerMinute", { min: 1 });
    const requestsPerMinute = b.integer("requestsPerMinute", { min: 1 });
    if (tokensPerMinute === undefined && requestsPerMinute === undefined)
      b.fail("", "needs tokensPerMinute, requestsPerMinute or both");
    return { name, model: b.string("model"), tenant: b.string("tenant"), tokensPerMinute, requestsPerMinute, path };
  });
}

function readAdmission(r: ConfigReader, raw: unknown): AdmissionSettings {
  const a: MappingReader = r.optionalMapping(raw, "admission").only(ADMISSION_KEYS);
  const tenantHeader = a.string("tenantHeader");
  if (tenantHeader !== undefined && !/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(tenantHeader))
    a.fail("tenantHeader", `must be an HTTP header name, got ${JSON.stringify(tenantHeader)}`);
  return {
    tenantHeader: tenantHeader?.toLowerCase(),
    defaultMaxTokens: a.integer("defaultMaxTokens", { min: 0 }, DEFAULT_MAX_TOKENS),
    budgets: readBudgets(r, a.get("budgets")),
    maxTrackedKeys: a.integer("maxTrackedKeys", { min: 1 }, DEFAULT_MAX_TRACKED_KEYS),
    tenantLabelLimit: a.integer("tenantLabelLimit", { min: 0 }, DEFAULT_TENANT_LABEL_LIMIT),
  };
}

function readBand(b: MappingReader, fallback: BandLimits): BandLimits & { fairness?: FairnessPolicy } {
  b.only(BAND_KEYS);
  policyRef(b, "orderingPolicyRef", "ordering-policy");
  const policy = policyRef(b, "fairnessPolicyRef", "fairness-policy");
  if (policy !== undefined && !isFairnessPolicy(policy))
    b.fail("fairnessPolicyRef", `"${policy.typedName.type}" names no fairness order the queue implements`);
  return {
    maxRequests: b.integer("maxRequests", { min: 0 }, fallback.maxRequests),
    maxBytes: b.bytes("maxBytes", fallback.maxBytes),
    ...(policy !== undefined ? { fairness: policy.fairness } : {}),
  };
}

function readFlowControl(r: ConfigReader, raw: unknown, gate: boolean): FlowControlSettings {
  const present = raw !== undefined && raw !== null;
  const f: MappingReader = r.optionalMapping(raw, "flowControl").only(FLOW_KEYS);
  policyRef(f, "usageLimitPolicyPluginRef", "usage-limit-policy", " (dispatch gates on the saturation detector)");
  const builtIn: BandLimits = { maxRequests: 0, maxBytes: DEFAULT_BAND_MAX_BYTES };
  let fairness: FairnessPolicy | undefined;
  let defaultBand = builtIn;
  if (f.has("defaultPriorityBand")) {
    const raw = f.mapping("defaultPriorityBand");
    const band = readBand(raw, builtIn);
    if (raw.has("priority")) raw.fail("priority", "the default band applies to every unlisted priority");
    fairness = band.fairness;
    defaultBand = { maxRequests: band.maxRequests, maxBytes: band.maxBytes };
  }
  const bands = new Map<number, BandLimits>();
  f.list("priorityBands").forEach((item, i) => {
    const b: MappingReader = r.mapping(item, `flowControl.priorityBands[${i}]`);
    const priority = b.get("priority");
    if (typeof priority !== "number" || !Number.isSafeInteger(priority))
      b.fail("priority", `required integer, got ${describeValue(priority)}`);
    if (bands.has(priority)) b.fail("priority", `duplicate priority ${priority}`);
    const band = readBand(b, defaultBand);
    // One fairness policy for all bands keeps dispatch simple; a per-band mix is accepted only when consistent.
    if (band.fairness !== undefined) {
      if (fairness !== undefined && fairness !== band.fairness)
        b.fail("fairnessPolicyRef", `all bands must use the same fairness policy (also "${fairness}")`);
      fairness = band.fairness;
    }
    bands.set(priority, { maxRequests: band.maxRequests, maxBytes: band.maxBytes });
  });
  return {
    enabled: gate || present,
    maxRequests: f.integer("maxRequests", { min: 0 }, DEFAULT_MAX_QUEUED_REQUESTS),
    maxBytes: f.bytes("maxBytes", 0),
    defaultRequestTTLMs: f.duration("defaultRequestTTL", {}, DEFAULT_REQUEST_TTL_MS),
    defaultPriorityBand: defaultBand,
    priorityBands: bands,
    // Round-robin, not GIE's global-strict default: with global-strict one busy tenant's backlog delays everyone.
    fairness: fairness ?? "round-robin",
  };
}

/** Accepts a fraction (0.75) or a percentage (75); values above 1 are percentages. */
function readTarget(a: MappingReader, key: string): number | undefined {
  const v = a.get(key);
  if (v === undefined) return undefined;
  if (typeof v !== "number" || !Number.isFinite(v) || v <= 0 || v > 100)
    a.fail(key, `must be a fraction in (0, 1] or a percentage in (1, 100], got ${describeValue(v)}`);
  return v > 1 ? v / 100 : v;
}

function readAutoscaling(r: ConfigReader, raw: unknown): AutoscalingSettings {
  const present = raw !== undefined && raw !== null;
  const a: MappingReader = r.optionalMapping(raw, "autoscaling").only(AUTOSCALING_KEYS);
  const minReplicas = a.integer("minReplicas", { min: 0 });
  const maxReplicas = a.integer("maxReplicas", { min: 1 });
  if (minReplicas !== undefined && maxReplicas !== undefined && maxReplicas < minReplicas)
    a.fail("maxReplicas", `must be >= autoscaling.minReplicas (${minReplicas}), got ${maxReplicas}`);
  const tolerance = a.get("tolerance") ?? DEFAULT_AUTOSCALE_TOLERANCE;
  if (typeof tolerance !== "number" || !(tolerance >= 0 && tolerance < 1))
    a.fail("tolerance", `must be a number in [0, 1), got ${describeValue(tolerance)}`);
  const intervalMs = a.duration("interval", {}, DEFAULT_AUTOSCALE_INTERVAL_MS);
  if (intervalMs <= 0) a.fail("interval", "must be positive");
  return {
    configured: present,
    minReplicas,
    maxReplicas,
    targetGpuCacheUtilization: readTarget(a, "targetGpuCacheUtilization"),
    scaleDownStabilizationMs: a.duration("scaleDownStabilizationWindow", {}, DEFAULT_SCALE_DOWN_STABILIZATION_MS),
    intervalMs,
    tolerance,
  };
}

/** Validates the admission, flowControl and autoscaling sections. Throws ConfigError naming file and field. */
export function parseAdmissionConfig(source: AdmissionConfigSource): AdmissionConfig {
  registerFlowControlPolicies();
  const r = new ConfigReader(source.file);
  if (source.sections.budgets !== undefined)
    r.fail("budgets", "budgets belong under the admission section (admission.budgets)");
  return {
    admission: readAdmission(r, source.sections.admission),
    flowControl: readFlowControl(r, source.sections.flowControl, source.featureGates.includes(FLOW_CONTROL_GATE)),
    autoscaling: readAutoscaling(r, source.sections.autoscaling),
  };
}

/** The tenant header the config names, if any (the director needs it before admission is built). */
export function configuredTenantHeader(source: AdmissionConfigSource): string | undefined {
  return parseAdmissionConfig(source).admission.tenantHeader;
}
