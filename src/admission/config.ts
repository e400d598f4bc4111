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
import { ConfigError } from "../common/errors.js";
import { describeValue, isPlainObject, type PlainObject } from "../common/values.js";
import { parseGoDuration } from "../scheduling/params.js";

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

export type FairnessPolicy = "round-robin" | "global-strict";

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
const FAIRNESS_REFS: Readonly<Record<string, FairnessPolicy>> = {
  "round-robin-fairness-policy": "round-robin",
  "global-strict-fairness-policy": "global-strict",
};

type Obj = PlainObject;
const isObj = isPlainObject;
const describe = describeValue;

const QUANTITY_UNITS: Readonly<Record<string, number>> = {
  "": 1,
  k: 1e3,
  K: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  Ki: 1024,
  Mi: 1024 ** 2,
  Gi: 1024 ** 3,
  Ti: 1024 ** 4,
};

/** A Kubernetes quantity as GIE's maxBytes accepts it ("1Gi", "500M", 1048576). Undefined when malformed. */
export function parseByteQuantity(v: unknown): number | undefined {
  if (typeof v === "number") return Number.isSafeInteger(v) && v >= 0 ? v : undefined;
  if (typeof v !== "string") return undefined;
  const m = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|K|M|G|T)?$/.exec(v.trim());
  if (!m) return undefined;
  const bytes = Math.ceil(Number(m[1]) * QUANTITY_UNITS[m[2] ?? ""]!);
  return Number.isSafeInteger(bytes) ? bytes : undefined;
}

class Reader {
  readonly #file: string | undefined;
  constructor(file: string | undefined) {
    this.#file = file;
  }

  fail(field: string, message: string): never {
    throw new ConfigError(message, this.#file, field);
  }

  mapping(v: unknown, field: string): Obj {
    if (!isObj(v)) this.fail(field, `must be a mapping, got ${describe(v)}`);
    return v;
  }

  keys(obj: Obj, allowed: ReadonlySet<string>, field: string): void {
    for (const k of Object.keys(obj))
      if (!allowed.has(k)) this.fail(`${field}.${k}`, `unknown field (known: ${[...allowed].join(", ")})`);
  }

  int(v: unknown, field: string, min: number, fallback: number): number;
  int(v: unknown, field: string, min: number, fallback?: undefined): number | undefined;
  int(v: unknown, field: string, min: number, fallback?: number): number | undefined {
    if (v === undefined || v === null) return fallback;
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < min)
      this.fail(field, `must be an integer >= ${min}, got ${describe(v)}`);
    return v;
  }

  name(v: unknown, field: string): string | undefined {
    if (v === undefined || v === null) return undefined;
    if (typeof v !== "string" || v.trim() === "") this.fail(field, `must be a non-empty string, got ${describe(v)}`);
    return v;
  }

  duration(v: unknown, field: string, fallback: number): number {
    if (v === undefined || v === null) return fallback;
    const ms = typeof v === "string" ? parseGoDuration(v) : undefined;
    if (ms === undefined) this.fail(field, `must be a duration such as "30s" or "500ms", got ${describe(v)}`);
    return ms;
  }

  bytes(v: unknown, field: string, fallback: number): number {
    if (v === undefined || v === null) return fallback;
    const n = parseByteQuantity(v);
    if (n === undefined)
      this.fail(field, `must be a byte count or quantity such as 1048576, "512Mi" or "1G", got ${describe(v)}`);
    return n;
  }
}

function readBudgets(r: Reader, raw: unknown): BudgetRule[] {
  if (raw === undefined || raw === null) return [];
  if (!Array.isArray(raw)) r.fail("admission.budgets", `must be a list, got ${describe(raw)}`);
  const names = new Map<string, string>();
  return raw.map((item, i) => {
    const path = `admission.budgets[${i}]`;
    const b = r.mapping(item, path);
    r.keys(b, BUDGET_KEYS, path);
    const name = r.name(b.name, `${path}.name`);
    if (name === undefined) r.fail(`${path}.name`, "required");
    const clash = names.get(name);
    if (clash) r.fail(`${path}.name`, `duplicate budget name "${name}" (also ${clash})`);
    names.set(name, path);
    const tokensPerMinute = r.int(b.tokensPerMinute, `${path}.tokensPerMinute`, 1);
    const requestsPerMinute = r.int(b.requestsPerMinute, `${path}.requestsPerMinute`, 1);
    if (tokensPerMinute === undefined && requestsPerMinute === undefined)
      r.fail(path, "needs tokensPerMinute, requestsPerMinute or both");
    return {
      name,
      model: r.name(b.model, `${path}.model`),
      tenant: r.name(b.tenant, `${path}.tenant`),
      tokensPerMinute,
      requestsPerMinute,
      path,
    };
  });
}

