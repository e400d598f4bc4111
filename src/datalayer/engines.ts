/**
 * Which Prometheus series carry which scheduling signal, per model-server engine, and the extraction of one scrape
 * into an EndpointMetrics (docs/design/model-servers.md §3).
 *
 * Config shape and defaults follow GIE's `core-metrics-extractor` plugin (factories.go@v1.5.0): user engine configs
 * replace built-ins of the same name, built-ins not named are appended, a missing spec field disables that signal,
 * `default` is a reserved name. Where GIE is weak we do better:
 * - GIE reads one arbitrary series per signal; with vLLM data parallelism (`engine` label) that is one rank's view.
 *   We SUM queue and running across matching series and take the MAX KV usage (the conservative choice for
 *   saturation).
 * - GIE silently reads nothing when vLLM renamed `gpu_cache_usage_perc` to `kv_cache_usage_perc`; either name in a
 *   spec accepts the other as a fallback.
 * - A scrape without a required signal is an error, so the endpoint goes stale instead of looking idle (zero).
 * - LoRA: the series with the largest value (a wall-clock timestamp) wins even when its lists are empty, so "no
 *   adapters loaded any more" is not masked by an older lingering series, as GIE's legacy poller did.
 */

import { ConfigReader, type MappingReader } from "../common/config-reader.js";
import { ENGINE_TYPE_LABEL } from "../common/constants.js";
import { ConfigError } from "../common/errors.js";
import type { EndpointMetrics } from "../datastore/types.js";
import { parseFamilies, type Sample, WantedSet } from "./prom-parser.js";

/** An instant-vector selector restricted to equality matchers: `name{label="value",…}`. */
export interface MetricSpec {
  readonly name: string;
  readonly matchers: readonly (readonly [label: string, value: string])[];
}

/** One entry of `core-metrics-extractor` `engineConfigs[]` (GIE JSON field names). Missing specs disable the signal. */
export interface EngineConfig {
  readonly name: string;
  readonly queuedRequestsSpec?: string;
  readonly runningRequestsSpec?: string;
  readonly kvUsageSpec?: string;
  readonly loraSpec?: string;
  readonly cacheInfoSpec?: string;
  /** Label of the cache-info series holding the block size; default `block_size`. */
  readonly cacheBlockSizeLabelName?: string;
  /** Label of the cache-info series holding the number of blocks; default `num_gpu_blocks`. */
  readonly cacheNumBlocksLabelName?: string;
  /** A gauge holding the block size (engines without an info metric, e.g. trtllm-serve). */
  readonly cacheBlockSizeSpec?: string;
  /** A gauge holding the number of blocks. */
  readonly cacheNumBlocksSpec?: string;
  /**
   * Where this engine serves its Prometheus text; default `/metrics`. trtllm-serve serves JSON at `/metrics` and the
   * text at `/prometheus/metrics` (docs/design/model-servers.md §3.4). A `metrics-data-source` `path` overrides it
   * for every engine.
   */
  readonly metricsPath?: string;
  /**
   * The port the engine serves its metrics on, when not the pool's target port: Triton serves them on its metrics
   * port (8002 by default), apart from inference (8000). A `metrics-data-source` `port` overrides it.
   */
  readonly metricsPort?: number;
}

/** A validated, compiled engine mapping. */
export interface EngineMapping {
  readonly name: string;
  readonly queued: MetricSpec | undefined;
  readonly running: MetricSpec | undefined;
  /** Primary KV-usage selector first, then accepted fallbacks (renamed metrics). Empty = disabled. */
  readonly kvUsage: readonly MetricSpec[];
  readonly lora: MetricSpec | undefined;
  readonly cacheInfo: MetricSpec | undefined;
  readonly cacheBlockSizeLabel: string;
  readonly cacheNumBlocksLabel: string;
  readonly cacheBlockSize: MetricSpec | undefined;
  readonly cacheNumBlocks: MetricSpec | undefined;
  /** Where the engine's Prometheus text is served. */
  readonly metricsPath: string;
  /** Its port, when not the endpoint's target port. */
  readonly metricsPort: number | undefined;
  /** Every metric name this mapping reads; what the parser filters on. */
  readonly wanted: WantedSet;
}

