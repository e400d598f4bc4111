/**
 * Turns one raw Kubernetes-style object (already parsed from YAML or JSON, or received from the API server) into the
 * plain specs of `datastore/types.ts`. Both the file source and the Kubernetes source call this, so a manifest means
 * the same thing wherever it comes from.
 *
 * The file source has no API server in front of it, so this module re-applies the CRD validation the API server
 * would have done (docs/design/api-resources.md §1-§5) and reports the first violation with its exact field path, e.g.
 * `spec.targetPorts[1].number: must be an integer 1..65535`. Those messages are shown to users verbatim.
 */
import { isIP } from "node:net";
import { POOL_GROUP, POOL_VERSION, X_GROUP, X_VERSION } from "../common/constants.js";
import type {
  Criticality,
  ModelSpec,
  ObjectiveSpec,
  PodSpec,
  PoolSpec,
  ResourceSet,
  RewriteRule,
  RewriteSpec,
  TargetModel,
} from "../datastore/types.js";

export type NormalizedObject =
  | { readonly kind: "InferencePool"; readonly spec: PoolSpec }
  | { readonly kind: "InferenceModel"; readonly spec: ModelSpec }
  | { readonly kind: "InferenceObjective"; readonly spec: ObjectiveSpec }
  | { readonly kind: "InferenceModelRewrite"; readonly spec: RewriteSpec }
  | { readonly kind: "Pod"; readonly spec: PodSpec };

export type NormalizedKind = NormalizedObject["kind"];

/** A ResourceSet being filled in. */
export type MutableResourceSet = { -readonly [K in keyof ResourceSet]: ResourceSet[K][number][] };

export function emptyResourceSet(): MutableResourceSet {
  return { pools: [], models: [], objectives: [], rewrites: [], pods: [] };
}

/** Files `obj` under its kind. */
export function addToResourceSet(set: MutableResourceSet, obj: NormalizedObject): void {
  switch (obj.kind) {
    case "InferencePool":
      set.pools.push(obj.spec);
      break;
    case "InferenceModel":
      set.models.push(obj.spec);
      break;
    case "InferenceObjective":
      set.objectives.push(obj.spec);
      break;
    case "InferenceModelRewrite":
      set.rewrites.push(obj.spec);
      break;
    case "Pod":
      set.pods.push(obj.spec);
      break;
  }
}

/** apiVersions accepted per kind, first = preferred (used in error messages). */
export const SUPPORTED_API_VERSIONS: Readonly<Record<NormalizedKind, readonly string[]>> = {
  InferencePool: [`${POOL_GROUP}/${POOL_VERSION}`, `${X_GROUP}/${X_VERSION}`],
  InferenceModel: [`${X_GROUP}/${X_VERSION}`],
  InferenceObjective: [`${X_GROUP}/${X_VERSION}`],
  InferenceModelRewrite: [`${X_GROUP}/${X_VERSION}`],
  Pod: ["v1"],
};

/** Namespace used when a manifest has none, as `kubectl apply` does without a context namespace. */
export const DEFAULT_NAMESPACE = "default";

/**
 * A manifest that does not satisfy the resource schema. `message` is `<field>: <problem>`; `origin`, `kind`,
 * `name` and `namespace` say which object (empty strings when the document is too broken to tell).
 *
 * Note: `name` is the offending object's `metadata.name`, not the error class name (as the shared contract asks);
 * detect the class with `instanceof ResourceError`.
 */
export class ResourceError extends Error {
  /** The problem without the field prefix. */
  readonly detail: string;

  constructor(
    readonly origin: string,
    readonly kind: string,
    override readonly name: string,
    /** Dotted path with list indexes, e.g. `spec.targetPorts[1].number`; "" for the document as a whole. */
    readonly field: string,
    detail: string,
    readonly namespace = "",
  ) {
    super(field === "" ? detail : `${field}: ${detail}`);
    this.detail = detail;
  }
}