function readAdmission(r: Reader, raw: unknown): AdmissionSettings {
  if (raw === undefined || raw === null)
    return {
      tenantHeader: undefined,
      defaultMaxTokens: DEFAULT_MAX_TOKENS,
      budgets: [],
      maxTrackedKeys: DEFAULT_MAX_TRACKED_KEYS,
      tenantLabelLimit: DEFAULT_TENANT_LABEL_LIMIT,
    };
  const a = r.mapping(raw, "admission");
  r.keys(a, ADMISSION_KEYS, "admission");
  const tenantHeader = r.name(a.tenantHeader, "admission.tenantHeader");
  if (tenantHeader !== undefined && !/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(tenantHeader))
    r.fail("admission.tenantHeader", `must be an HTTP header name, got ${JSON.stringify(tenantHeader)}`);
  return {
    tenantHeader: tenantHeader?.toLowerCase(),
    defaultMaxTokens: r.int(a.defaultMaxTokens, "admission.defaultMaxTokens", 0, DEFAULT_MAX_TOKENS),
    budgets: readBudgets(r, a.budgets),
    maxTrackedKeys: r.int(a.maxTrackedKeys, "admission.maxTrackedKeys", 1, DEFAULT_MAX_TRACKED_KEYS),
    tenantLabelLimit: r.int(a.tenantLabelLimit, "admission.tenantLabelLimit", 0, DEFAULT_TENANT_LABEL_LIMIT),
  };
}

function readBand(r: Reader, raw: unknown, path: string, fallback: BandLimits): BandLimits & { fairness?: string } {
  const b = r.mapping(raw, path);
  r.keys(b, BAND_KEYS, path);
  const ordering = b.orderingPolicyRef;
  if (ordering !== undefined && ordering !== null && ordering !== "fcfs-ordering-policy")
    r.fail(`${path}.orderingPolicyRef`, `only "fcfs-ordering-policy" is supported, got ${describe(ordering)}`);
  const fairness = b.fairnessPolicyRef;
  if (fairness !== undefined && fairness !== null && (typeof fairness !== "string" || !(fairness in FAIRNESS_REFS)))
    r.fail(
      `${path}.fairnessPolicyRef`,
      `must be one of ${Object.keys(FAIRNESS_REFS).join(", ")}, got ${describe(fairness)}`,
    );
  return {
    maxRequests: r.int(b.maxRequests, `${path}.maxRequests`, 0, fallback.maxRequests),
    maxBytes: r.bytes(b.maxBytes, `${path}.maxBytes`, fallback.maxBytes),
    ...(typeof fairness === "string" ? { fairness } : {}),
  };
}