export const DEFAULT_ENGINE = "vllm";
/** GIE reserves this registry key for the default mapping (factories.go@v1.5.0). */
export const RESERVED_ENGINE_NAME = "default";
export const DEFAULT_CACHE_BLOCK_SIZE_LABEL = "block_size";
export const DEFAULT_CACHE_NUM_BLOCKS_LABEL = "num_gpu_blocks";
/** GIE's metrics path (metrics-data-source `path`). */
export const DEFAULT_METRICS_PATH = "/metrics";

/** Why `path` cannot be a metrics path (absolute, no spaces, no fragment), or undefined when it can. */
export function metricsPathProblem(path: unknown): string | undefined {
  if (typeof path === "string" && path.startsWith("/") && !/[\s#]/.test(path)) return undefined;
  return `must be an absolute path without spaces or "#", got ${JSON.stringify(path)}`;
}

/** Built-in engines, exactly docs/design/model-servers.md §3.1. */
export const DEFAULT_ENGINE_CONFIGS: readonly EngineConfig[] = Object.freeze([
  {
    name: "vllm",
    queuedRequestsSpec: "vllm:num_requests_waiting",
    runningRequestsSpec: "vllm:num_requests_running",
    kvUsageSpec: "vllm:kv_cache_usage_perc",
    loraSpec: "vllm:lora_requests_info",
    cacheInfoSpec: "vllm:cache_config_info",
    cacheBlockSizeLabelName: "block_size",
    cacheNumBlocksLabelName: "num_gpu_blocks",
  },
  {
    // SGLang 0.5.x with priority scheduling repeats the queue/running gauges per priority beside the total under
    // `priority=""`; the empty matcher also matches servers without the label (docs/design/model-servers.md §3.4).
    // 0.5.x replaced cache_config_info with the page_size / num_pages gauges; both are read, gauges win.
    name: "sglang",
    queuedRequestsSpec: 'sglang:num_queue_reqs{priority=""}',
    runningRequestsSpec: 'sglang:num_running_reqs{priority=""}',
    kvUsageSpec: "sglang:token_usage",
    loraSpec: "",
    cacheInfoSpec: "sglang:cache_config_info",
    cacheBlockSizeLabelName: "page_size",
    cacheNumBlocksLabelName: "num_pages",
    cacheBlockSizeSpec: "sglang:page_size",
    cacheNumBlocksSpec: "sglang:num_pages",
  },
  {
    name: "trtllm-serve",
    queuedRequestsSpec: "trtllm_num_requests_waiting",
    runningRequestsSpec: "trtllm_num_requests_running",
    kvUsageSpec: "trtllm_kv_cache_utilization",
    loraSpec: "",
    cacheInfoSpec: "",
    cacheBlockSizeSpec: "trtllm_kv_cache_tokens_per_block",
    cacheNumBlocksSpec: "trtllm_kv_cache_max_blocks",
    metricsPath: "/prometheus/metrics",
  },
  {
    name: "triton-tensorrt-llm",
    queuedRequestsSpec: "nv_trt_llm_request_metrics{request_type=waiting}",
    runningRequestsSpec: "nv_trt_llm_request_metrics{request_type=scheduled}",
    kvUsageSpec: "nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type=fraction}",
    loraSpec: "",
    cacheInfoSpec: "",
    cacheBlockSizeSpec: "nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type=tokens_per}",
    cacheNumBlocksSpec: "nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type=max}",
    // Triton serves every metric, the TensorRT-LLM backend's included, on its metrics port (--metrics-port, 8002 by
    // default), not on the inference port the pool targets (docs/design/model-servers.md §3.4).
    metricsPort: 8002,
  },
]);

/** Metric names that were renamed upstream; a spec naming one also accepts the others, in this order. */
const METRIC_ALIASES: Readonly<Record<string, readonly string[]>> = {
  // vLLM ≥ 0.9 renamed it; the old name was removed around 0.12 (PR #29330). GIE ≤ 1.2 configs use the old one.
  "vllm:kv_cache_usage_perc": ["vllm:gpu_cache_usage_perc"],
  "vllm:gpu_cache_usage_perc": ["vllm:kv_cache_usage_perc"],
};

// ---------------------------------------------------------------------------------------------------------------
// Spec parsing

const METRIC_NAME_RE = /^[a-zA-Z_:][a-zA-Z0-9_:]*/;
const LABEL_NAME_RE = /^[a-zA-Z_][a-zA-Z0-9_]*/;

function specError(
  spec: string,
  detail: string,
  column: number | undefined,
  field: string | undefined,
  file?: string,
): ConfigError {
  const where = column === undefined ? "" : ` at column ${column + 1}`;
  return new ConfigError(`invalid metric spec ${JSON.stringify(spec)}: ${detail}${where}`, file, field);
}

/**
 * Parses `name`, `name{}` or `name{label=value, label="value", label='value'}`. Label values may be bare (up to the
 * next `,` or `}`, trimmed) or quoted with `\\`, `\"`, `\'` escapes. Only equality matchers are supported.
 * Returns undefined for an empty (or all-blank) string: the signal is disabled. Throws ConfigError otherwise.
 */
export function parseMetricSpec(text: string, field?: string, file?: string): MetricSpec | undefined {
  const spec = text.trim();
  if (spec === "") return undefined;
  const lead = text.length - text.trimStart().length;
  const nameMatch = METRIC_NAME_RE.exec(spec);
  if (nameMatch === null) {
    throw specError(
      text,
      "metric name must match [a-zA-Z_:][a-zA-Z0-9_:]*",
      lead === 0 ? undefined : lead,
      field,
      file,
    );
  }
  const name = nameMatch[0];
  let i = name.length;
  const matchers: [string, string][] = [];
  const col = (pos: number) => pos + lead;
  const skipBlank = () => {
    while (i < spec.length && (spec[i] === " " || spec[i] === "\t")) i++;
  };
  skipBlank();
  if (i < spec.length) {
    if (spec[i] !== "{")
      throw specError(text, `unexpected ${JSON.stringify(spec[i])} after metric name`, col(i), field, file);
    i++;
    for (;;) {
      skipBlank();
      if (i >= spec.length) throw specError(text, 'missing closing "}"', undefined, field, file);
      if (spec[i] === "}") {
        i++;
        break;
      }
      const labelMatch = LABEL_NAME_RE.exec(spec.slice(i));
      if (labelMatch === null) throw specError(text, "expected a label name", col(i), field, file);
      const label = labelMatch[0];
      i += label.length;
      skipBlank();
      const op = spec.slice(i, i + 2);
      if (op === "!=" || op === "=~" || op === "!~") {
        throw specError(text, `matcher "${op}" is not supported (only "=")`, col(i), field, file);
      }
      if (spec[i] !== "=") throw specError(text, `expected "=" after label name "${label}"`, col(i), field, file);
      i++;
      skipBlank();
      let value: string;
      const q = spec[i];
      if (q === '"' || q === "'") {
        i++;
        value = "";
        let closed = false;
        while (i < spec.length) {
          const c = spec[i]!;
          if (c === "\\" && i + 1 < spec.length) {
            const e = spec[i + 1]!;
            value += e === "n" ? "\n" : e;
            i += 2;
            continue;
          }
          if (c === q) {
            closed = true;
            i++;
            break;
          }
          value += c;
          i++;
        }
        if (!closed) throw specError(text, `unterminated quoted value for label "${label}"`, undefined, field, file);
      } else {
        const start = i;
        while (i < spec.length && spec[i] !== "," && spec[i] !== "}") i++;
        value = spec.slice(start, i).trim();
        if (value.includes('"') || value.includes("'")) {
          throw specError(text, `stray quote in value of label "${label}"`, col(start), field, file);
        }
      }
      if (matchers.some(([l]) => l === label))
        throw specError(text, `duplicate label "${label}"`, undefined, field, file);
      matchers.push([label, value]);
      skipBlank();
      if (i >= spec.length) throw specError(text, 'missing closing "}"', undefined, field, file);
      if (spec[i] === ",") {
        i++;
        continue;
      }
      if (spec[i] !== "}") throw specError(text, `expected "," or "}"`, col(i), field, file);
    }
    skipBlank();
    if (i < spec.length) throw specError(text, 'unexpected text after "}"', col(i), field, file);
  }
  return { name, matchers };
}

/** Canonical PromQL form, used in error messages and logs. */
export function formatMetricSpec(spec: MetricSpec): string {
  if (spec.matchers.length === 0) return spec.name;
  return `${spec.name}{${spec.matchers.map(([l, v]) => `${l}=${JSON.stringify(v)}`).join(",")}}`;
}

function matches(spec: MetricSpec, sample: Sample): boolean {
  for (const [label, value] of spec.matchers) {
    // Prometheus semantics: `label=""` also matches series without the label.
    if ((sample.labels[label] ?? "") !== value) return false;
  }
  return true;
}

// ---------------------------------------------------------------------------------------------------------------
// Engine configs

const ENGINE_CONFIG_KEYS: ReadonlySet<string> = new Set([
  "name",
  "queuedRequestsSpec",
  "runningRequestsSpec",
  "kvUsageSpec",
  "loraSpec",
  "cacheInfoSpec",
  "cacheBlockSizeLabelName",
  "cacheNumBlocksLabelName",
  "cacheBlockSizeSpec",
  "cacheNumBlocksSpec",
  "metricsPath",
  "metricsPort",
]);

/**
 * Validates one untyped `engineConfigs[]` entry (from YAML/JSON), naming the offending field. `path` prefixes field
 * names in errors, e.g. `plugins[2].parameters.engineConfigs[0]`.
 */
export function validateEngineConfig(
  raw: unknown,
  path = "engineConfigs[]",
  file?: string,
  reader: ConfigReader = new ConfigReader(file),
): EngineConfig {
  const m: MappingReader = reader.mapping(raw, path).only(ENGINE_CONFIG_KEYS);
  const out: Record<string, string | number> = {};
  for (const key of ENGINE_CONFIG_KEYS) {
    const v = key === "metricsPort" ? m.integer(key, { min: 1, max: 65535 }) : m.text(key);
    if (v !== undefined) out[key] = v;
  }
  const name = out["name"];
  if (typeof name !== "string" || name.trim() === "") m.fail("name", "engine config name cannot be empty");
  const config = out as unknown as EngineConfig;
  compileEngine(config, path, file); // surfaces spec errors now, with the field name
  return config;
}

function metricsPathOf(value: string | undefined, path: string, file: string | undefined): string {
  const v = (value ?? "").trim();
  if (v === "") return DEFAULT_METRICS_PATH;
  const problem = metricsPathProblem(v);
  if (problem !== undefined) throw new ConfigError(problem, file, `${path}.metricsPath`);
  return v;
}

function metricsPortOf(value: unknown, path: string, file: string | undefined): number | undefined {
  if (value === undefined || value === "") return undefined;
  const n = typeof value === "string" ? Number(value) : value;
  if (typeof n !== "number" || !Number.isInteger(n) || n < 1 || n > 65535)
    throw new ConfigError(`must be an integer port 1-65535, got ${JSON.stringify(value)}`, file, `${path}.metricsPort`);
  return n;
}

/** Compiles an engine config; throws ConfigError naming the field of a malformed spec. */
export function compileEngine(
  config: EngineConfig,
  path = `engineConfigs[${config.name}]`,
  file?: string,
): EngineMapping {
  const name = config.name.trim();
  if (name === "") throw new ConfigError("engine config name cannot be empty", file, `${path}.name`);
  if (name === RESERVED_ENGINE_NAME) {
    throw new ConfigError(`engine config name cannot be "${RESERVED_ENGINE_NAME}" (reserved)`, file, `${path}.name`);
  }
  const parse = (key: Exclude<keyof EngineConfig, "metricsPort">): MetricSpec | undefined => {
    return parseMetricSpec(config[key] ?? "", `${path}.${key}`, file);
  };
  const kv = parse("kvUsageSpec");
  const kvUsage: MetricSpec[] = [];
  if (kv !== undefined) {
    kvUsage.push(kv);
    for (const alias of METRIC_ALIASES[kv.name] ?? []) kvUsage.push({ name: alias, matchers: kv.matchers });
  }
  const labelName = (key: "cacheBlockSizeLabelName" | "cacheNumBlocksLabelName", fallback: string): string => {
    const v = (config[key] ?? "").trim();
    if (v === "") return fallback;
    if (!/^[a-zA-Z_][a-zA-Z0-9_]*$/.test(v)) {
      throw new ConfigError(`invalid label name ${JSON.stringify(v)}`, file, `${path}.${key}`);
    }
    return v;
  };
  const mapping = {
    name,
    queued: parse("queuedRequestsSpec"),
    running: parse("runningRequestsSpec"),
    kvUsage,
    lora: parse("loraSpec"),
    cacheInfo: parse("cacheInfoSpec"),
    cacheBlockSizeLabel: labelName("cacheBlockSizeLabelName", DEFAULT_CACHE_BLOCK_SIZE_LABEL),
    cacheNumBlocksLabel: labelName("cacheNumBlocksLabelName", DEFAULT_CACHE_NUM_BLOCKS_LABEL),
    cacheBlockSize: parse("cacheBlockSizeSpec"),
    cacheNumBlocks: parse("cacheNumBlocksSpec"),
    metricsPath: metricsPathOf(config.metricsPath, path, file),
    metricsPort: metricsPortOf(config.metricsPort, path, file),
  };
  const names: string[] = [];
  for (const s of [
    mapping.queued,
    mapping.running,
    ...kvUsage,
    mapping.lora,
    mapping.cacheInfo,
    mapping.cacheBlockSize,
    mapping.cacheNumBlocks,
  ]) {
    if (s !== undefined) names.push(s.name);
  }
  return { ...mapping, wanted: new WantedSet(names) };
}

export interface EngineForOptions {
  /** Pod label naming the engine; default `inference.networking.k8s.io/engine-type`. */
  readonly labelKey?: string;
  /** Engine for pods without the label; default `vllm`. */
  readonly defaultEngine?: string;
}

/** The engine name for a pod's labels: the engine-type label's value, or the default engine when absent/empty. */
export function engineFor(
  labels: Readonly<Record<string, string>> | undefined,
  options: EngineForOptions = {},
): string {
  const value = labels?.[options.labelKey ?? ENGINE_TYPE_LABEL]?.trim();
  return value === undefined || value === "" ? (options.defaultEngine ?? DEFAULT_ENGINE) : value;
}

export interface EngineRegistryOptions {
  /** Custom engines (GIE `core-metrics-extractor` `engineConfigs`); replace built-ins of the same name. Default []. */
  readonly engineConfigs?: readonly EngineConfig[];
  /** Engine for unlabelled pods; must name a configured engine. Default `vllm`. */
  readonly defaultEngine?: string;
  /** Pod label naming the engine. Default `inference.networking.k8s.io/engine-type`. */
  readonly engineLabelKey?: string;
}

/** The set of engine mappings in effect: user configs first, then the built-ins they did not replace. */
export class EngineRegistry {
  readonly defaultEngine: string;
  readonly engineLabelKey: string;
  readonly #mappings = new Map<string, EngineMapping>();

  readonly #customDefault: boolean;
  /** The options this registry was built from: plain data, so a scrape worker can build the same registry. */
  readonly options: EngineRegistryOptions;

  constructor(options: EngineRegistryOptions = {}) {
    this.options = {
      engineConfigs: (options.engineConfigs ?? []).map((c) => ({ ...c })),
      ...(options.defaultEngine === undefined ? {} : { defaultEngine: options.defaultEngine }),
      ...(options.engineLabelKey === undefined ? {} : { engineLabelKey: options.engineLabelKey }),
    };
    this.#customDefault =
      (options.defaultEngine ?? "").trim() !== "" ||
      ((options.engineLabelKey ?? "").trim() !== "" && options.engineLabelKey !== ENGINE_TYPE_LABEL);
    this.defaultEngine = (options.defaultEngine ?? "").trim() || DEFAULT_ENGINE;
    this.engineLabelKey = (options.engineLabelKey ?? "").trim() || ENGINE_TYPE_LABEL;
    const configs = options.engineConfigs ?? [];
    configs.forEach((config, index) => {
      const mapping = compileEngine(config, `engineConfigs[${index}]`);
      if (this.#mappings.has(mapping.name)) {
        throw new ConfigError(`duplicate engine config "${mapping.name}"`, undefined, `engineConfigs[${index}].name`);
      }
      this.#mappings.set(mapping.name, mapping);
    });
    for (const config of DEFAULT_ENGINE_CONFIGS) {
      if (!this.#mappings.has(config.name)) this.#mappings.set(config.name, compileEngine(config));
    }
    if (!this.#mappings.has(this.defaultEngine)) {
      throw new ConfigError(
        `defaultEngine "${this.defaultEngine}" not found in engineConfigs (known: ${this.names().join(", ")})`,
        undefined,
        "defaultEngine",
      );
    }
  }

  names(): string[] {
    return [...this.#mappings.keys()];
  }

  /** The mapping for an engine name; `default` names the default engine as in GIE. */
  get(name: string): EngineMapping | undefined {
    return this.#mappings.get(name === RESERVED_ENGINE_NAME ? this.defaultEngine : name);
  }

  engineFor(labels: Readonly<Record<string, string>> | undefined): string {
    return engineFor(labels, { labelKey: this.engineLabelKey, defaultEngine: this.defaultEngine });
  }

  /**
   * The mapping for an endpoint: its `engine` field when set (the datastore's choice), else from its labels.
   * Undefined for an engine nobody configured; like GIE, such an endpoint gets no metrics rather than wrong ones.
   */
  resolve(endpoint: {
    readonly engine?: string;
    readonly labels?: Readonly<Record<string, string>>;
  }): EngineMapping | undefined {
    // A pod carrying the configured engine label decides; otherwise the endpoint's own engine name, unless the
    // config chose a different label key or default, which then applies to every unlabelled pod.
    if (endpoint.labels?.[this.engineLabelKey]) return this.get(this.engineFor(endpoint.labels));
    if (this.#customDefault || endpoint.engine === undefined || endpoint.engine === "")
      return this.get(this.defaultEngine);
    return this.get(endpoint.engine);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Extraction

/** A scrape body that does not carry a required signal, or carries it in an unusable form. */
export class MetricsExtractionError extends Error {
  override readonly name = "MetricsExtractionError";
}

/**
 * A body whose numbers cannot be true (docs/security.md, "Model-server metrics"): a negative queue or KV usage,
 * more series for one signal than any server exposes, or the same series twice. Believing it would make a broken
 * or hostile pod look idle (kv -0.5 attracted 12 of 12 requests) or absurdly busy (10k series summed to a queue of
 * 49,995,000); the scrape is refused instead, so the endpoint counts as unknown.
 */
export class ImplausibleMetricsError extends MetricsExtractionError {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(message);
  }
}

/** Default of `--scrape-max-series`: series of one signal in one body (one per engine / data-parallel rank). */
export const DEFAULT_MAX_SERIES_PER_SIGNAL = 256;

const EMPTY_SET: ReadonlySet<string> = new Set<string>();

function selectSamples(families: Map<string, Sample[]>, spec: MetricSpec): Sample[] {
  const all = families.get(spec.name);
  if (all === undefined) return [];
  if (spec.matchers.length === 0) return all;
  return all.filter((s) => matches(spec, s));
}

function describe(specs: readonly MetricSpec[]): string {
  const [first, ...rest] = specs;
  if (first === undefined) return "";
  return rest.length === 0
    ? formatMetricSpec(first)
    : `${formatMetricSpec(first)} (or ${rest.map(formatMetricSpec).join(", ")})`;
}

/**
 * Sum (or max) of the finite values of the first spec with any matching series, or `undefined` when no spec has a
 * series at all: an absent family means "no load reported yet" (a fresh data-parallel vLLM exports its gauges only
 * after its first request, docs/design/model-servers.md §3.2), not a failure. Throws when series exist but every value
 * is NaN/±Inf: reading that as 0 would make a broken server look idle.
 */
function signal(
  families: Map<string, Sample[]>,
  specs: readonly MetricSpec[],
  combine: "sum" | "max",
  where: string,
  maxSeries: number,
): number | undefined {
  let sawSeries = false;
  for (const spec of specs) {
    const samples = selectSamples(families, spec);
    if (samples.length === 0) continue;
    sawSeries = true;
    checkPlausible(spec, samples, where, maxSeries);
    let acc = combine === "sum" ? 0 : Number.NEGATIVE_INFINITY;
    let finite = 0;
    for (const s of samples) {
      if (!Number.isFinite(s.value)) continue;
      finite++;
      acc = combine === "sum" ? acc + s.value : Math.max(acc, s.value);
    }
    if (finite > 0) return acc;
  }
  if (sawSeries) throw new MetricsExtractionError(`${describe(specs)} has no finite value in ${where}`);
  return undefined;
}

/** True when the text declares or carries any family this mapping reads: it is this engine's exposition. */
function mentionsAny(mapping: EngineMapping, families: Map<string, Sample[]>, declared: ReadonlySet<string>): boolean {
  return families.size > 0 || mapping.wanted.size === 0 || declared.size > 0;
}

/**
 * The current `lora_requests_info` series. Its value is the wall-clock second the label set was last current, and
 * the newest wins (docs/design/model-servers.md §3.3), with two corrections for what real servers emit:
 * - a data-parallel vLLM may sum the gauge over its k engines, so a stale label set present on two engines reads
 *   ≈ 2 × now and would beat the current one present on one: each value is divided by k = round(value / now);
 * - llm-d-inference-sim stamps whole seconds, so two label sets tie; a tie goes to the one naming running, then
 *   waiting adapters (an adapter that finished within that second is still warm), then to the later series.
 */
function currentLoraSeries(samples: readonly Sample[], nowSec: number): Sample | undefined {
  let best: Sample | undefined;
  let bestTime = Number.NEGATIVE_INFINITY;
  let bestRank = -1;
  for (const s of samples) {
    if (!Number.isFinite(s.value) || s.value <= 0) continue;
    const engines = nowSec > 0 ? Math.max(1, Math.round(s.value / nowSec)) : 1;
    const time = s.value / engines;
    const rank =
      (s.labels["running_lora_adapters"] ?? "") !== "" ? 2 : (s.labels["waiting_lora_adapters"] ?? "") !== "" ? 1 : 0;
    if (time > bestTime || (time === bestTime && rank >= bestRank)) {
      best = s;
      bestTime = time;
      bestRank = rank;
    }
  }
  return best;
}

function checkPlausible(spec: MetricSpec, samples: readonly Sample[], where: string, maxSeries: number): void {
  const field = formatMetricSpec(spec);
  if (samples.length > maxSeries)
    throw new ImplausibleMetricsError(
      field,
      `${field}: ${samples.length} series in ${where}, more than --scrape-max-series (${maxSeries}); refusing the scrape`,
    );
  for (const s of samples)
    if (s.value < 0)
      throw new ImplausibleMetricsError(field, `${field}: negative value ${s.value} in ${where}; refusing the scrape`);
  if (samples.length < 2) return;
  // Prometheus itself rejects a scrape that repeats a series; summing the copies would double the load.
  const seen = new Set<string>();
  for (const s of samples) {
    const key = Object.keys(s.labels)
      .sort()
      .map((k) => `${k}\u0000${s.labels[k]}`)
      .join("\u0001");
    if (seen.has(key))
      throw new ImplausibleMetricsError(
        field,
        `${field}: the same series appears twice in ${where}; refusing the scrape`,
      );
    seen.add(key);
  }
}

function parseCount(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const t = text.trim();
  if (!/^\d+$/.test(t)) return undefined;
  const n = Number(t);
  return Number.isSafeInteger(n) ? n : undefined;
}

function adapterSet(list: string | undefined): ReadonlySet<string> {
  if (list === undefined || list === "") return EMPTY_SET;
  let set: Set<string> | undefined;
  for (const part of list.split(",")) {
    const name = part.trim();
    if (name === "") continue;
    set ??= new Set();
    set.add(name);
  }
  return set ?? EMPTY_SET;
}

/**
 * The largest non-negative value over the series. Block counts are a max, not a sum: a data-parallel vLLM already
 * reports the server's total on every engine's cache_config_info, and SGLang repeats num_pages on every TP rank
 * (docs/design/model-servers.md §3.2, §3.4).
 */
function cacheFromGauges(samples: readonly Sample[]): number {
  let acc = 0;
  for (const s of samples) {
    if (!Number.isFinite(s.value) || s.value < 0) continue;
    acc = Math.max(acc, Math.trunc(s.value));
  }
  return acc;
}

/**
 * Turns one `/metrics` body into a fresh EndpointMetrics stamped with `updateTime`. A queue/running/KV family that
 * is absent reads as 0 and is named in `unreported` (the endpoint stays a candidate, scored from the EPP's own
 * accounting); a body that carries none of the engine's families, or a family whose every value is non-finite,
 * throws MetricsExtractionError. `where` names the source in messages (the scrape path); `nowSec` is the wall clock
 * the LoRA timestamps are compared with.
 */
export function extractMetrics(
  mapping: EngineMapping,
  text: string,
  updateTime: number,
  where = "/metrics",
  maxSeries = DEFAULT_MAX_SERIES_PER_SIGNAL,
  nowSec = Date.now() / 1000,
): EndpointMetrics {
  // One pass over the body: the samples of the wanted names and which of them are declared (`# TYPE`).
  const declared = new Set<string>();
  const families = parseFamilies(text, mapping.wanted, declared);
  if (!mentionsAny(mapping, families, declared)) {
    throw new MetricsExtractionError(
      `no ${mapping.name} metric family (${[...mapping.wanted.names].join(", ")}) in ${where}`,
    );
  }
  const unreported: string[] = [];
  const read = (specs: readonly MetricSpec[], combine: "sum" | "max"): number => {
    if (specs.length === 0) return 0;
    const v = signal(families, specs, combine, where, maxSeries);
    if (v !== undefined) return v;
    unreported.push(formatMetricSpec(specs[0]!));
    return 0;
  };
  const waiting = read(mapping.queued === undefined ? [] : [mapping.queued], "sum");
  const running = read(mapping.running === undefined ? [] : [mapping.running], "sum");
  const kv = read(mapping.kvUsage, "max");

  let activeModels = EMPTY_SET;
  let waitingModels = EMPTY_SET;
  let maxActiveModels = 0;
  let lora: "reported" | "pending" | undefined;
  if (mapping.lora !== undefined) {
    const best = currentLoraSeries(selectSamples(families, mapping.lora), nowSec);
    if (best === undefined) {
      if (declared.has(mapping.lora.name)) lora = "pending";
    } else {
      lora = "reported";
      activeModels = adapterSet(best.labels["running_lora_adapters"]);
      waitingModels = adapterSet(best.labels["waiting_lora_adapters"]);
      maxActiveModels = parseCount(best.labels["max_lora"]) ?? 0;
    }
  }

  let cacheBlockSize = 0;
  let cacheNumBlocks = 0;
  if (mapping.cacheInfo !== undefined) {
    for (const s of selectSamples(families, mapping.cacheInfo)) {
      const size = parseCount(s.labels[mapping.cacheBlockSizeLabel]);
      if (size !== undefined) cacheBlockSize = Math.max(cacheBlockSize, size);
      const blocks = parseCount(s.labels[mapping.cacheNumBlocksLabel]);
      if (blocks !== undefined) cacheNumBlocks = Math.max(cacheNumBlocks, blocks);
    }
  }
  if (mapping.cacheBlockSize !== undefined) {
    const v = cacheFromGauges(selectSamples(families, mapping.cacheBlockSize));
    if (v > 0) cacheBlockSize = v;
  }
  if (mapping.cacheNumBlocks !== undefined) {
    const v = cacheFromGauges(selectSamples(families, mapping.cacheNumBlocks));
    if (v > 0) cacheNumBlocks = v;
  }

  // The served (base) model names, from the `model_name` label vLLM and SGLang put on every engine series.
  let servedModels = EMPTY_SET;
  if (mapping.running !== undefined) {
    for (const s of selectSamples(families, mapping.running)) {
      const name = s.labels["model_name"];
      if (name === undefined || name === "") continue;
      if (servedModels === EMPTY_SET) servedModels = new Set<string>();
      (servedModels as Set<string>).add(name);
    }
  }

  return {
    waitingQueueSize: Math.max(0, waiting),
    runningRequestsSize: Math.max(0, running),
    kvCacheUsagePercent: Math.min(1, Math.max(0, kv)),
    activeModels,
    waitingModels,
    maxActiveModels,
    servedModels,
    cacheBlockSize,
    cacheNumBlocks,
    updateTime,
    // Always present, so every metrics object has one shape for the scorers that read it per request.
    lora,
    unreported: unreported.length === 0 ? undefined : unreported.join(", "),
  };
}