export interface NormalizeOptions {
  /** Namespace for objects without `metadata.namespace`. Default `"default"`. */
  readonly defaultNamespace?: string;
}

const MAX_NAME = 253;
const MAX_NAMESPACE = 63;
const MAX_MODEL_NAME = 256;
const MAX_TARGET_MODELS = 10;
const MAX_TARGET_PORTS = 8;
const MAX_WEIGHT = 1_000_000;
const MAX_PORT = 65_535;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
// RFC 3339 as Kubernetes writes it (`2024-05-01T10:00:00Z`, optional fraction and numeric offset).
const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;

type Raw = Record<string, unknown>;

function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "a list";
  if (typeof value === "string") return JSON.stringify(value.length > 80 ? `${value.slice(0, 77)}...` : value);
  if (typeof value === "object") return "a mapping";
  return `${typeof value} ${String(value)}`;
}

function isRecord(value: unknown): value is Raw {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Carries the object's identity so every check can throw a fully-attributed ResourceError. */
class Ctx {
  constructor(
    readonly origin: string,
    readonly kind: string,
    readonly objectName: string,
    readonly namespace: string,
  ) {}

  fail(field: string, detail: string): never {
    throw new ResourceError(this.origin, this.kind, this.objectName, field, detail, this.namespace);
  }

  record(value: unknown, field: string): Raw {
    if (value === undefined || value === null) this.fail(field, "required");
    if (!isRecord(value)) this.fail(field, `must be a mapping, got ${describe(value)}`);
    return value;
  }

  optionalRecord(value: unknown, field: string): Raw | undefined {
    if (value === undefined || value === null) return undefined;
    return this.record(value, field);
  }

  list(value: unknown, field: string): unknown[] {
    if (value === undefined || value === null) this.fail(field, "required");
    if (!Array.isArray(value)) this.fail(field, `must be a list, got ${describe(value)}`);
    return value;
  }

  optionalList(value: unknown, field: string): unknown[] {
    if (value === undefined || value === null) return [];
    return this.list(value, field);
  }

  string(value: unknown, field: string, maxLength: number): string {
    if (value === undefined || value === null || value === "") this.fail(field, "required");
    if (typeof value !== "string") this.fail(field, `must be a string, got ${describe(value)}`);
    if (value.length > maxLength) this.fail(field, `must be at most ${maxLength} characters, got ${value.length}`);
    return value;
  }

  int(value: unknown, field: string, min: number, max: number): number {
    if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
      this.fail(field, `must be an integer ${min}..${max}${value === undefined ? "" : `, got ${describe(value)}`}`);
    }
    return value;
  }

  oneOf<T extends string>(value: unknown, field: string, allowed: readonly T[], fallback: T): T {
    if (value === undefined || value === null) return fallback;
    if (typeof value !== "string" || !(allowed as readonly string[]).includes(value)) {
      this.fail(field, `must be one of ${allowed.map((a) => `"${a}"`).join(", ")}, got ${describe(value)}`);
    }
    return value as T;
  }

  stringMap(value: unknown, field: string): Record<string, string> {
    const map = this.optionalRecord(value, field);
    const out: Record<string, string> = {};
    if (map === undefined) return out;
    for (const [k, v] of Object.entries(map)) {
      // YAML turns `version: 1` into a number; Kubernetes rejects that, and so do we, rather than guess.
      if (typeof v !== "string") this.fail(`${field}.${k}`, `must be a string, got ${describe(v)} (quote it)`);
      out[k] = v;
    }
    return out;
  }
}

/**
 * Normalises one object. Throws ResourceError naming the first invalid field; never throws anything else for
 * any input (including `null`, arrays and cyclic-free garbage).
 */