function readFlowControl(r: Reader, raw: unknown, gate: boolean): FlowControlSettings {
  const present = raw !== undefined && raw !== null;
  const f = present ? r.mapping(raw, "flowControl") : {};
  if (present) r.keys(f, FLOW_KEYS, "flowControl");
  const usage = f.usageLimitPolicyPluginRef;
  if (usage !== undefined && usage !== null && usage !== "static-usage-limit-policy")
    r.fail(
      "flowControl.usageLimitPolicyPluginRef",
      `only "static-usage-limit-policy" is supported (dispatch gates on the saturation detector), got ${describe(usage)}`,
    );
  const builtIn: BandLimits = { maxRequests: 0, maxBytes: DEFAULT_BAND_MAX_BYTES };
  let fairness: string | undefined;
  let defaultBand = builtIn;
  if (f.defaultPriorityBand !== undefined && f.defaultPriorityBand !== null) {
    const band = readBand(r, f.defaultPriorityBand, "flowControl.defaultPriorityBand", builtIn);
    if (isObj(f.defaultPriorityBand) && f.defaultPriorityBand.priority !== undefined)
      r.fail("flowControl.defaultPriorityBand.priority", "the default band applies to every unlisted priority");
    fairness = band.fairness;
    defaultBand = { maxRequests: band.maxRequests, maxBytes: band.maxBytes };
  }
  const bands = new Map<number, BandLimits>();
  const list = f.priorityBands;
  if (list !== undefined && list !== null) {
    if (!Array.isArray(list)) r.fail("flowControl.priorityBands", `must be a list, got ${describe(list)}`);
    list.forEach((item, i) => {
      const path = `flowControl.priorityBands[${i}]`;
      const raw = r.mapping(item, path);
      const priority = raw.priority;
      if (typeof priority !== "number" || !Number.isSafeInteger(priority))
        r.fail(`${path}.priority`, `required integer, got ${describe(priority)}`);
      if (bands.has(priority)) r.fail(`${path}.priority`, `duplicate priority ${priority}`);
      const band = readBand(r, raw, path, defaultBand);
      // One fairness policy for all bands keeps dispatch simple; a per-band mix is accepted only when consistent.
      if (band.fairness !== undefined) {
        if (fairness !== undefined && fairness !== band.fairness)
          r.fail(`${path}.fairnessPolicyRef`, `all bands must use the same fairness policy (also "${fairness}")`);
        fairness = band.fairness;
      }
      bands.set(priority, { maxRequests: band.maxRequests, maxBytes: band.maxBytes });
    });
  }
  return {
    enabled: gate || present,
    maxRequests: r.int(f.maxRequests, "flowControl.maxRequests", 0, DEFAULT_MAX_QUEUED_REQUESTS),
    maxBytes: r.bytes(f.maxBytes, "flowControl.maxBytes", 0),
    defaultRequestTTLMs: r.duration(f.defaultRequestTTL, "flowControl.defaultRequestTTL", DEFAULT_REQUEST_TTL_MS),
    defaultPriorityBand: defaultBand,
    priorityBands: bands,
    // Round-robin, not GIE's global-strict default: with global-strict one busy tenant's backlog delays everyone.
    fairness: fairness === undefined ? "round-robin" : FAIRNESS_REFS[fairness]!,
  };
}

/** Accepts a fraction (0.75) or a percentage (75); values above 1 are percentages. */
function readTarget(r: Reader, v: unknown, field: string): number | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "number" || !Number.isFinite(v) || v <= 0 || v > 100)
    r.fail(field, `must be a fraction in (0, 1] or a percentage in (1, 100], got ${describe(v)}`);
  return v > 1 ? v / 100 : v;
}

function readAutoscaling(r: Reader, raw: unknown): AutoscalingSettings {
  const present = raw !== undefined && raw !== null;
  const a = present ? r.mapping(raw, "autoscaling") : {};
  if (present) r.keys(a, AUTOSCALING_KEYS, "autoscaling");
  const minReplicas = r.int(a.minReplicas, "autoscaling.minReplicas", 0);
  const maxReplicas = r.int(a.maxReplicas, "autoscaling.maxReplicas", 1);
  if (minReplicas !== undefined && maxReplicas !== undefined && maxReplicas < minReplicas)
    r.fail("autoscaling.maxReplicas", `must be >= autoscaling.minReplicas (${minReplicas}), got ${maxReplicas}`);
  const tolerance = a.tolerance ?? DEFAULT_AUTOSCALE_TOLERANCE;
  if (typeof tolerance !== "number" || !(tolerance >= 0 && tolerance < 1))
    r.fail("autoscaling.tolerance", `must be a number in [0, 1), got ${describe(tolerance)}`);
  const intervalMs = r.duration(a.interval, "autoscaling.interval", DEFAULT_AUTOSCALE_INTERVAL_MS);
  if (intervalMs <= 0) r.fail("autoscaling.interval", "must be positive");
  return {
    configured: present,
    minReplicas,
    maxReplicas,
    targetGpuCacheUtilization: readTarget(r, a.targetGpuCacheUtilization, "autoscaling.targetGpuCacheUtilization"),
    scaleDownStabilizationMs: r.duration(
      a.scaleDownStabilizationWindow,
      "autoscaling.scaleDownStabilizationWindow",
      DEFAULT_SCALE_DOWN_STABILIZATION_MS,
    ),
    intervalMs,
    tolerance,
  };
}

/** Validates the admission, flowControl and autoscaling sections. Throws ConfigError naming file and field. */
export function parseAdmissionConfig(source: AdmissionConfigSource): AdmissionConfig {
  const r = new Reader(source.file);
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