export function normalizeObject(raw: unknown, origin: string, options: NormalizeOptions = {}): NormalizedObject {
  const defaultNamespace = options.defaultNamespace ?? DEFAULT_NAMESPACE;
  if (!isRecord(raw)) {
    throw new ResourceError(
      origin,
      "",
      "",
      "",
      `document must be a mapping with apiVersion and kind, got ${describe(raw)}`,
    );
  }
  const apiVersion = raw["apiVersion"];
  const kind = raw["kind"];
  const rawMeta = isRecord(raw["metadata"]) ? raw["metadata"] : undefined;
  const guessedName = typeof rawMeta?.["name"] === "string" ? rawMeta["name"] : "";
  const guessedNs = typeof rawMeta?.["namespace"] === "string" ? rawMeta["namespace"] : defaultNamespace;
  const pre: Ctx = new Ctx(origin, typeof kind === "string" ? kind : "", guessedName, guessedNs);
  if (kind === undefined || kind === null || kind === "") pre.fail("kind", "required");
  if (typeof kind !== "string") pre.fail("kind", `must be a string, got ${describe(kind)}`);
  if (apiVersion === undefined || apiVersion === null || apiVersion === "") pre.fail("apiVersion", "required");
  if (typeof apiVersion !== "string") pre.fail("apiVersion", `must be a string, got ${describe(apiVersion)}`);
  const versions = (SUPPORTED_API_VERSIONS as Readonly<Record<string, readonly string[]>>)[kind];
  if (versions === undefined || !Object.hasOwn(SUPPORTED_API_VERSIONS, kind)) {
    pre.fail(
      "kind",
      `unsupported kind "${kind}" (apiVersion "${apiVersion}"); expected one of ${Object.keys(SUPPORTED_API_VERSIONS).join(", ")}`,
    );
  }
  if (!versions.includes(apiVersion)) {
    pre.fail(
      "apiVersion",
      `${kind} must have apiVersion ${versions.map((v) => `"${v}"`).join(" or ")}, got "${apiVersion}"`,
    );
  }

  const metaRecord = pre.record(raw["metadata"], "metadata");
  const name = pre.string(metaRecord["name"], "metadata.name", MAX_NAME);
  if (!DNS_SUBDOMAIN.test(name)) {
    pre.fail("metadata.name", `must be a lowercase RFC 1123 subdomain (a-z, 0-9, '-', '.'), got ${describe(name)}`);
  }
  let namespace = defaultNamespace;
  if (metaRecord["namespace"] !== undefined && metaRecord["namespace"] !== null) {
    namespace = pre.string(metaRecord["namespace"], "metadata.namespace", MAX_NAMESPACE);
    if (!DNS_LABEL.test(namespace)) {
      pre.fail("metadata.namespace", `must be a lowercase RFC 1123 label (a-z, 0-9, '-'), got ${describe(namespace)}`);
    }
  }
  const ctx: Ctx = new Ctx(origin, kind, name, namespace);
  const meta = { name, namespace, creationTimestamp: timestamp(ctx, metaRecord["creationTimestamp"]), origin };

  switch (kind as NormalizedKind) {
    case "InferencePool":
      return {
        kind: "InferencePool",
        spec: apiVersion === `${X_GROUP}/${X_VERSION}` ? legacyPool(ctx, raw, meta) : pool(ctx, raw, meta),
      };
    case "InferenceModel":
      return { kind: "InferenceModel", spec: model(ctx, raw, meta) };
    case "InferenceObjective":
      return { kind: "InferenceObjective", spec: objective(ctx, raw, meta) };
    case "InferenceModelRewrite":
      return { kind: "InferenceModelRewrite", spec: rewrite(ctx, raw, meta) };
    case "Pod":
      return { kind: "Pod", spec: pod(ctx, raw, metaRecord, meta) };
  }
}

interface Meta {
  readonly name: string;
  readonly namespace: string;
  readonly creationTimestamp: number;
  readonly origin: string;
}

function timestamp(ctx: Ctx, value: unknown): number {
  if (value === undefined || value === null || value === "") return 0;
  // The `yaml` package's 1.1 schema (and some JSON producers) hand us Date objects.
  if (value instanceof Date) {
    const t = value.getTime();
    if (Number.isFinite(t)) return t;
  } else if (typeof value === "string" && RFC3339.test(value)) {
    const t = Date.parse(value);
    if (Number.isFinite(t)) return t;
  }
  return ctx.fail("metadata.creationTimestamp", `must be an RFC 3339 timestamp, got ${describe(value)}`);
}

function selectorLabels(ctx: Ctx, value: unknown, field: string): Record<string, string> {
  ctx.record(value, field);
  const labels = ctx.stringMap(value, field);
  // An empty selector would select every pod in the namespace; the API requires at least one label.
  if (Object.keys(labels).length === 0) ctx.fail(field, "must have at least one label");
  return labels;
}

/**
 * The seed article's pool-level autoscaling intent, as annotations on the InferencePool: GIE v1.5.0's CRD (shipped
 * unchanged in deploy/crds/) has no such fields, and the API server rejects or prunes unknown spec fields.
 * docs/autoscaling.md maps the article's YAML onto these keys.
 */
export const AUTOSCALING_ANNOTATION_PREFIX = "autoscaling.switchyard.io/";
export const AUTOSCALING_ANNOTATIONS = {
  minReplicas: `${AUTOSCALING_ANNOTATION_PREFIX}min-replicas`,
  maxReplicas: `${AUTOSCALING_ANNOTATION_PREFIX}max-replicas`,
  targetGpuCacheUtilization: `${AUTOSCALING_ANNOTATION_PREFIX}target-gpu-cache-utilization`,
} as const;
const AUTOSCALING_KEYS: ReadonlySet<string> = new Set(Object.values(AUTOSCALING_ANNOTATIONS));
/** Where the hints lived before the upstream schema: read only to point at the annotation that replaces them. */
const FORKED_SPEC_FIELDS: readonly [string, string][] = [
  ["minReplicas", AUTOSCALING_ANNOTATIONS.minReplicas],
  ["maxReplicas", AUTOSCALING_ANNOTATIONS.maxReplicas],
  ["targetLoad", AUTOSCALING_ANNOTATIONS.targetGpuCacheUtilization],
];
const MAX_REPLICAS = 1_000_000;
const REPLICAS_TEXT = /^(0|[1-9][0-9]{0,6})$/;
const PERCENT_TEXT = /^([0-9]+(\.[0-9]+)?|\.[0-9]+)%?$/;

type AutoscalingHints = Pick<
  PoolSpec,
  "minReplicas" | "maxReplicas" | "targetGpuCacheUtilization" | "autoscalingError"
>;

/**
 * Reads the autoscaling annotations. A bad value never invalidates the pool: the API server accepted the object,
 * and dropping a pool over an advisory hint would stop routing. Instead every hint of the pool is ignored and
 * `autoscalingError` says which file/object/field was wrong, for the autoscale loop to report (and count).
 */
function autoscalingHints(ctx: Ctx, meta: Raw, spec: Raw): AutoscalingHints {
  try {
    for (const [field, annotation] of FORKED_SPEC_FIELDS) {
      if (spec[field] !== undefined && spec[field] !== null) {
        ctx.fail(
          `spec.${field}`,
          `not an InferencePool field (GIE v1.5.0's schema has none for autoscaling); set the annotation ` +
            `${annotation} instead (docs/autoscaling.md)`,
        );
      }
    }
    const annotations = ctx.optionalRecord(meta["annotations"], "metadata.annotations") ?? {};
    const out: { minReplicas?: number; maxReplicas?: number; targetGpuCacheUtilization?: number } = {};
    const text = (key: string): string | undefined => {
      const v = annotations[key];
      if (v === undefined || v === null) return undefined;
      if (typeof v !== "string") ctx.fail(annotationField(key), `must be a string, got ${describe(v)} (quote it)`);
      return v.trim();
    };
    for (const key of Object.keys(annotations)) {
      if (key.startsWith(AUTOSCALING_ANNOTATION_PREFIX) && !AUTOSCALING_KEYS.has(key)) {
        ctx.fail(
          annotationField(key),
          `unknown autoscaling annotation; expected one of ${[...AUTOSCALING_KEYS].join(", ")}`,
        );
      }
    }
    const replicas = (key: string, min: number): number | undefined => {
      const v = text(key);
      if (v === undefined) return undefined;
      const n = REPLICAS_TEXT.test(v) ? Number(v) : Number.NaN;
      if (!(n >= min && n <= MAX_REPLICAS)) {
        ctx.fail(annotationField(key), `must be an integer ${min}..${MAX_REPLICAS}, got ${describe(v)}`);
      }
      return n;
    };
    const min = replicas(AUTOSCALING_ANNOTATIONS.minReplicas, 0);
    const max = replicas(AUTOSCALING_ANNOTATIONS.maxReplicas, 1);
    if (min !== undefined) out.minReplicas = min;
    if (max !== undefined) {
      if (min !== undefined && max < min) {
        ctx.fail(
          annotationField(AUTOSCALING_ANNOTATIONS.maxReplicas),
          `must be >= ${AUTOSCALING_ANNOTATIONS.minReplicas} (${min}), got ${max}`,
        );
      }
      out.maxReplicas = max;
    }
    const target = text(AUTOSCALING_ANNOTATIONS.targetGpuCacheUtilization);
    if (target !== undefined) {
      // A percentage, as the article's `gpuCacheUtilization: 75`; "75%" reads the same.
      const pct = PERCENT_TEXT.test(target) ? Number(target.replace(/%$/, "")) : Number.NaN;
      if (!(pct > 0 && pct <= 100)) {
        ctx.fail(
          annotationField(AUTOSCALING_ANNOTATIONS.targetGpuCacheUtilization),
          `must be a percentage in (0, 100], got ${describe(target)}`,
        );
      }
      out.targetGpuCacheUtilization = pct / 100;
    }
    return out;
  } catch (err) {
    if (!(err instanceof ResourceError)) throw err;
    const where = `${err.origin}: ${err.kind} ${err.namespace}/${err.name}`;
    return { autoscalingError: { field: err.field, message: `${where}: ${err.message}; autoscaling hints ignored` } };
  }
}

function annotationField(key: string): string {
  return `metadata.annotations["${key}"]`;
}

function failureModeOf(ctx: Ctx, ref: Raw | undefined, field: string): PoolSpec["failureMode"] {
  return ctx.oneOf(ref?.["failureMode"], `${field}.failureMode`, ["FailOpen", "FailClose"] as const, "FailClose");
}

function pool(ctx: Ctx, raw: Raw, meta: Meta): PoolSpec {
  const spec = ctx.record(raw["spec"], "spec");
  const selector = ctx.record(spec["selector"], "spec.selector");
  const labels = selectorLabels(ctx, selector["matchLabels"], "spec.selector.matchLabels");
  const portsRaw = ctx.list(spec["targetPorts"], "spec.targetPorts");
  if (portsRaw.length < 1 || portsRaw.length > MAX_TARGET_PORTS) {
    ctx.fail("spec.targetPorts", `must list 1..${MAX_TARGET_PORTS} ports, got ${portsRaw.length}`);
  }
  const targetPorts: number[] = [];
  portsRaw.forEach((entry, i) => {
    const field = `spec.targetPorts[${i}]`;
    const port = ctx.record(entry, field);
    const number = ctx.int(port["number"], `${field}.number`, 1, MAX_PORT);
    const first = targetPorts.indexOf(number);
    if (first !== -1) ctx.fail(`${field}.number`, `duplicate port ${number} (also spec.targetPorts[${first}])`);
    targetPorts.push(number);
  });
  const appProtocol = ctx.oneOf(
    spec["appProtocol"],
    "spec.appProtocol",
    ["http", "kubernetes.io/h2c"] as const,
    "http",
  );
  // Optional here (GIE HEAD made it optional too): file users run switchyard directly, without a gateway reading it.
  const ref = ctx.optionalRecord(spec["endpointPickerRef"], "spec.endpointPickerRef");
  if (ref !== undefined) {
    ctx.string(ref["name"], "spec.endpointPickerRef.name", MAX_NAME);
    const refKind = ref["kind"] ?? "Service";
    if (typeof refKind !== "string" || refKind === "") {
      ctx.fail("spec.endpointPickerRef.kind", `must be a non-empty string, got ${describe(refKind)}`);
    }
    const port = ctx.optionalRecord(ref["port"], "spec.endpointPickerRef.port");
    if (refKind === "Service" && port === undefined) {
      ctx.fail("spec.endpointPickerRef.port", "required when kind is Service");
    }
    if (port !== undefined) ctx.int(port["number"], "spec.endpointPickerRef.port.number", 1, MAX_PORT);
  }
  return {
    ...meta,
    selector: labels,
    targetPorts,
    appProtocol,
    failureMode: failureModeOf(ctx, ref, "spec.endpointPickerRef"),
    ...autoscalingHints(ctx, raw["metadata"] as Raw, spec),
  };
}

function legacyPool(ctx: Ctx, raw: Raw, meta: Meta): PoolSpec {
  const spec = ctx.record(raw["spec"], "spec");
  const labels = selectorLabels(ctx, spec["selector"], "spec.selector");
  const port = ctx.int(spec["targetPortNumber"], "spec.targetPortNumber", 1, MAX_PORT);
  const ref = ctx.optionalRecord(spec["extensionRef"], "spec.extensionRef");
  if (ref !== undefined) {
    ctx.string(ref["name"], "spec.extensionRef.name", MAX_NAME);
    if (ref["portNumber"] !== undefined && ref["portNumber"] !== null) {
      ctx.int(ref["portNumber"], "spec.extensionRef.portNumber", 1, MAX_PORT);
    }
  }
  return {
    ...meta,
    selector: labels,
    targetPorts: [port],
    appProtocol: "http",
    failureMode: failureModeOf(ctx, ref, "spec.extensionRef"),
    ...autoscalingHints(ctx, raw["metadata"] as Raw, spec),
  };
}

function poolRef(ctx: Ctx, spec: Raw): string {
  const ref = ctx.record(spec["poolRef"], "spec.poolRef");
  const kind = ref["kind"];
  if (kind !== undefined && kind !== null && kind !== "InferencePool") {
    ctx.fail("spec.poolRef.kind", `must be "InferencePool", got ${describe(kind)}`);
  }
  return ctx.string(ref["name"], "spec.poolRef.name", MAX_NAME);
}

function model(ctx: Ctx, raw: Raw, meta: Meta): ModelSpec {
  const spec = ctx.record(raw["spec"], "spec");
  const modelName = ctx.string(spec["modelName"], "spec.modelName", MAX_MODEL_NAME);
  const crit = ctx.oneOf(
    spec["criticality"],
    "spec.criticality",
    ["Critical", "Standard", "Sheddable", "BestEffort"] as const,
    "Standard",
  );
  // "BestEffort" is the pre-v0.3 spelling of Sheddable; old manifests still use it.
  const criticality: Criticality = crit === "BestEffort" ? "Sheddable" : crit;
  const targetsRaw = ctx.optionalList(spec["targetModels"], "spec.targetModels");
  if (targetsRaw.length > MAX_TARGET_MODELS) {
    ctx.fail("spec.targetModels", `must list at most ${MAX_TARGET_MODELS} models, got ${targetsRaw.length}`);
  }
  let weighted: number | undefined;
  let unweighted: number | undefined;
  const targetModels: TargetModel[] = targetsRaw.map((entry, i) => {
    const field = `spec.targetModels[${i}]`;
    const t = ctx.record(entry, field);
    const name = ctx.string(t["name"], `${field}.name`, MAX_NAME);
    if (t["weight"] === undefined || t["weight"] === null) {
      if (weighted !== undefined) {
        ctx.fail(
          `${field}.weight`,
          `weights must be set for all target models or none (spec.targetModels[${weighted}] has one)`,
        );
      }
      unweighted ??= i;
      // Equal shares when no weights are given.
      return { name, weight: 1 };
    }
    if (unweighted !== undefined) {
      ctx.fail(
        `${field}.weight`,
        `weights must be set for all target models or none (spec.targetModels[${unweighted}] has none)`,
      );
    }
    weighted ??= i;
    return { name, weight: ctx.int(t["weight"], `${field}.weight`, 1, MAX_WEIGHT) };
  });
  return { ...meta, modelName, criticality, targetModels, poolRef: poolRef(ctx, spec) };
}

function objective(ctx: Ctx, raw: Raw, meta: Meta): ObjectiveSpec {
  const spec = ctx.record(raw["spec"], "spec");
  const p = spec["priority"];
  const priority =
    p === undefined || p === null ? 0 : ctx.int(p, "spec.priority", Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER);
  return { ...meta, priority, poolRef: poolRef(ctx, spec) };
}

function rewrite(ctx: Ctx, raw: Raw, meta: Meta): RewriteSpec {
  const spec = ctx.record(raw["spec"], "spec");
  const ref = poolRef(ctx, spec);
  const rulesRaw = ctx.list(spec["rules"], "spec.rules");
  if (rulesRaw.length === 0) ctx.fail("spec.rules", "must list at least one rule");
  const rules: RewriteRule[] = rulesRaw.map((entry, r) => {
    const field = `spec.rules[${r}]`;
    const rule = ctx.record(entry, field);
    const matches = ctx.optionalList(rule["matches"], `${field}.matches`).map((m, i) => {
      const mf = `${field}.matches[${i}]`;
      const match = ctx.record(m, mf);
      const modelMatch = ctx.record(match["model"], `${mf}.model`);
      ctx.oneOf(modelMatch["type"], `${mf}.model.type`, ["Exact"] as const, "Exact");
      return ctx.string(modelMatch["value"], `${mf}.model.value`, MAX_MODEL_NAME);
    });
    const targetsRaw = ctx.list(rule["targets"], `${field}.targets`);
    if (targetsRaw.length === 0) ctx.fail(`${field}.targets`, "must list at least one target");
    const targets = targetsRaw.map((t, i) => {
      const tf = `${field}.targets[${i}]`;
      const target = ctx.record(t, tf);
      const modelRewrite = ctx.string(target["modelRewrite"], `${tf}.modelRewrite`, MAX_MODEL_NAME);
      const w = target["weight"];
      // Unset weight = 0; a rule whose weights are all 0 picks uniformly (docs/design/api-resources.md §5).
      const weight = w === undefined || w === null ? 0 : ctx.int(w, `${tf}.weight`, 1, MAX_WEIGHT);
      return { modelRewrite, weight };
    });
    return { matches, targets };
  });
  return { ...meta, poolRef: ref, rules };
}

function pod(ctx: Ctx, raw: Raw, metaRecord: Raw, meta: Meta): PodSpec {
  const labels = ctx.stringMap(metaRecord["labels"], "metadata.labels");
  const annotations = ctx.stringMap(metaRecord["annotations"], "metadata.annotations");
  const status = ctx.optionalRecord(raw["status"], "status");
  let podIP = "";
  const ip = status?.["podIP"];
  if (ip !== undefined && ip !== null && ip !== "") {
    if (typeof ip !== "string" || isIP(ip) === 0) {
      ctx.fail("status.podIP", `must be an IPv4 or IPv6 address, got ${describe(ip)}`);
    }
    podIP = ip;
  }
  let ready = false;
  const conditions = ctx.optionalList(status?.["conditions"], "status.conditions");
  conditions.forEach((c, i) => {
    const cond = ctx.record(c, `status.conditions[${i}]`);
    if (cond["type"] === "Ready") ready = cond["status"] === "True";
  });
  const del = metaRecord["deletionTimestamp"];
  const deleting = del !== undefined && del !== null && del !== "";
  return { ...meta, labels, annotations, podIP, ready, deleting };
}
