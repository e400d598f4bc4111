/**
 * Simulator options: one defaults table shared by the programmatic API and the CLI flags, and a validator that
 * turns every bad value into a ConfigError naming the option and its flag (undici-style: fail at construction,
 * never mid-request). Durations are milliseconds.
 */
import { ConfigError } from "../common/errors.js";

export const FAILURE_TYPES = [
  "rate_limit",
  "invalid_api_key",
  "context_length",
  "server_error",
  "invalid_request",
  "model_not_found",
] as const;
export type FailureType = (typeof FAILURE_TYPES)[number];

export const KV_CACHE_METRIC_NAMES = ["kv_cache_usage_perc", "gpu_cache_usage_perc"] as const;
export type KvCacheMetricName = (typeof KV_CACHE_METRIC_NAMES)[number];

export type SimMode = "random" | "echo";

/** vLLM's `--lora-modules` JSON form (llm-d-inference-sim accepts the same). */
export interface LoraModule {
  readonly name: string;
  readonly path?: string;
  readonly base_model_name?: string;
}

export interface SimulatorOptions {
  /** Base model name (required). */
  model: string;
  /** Names the base model answers to; the first is the `model_name` metric label. Default: [model]. */
  servedModelNames?: readonly string[];
  /** Listen address. Default 127.0.0.1. */
  host?: string;
  /** Listen port; 0 picks a free one. Default 8000. */
  port?: number;
  /** Adapters: LoraModule objects, names, or the CLI text (space-separated JSON objects or a comma list). */
  loraModules?: string | readonly (string | LoraModule)[];
  /** GPU adapter slots. Default 1. */
  maxLoras?: number;
  /** Adapters kept in host memory (load 10× faster); 0 = same as maxLoras. Default 0. */
  maxCpuLoras?: number;
  /** Cold adapter load time, ms. Default 50. */
  loraLoadTimeMs?: number;
  /** Context window (prompt + output tokens). Default 1024. */
  maxModelLen?: number;
  /** Continuous-batching limit. Default 5. */
  maxNumSeqs?: number;
  /** Waiting requests beyond this get HTTP 429. Default 1000. */
  maxWaitingQueueLength?: number;
  /** `random` words or `echo` of the last user message. Default random. */
  mode?: SimMode;
  /** PRNG seed; runs with the same seed and request order produce the same text. Default: time-based. */
  seed?: number;
  /** Constant part of TTFT, ms. Default 0. */
  timeToFirstTokenMs?: number;
  /** Base decode step time at batch size 1, ms. Default 10. */
  interTokenLatencyMs?: number;
  /** Fixed prefill cost per scheduled request, ms. Default 5. */
  prefillOverheadMs?: number;
  /** Prefill cost per uncached prompt token, ms. Default 0.1. */
  prefillTimePerTokenMs?: number;
  /** Latency multiplier reached when maxNumSeqs sequences run (≥ 1). Default 2. */
  timeFactorUnderLoad?: number;
  /** KV blocks. Default 1024. */
  kvCacheSize?: number;
  /** Tokens per KV block. Default 16. */
  blockSize?: number;
  /** Automatic prefix caching. Default true. */
  enablePrefixCaching?: boolean;
  /** Percentage 0..100 of requests answered with an injected error. Default 0. */
  failureInjectionRate?: number;
  /** Error kinds to inject; empty = all. Default all. */
  failureTypes?: readonly FailureType[];
  /** Delay before /metrics answers, ms. Default 0. */
  metricsDelayMs?: number;
  /** Percentage 0..100 of requests accepted and never answered. Default 0. */
  hangRate?: number;
  /** Name of the KV usage gauge. Default kv_cache_usage_perc. */
  kvCacheMetricName?: KvCacheMetricName;
  /**
   * Export a `lora_requests_info` sample from the start, as older vLLM did. Default false: like vLLM 0.32 the
   * family is declared but has no sample until the first engine step (docs/design/model-servers.md §3.3).
   */
  loraInfoAtStart?: boolean;
  /**
   * When a request shows in num_requests_running/waiting: "first-step" (default, like vLLM 0.32: a running request
   * after its first engine step, i.e. its first token; a waiting one after one step), or a fixed delay in ms after
   * arrival (0 = at once, the old simulator behaviour). docs/design/model-servers.md §8.
   */
  gaugeLag?: "first-step" | number;
  /** vLLM `--data-parallel-size`: per-engine series (`engine="0"…`), requests attributed round-robin. Default 1. */
  dataParallelSize?: number;
  /**
   * With data parallelism, an engine exports its load gauges only after its first request (a shape a fresh
   * data-parallel vLLM has been seen to serve, docs/design/model-servers.md §3.1). Default true; false exports them
   * at 0 from the start.
   */
  dpGaugesAfterFirstRequest?: boolean;
  /** Multiplier on every model latency (TTFT, prefill, ITL, LoRA load): 2 = a pod twice as slow. Default 1. */
  speed?: number;
  /**
   * Streamed tokens per socket write: events are still one per token, but k of them leave in one write (the first
   * token always at once, the rest when k are pending or the stream ends). 1 = a write per token, like vLLM. A
   * time-scaled benchmark raises it so proxies relay fewer, larger chunks (bench/README.md).
   */
  streamBatchTokens?: number;
  /** Values of the x-inference-pod / x-inference-namespace response headers; omitted when undefined. */
  podName?: string;
  podNamespace?: string;
  /** Largest accepted request body. Default 16 MiB. */
  maxBodyBytes?: number;
}

export const SIM_DEFAULTS = {
  host: "127.0.0.1",
  port: 8000,
  maxLoras: 1,
  maxCpuLoras: 0,
  loraLoadTimeMs: 50,
  maxModelLen: 1024,
  maxNumSeqs: 5,
  maxWaitingQueueLength: 1000,
  mode: "random" as SimMode,
  timeToFirstTokenMs: 0,
  interTokenLatencyMs: 10,
  prefillOverheadMs: 5,
  prefillTimePerTokenMs: 0.1,
  timeFactorUnderLoad: 2,
  kvCacheSize: 1024,
  blockSize: 16,
  enablePrefixCaching: true,
  failureInjectionRate: 0,
  metricsDelayMs: 0,
  hangRate: 0,
  kvCacheMetricName: "kv_cache_usage_perc" as KvCacheMetricName,
  loraInfoAtStart: false,
  gaugeLag: "first-step" as "first-step" | number,
  dataParallelSize: 1,
  dpGaugesAfterFirstRequest: true,
  speed: 1,
  streamBatchTokens: 1,
  maxBodyBytes: 16 * 1024 * 1024,
} as const;

export interface ResolvedSimOptions {
  readonly model: string;
  readonly servedModelNames: readonly string[];
  readonly host: string;
  readonly port: number;
  readonly loraModules: readonly LoraModule[];
  readonly maxLoras: number;
  readonly maxCpuLoras: number;
  readonly loraLoadTimeMs: number;
  readonly maxModelLen: number;
  readonly maxNumSeqs: number;
  readonly maxWaitingQueueLength: number;
  readonly mode: SimMode;
  readonly seed: number;
  readonly timeToFirstTokenMs: number;
  readonly interTokenLatencyMs: number;
  readonly prefillOverheadMs: number;
  readonly prefillTimePerTokenMs: number;
  readonly timeFactorUnderLoad: number;
  readonly kvCacheSize: number;
  readonly blockSize: number;
  readonly enablePrefixCaching: boolean;
  readonly failureInjectionRate: number;
  readonly failureTypes: readonly FailureType[];
  readonly metricsDelayMs: number;
  readonly hangRate: number;
  readonly kvCacheMetricName: KvCacheMetricName;
  readonly loraInfoAtStart: boolean;
  readonly gaugeLag: "first-step" | number;
  readonly dataParallelSize: number;
  readonly dpGaugesAfterFirstRequest: boolean;
  readonly speed: number;
  readonly streamBatchTokens: number;
  readonly podName: string | undefined;
  readonly podNamespace: string | undefined;
  readonly maxBodyBytes: number;
}

/** CLI spelling of each option, so an error from the API and from the CLI name the same knob. */
const FLAG_OF: Record<string, string> = {
  model: "--model",
  servedModelNames: "--served-model-name",
  host: "--host",
  port: "--port",
  loraModules: "--lora-modules",
  maxLoras: "--max-loras",
  maxCpuLoras: "--max-cpu-loras",
  loraLoadTimeMs: "--lora-load-time",
  maxModelLen: "--max-model-len",
  maxNumSeqs: "--max-num-seqs",
  maxWaitingQueueLength: "--max-waiting-queue-length",
  mode: "--mode",
  seed: "--seed",
  timeToFirstTokenMs: "--time-to-first-token",
  interTokenLatencyMs: "--inter-token-latency",
  prefillOverheadMs: "--prefill-overhead",
  prefillTimePerTokenMs: "--prefill-time-per-token",
  timeFactorUnderLoad: "--time-factor-under-load",
  kvCacheSize: "--kv-cache-size",
  blockSize: "--block-size",
  enablePrefixCaching: "--enable-kvcache",
  failureInjectionRate: "--failure-injection-rate",
  failureTypes: "--failure-types",
  metricsDelayMs: "--metrics-delay",
  hangRate: "--hang-rate",
  kvCacheMetricName: "--kv-cache-metric-name",
  loraInfoAtStart: "--lora-info-at-start",
  gaugeLag: "--gauge-lag",
  dataParallelSize: "--data-parallel-size",
  dpGaugesAfterFirstRequest: "--dp-gauges-after-first-request",
  speed: "--speed",
  streamBatchTokens: "--stream-batch-tokens",
  maxBodyBytes: "maxBodyBytes",
};

function fail(option: string, message: string): never {
  const flag = FLAG_OF[option];
  throw new ConfigError(message, undefined, flag && flag !== option ? `${option} (${flag})` : option);
}

function int(option: string, value: unknown, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isInteger(value)) fail(option, `must be an integer, got ${String(value)}`);
  if (value < min || value > max) fail(option, `must be between ${min} and ${max}, got ${value}`);
  return value;
}

function num(option: string, value: unknown, fallback: number, min: number, max = Number.POSITIVE_INFINITY): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isFinite(value)) fail(option, `must be a finite number, got ${value}`);
  if (value < min || value > max) fail(option, `must be between ${min} and ${max}, got ${value}`);
  return value;
}

function positive(option: string, value: unknown, fallback: number): number {
  const v = num(option, value, fallback, 0);
  if (v === 0) fail(option, "must be > 0");
  return v;
}

function nonEmptyString(option: string, value: unknown): string {
  if (typeof value !== "string" || value.trim() === "") fail(option, "must be a non-empty string");
  return value.trim();
}

/**
 * Parses `--lora-modules` text. Accepts llm-d/vLLM's space-separated JSON objects
 * (`{"name":"a","path":"/p","base_model_name":"m"} {"name":"b"}`), vLLM's `name=path` pairs, and a plain
 * comma or space separated list of names.
 */
export function parseLoraModules(text: string): LoraModule[] {
  const out: LoraModule[] = [];
  let i = 0;
  while (i < text.length) {
    const ch = text[i]!;
    if (ch === " " || ch === "," || ch === "\t" || ch === "\n") {
      i++;
      continue;
    }
    if (ch === "{") {
      const end = matchBrace(text, i);
      if (end === -1) fail("loraModules", `unterminated JSON object at offset ${i}`);
      let parsed: unknown;
      try {
        parsed = JSON.parse(text.slice(i, end + 1));
      } catch (err) {
        fail("loraModules", `invalid JSON at offset ${i}: ${(err as Error).message}`);
      }
      out.push(loraFromObject(parsed));
      i = end + 1;
      continue;
    }
    let j = i;
    while (j < text.length && !" ,\t\n".includes(text[j]!)) j++;
    const token = text.slice(i, j);
    const eq = token.indexOf("=");
    out.push(eq === -1 ? { name: token } : { name: token.slice(0, eq), path: token.slice(eq + 1) });
    i = j;
  }
  return out;
}

function matchBrace(text: string, start: number): number {
  let depth = 0;
  let inString = false;
  for (let i = start; i < text.length; i++) {
    const ch = text[i];
    if (inString) {
      if (ch === "\\") i++;
      else if (ch === '"') inString = false;
    } else if (ch === '"') inString = true;
    else if (ch === "{") depth++;
    else if (ch === "}" && --depth === 0) return i;
  }
  return -1;
}

function loraFromObject(value: unknown): LoraModule {
  if (typeof value !== "object" || value === null || Array.isArray(value))
    fail("loraModules", "each JSON entry must be an object with a name");
  const o = value as Record<string, unknown>;
  const name = o.name;
  if (typeof name !== "string" || name.trim() === "") fail("loraModules", 'each entry needs a non-empty "name"');
  const mod: { name: string; path?: string; base_model_name?: string } = { name: name.trim() };
  if (o.path !== undefined) {
    if (typeof o.path !== "string") fail("loraModules", `"path" of ${mod.name} must be a string`);
    mod.path = o.path;
  }
  if (o.base_model_name !== undefined) {
    if (typeof o.base_model_name !== "string") fail("loraModules", `"base_model_name" of ${mod.name} must be a string`);
    mod.base_model_name = o.base_model_name;
  }
  return mod;
}

function resolveLoras(value: SimulatorOptions["loraModules"]): LoraModule[] {
  if (value === undefined) return [];
  if (typeof value === "string") return parseLoraModules(value);
  if (!Array.isArray(value)) fail("loraModules", "must be a string or an array");
  const out: LoraModule[] = [];
  for (const entry of value as readonly unknown[]) {
    if (typeof entry === "string") out.push(...parseLoraModules(entry));
    else out.push(loraFromObject(entry));
  }
  return out;
}

/** Validates options, fills defaults and freezes the result. */
export function resolveSimOptions(options: SimulatorOptions): ResolvedSimOptions {
  if (typeof options !== "object" || options === null) throw new ConfigError("options must be an object");
  const d = SIM_DEFAULTS;
  const model = nonEmptyString("model", options.model);
  const served = (options.servedModelNames ?? [model]).map((n) => nonEmptyString("servedModelNames", n));
  if (served.length === 0) fail("servedModelNames", "must name at least one model");

  const loraModules = resolveLoras(options.loraModules);
  const names = new Set(served);
  for (const m of loraModules) {
    if (names.has(m.name)) fail("loraModules", `duplicate model name "${m.name}"`);
    names.add(m.name);
  }

  const mode = options.mode ?? d.mode;
  if (mode !== "random" && mode !== "echo") fail("mode", `must be "random" or "echo", got "${String(mode)}"`);
  const kvName = options.kvCacheMetricName ?? d.kvCacheMetricName;
  if (!KV_CACHE_METRIC_NAMES.includes(kvName))
    fail("kvCacheMetricName", `must be one of ${KV_CACHE_METRIC_NAMES.join(", ")}, got "${String(kvName)}"`);
  const failureTypes = options.failureTypes === undefined ? [...FAILURE_TYPES] : [...options.failureTypes];
  for (const t of failureTypes)
    if (!FAILURE_TYPES.includes(t)) fail("failureTypes", `unknown type "${t}" (one of ${FAILURE_TYPES.join(", ")})`);

  const maxLoras = int("maxLoras", options.maxLoras, d.maxLoras, 1, 1024);
  const maxCpuLoras = int("maxCpuLoras", options.maxCpuLoras, d.maxCpuLoras, 0, 1 << 20);
  if (maxCpuLoras !== 0 && maxCpuLoras < maxLoras) fail("maxCpuLoras", `must be 0 or >= maxLoras (${maxLoras})`);

  const seed = options.seed ?? (Date.now() ^ (process.pid << 16)) >>> 0;
  if (!Number.isSafeInteger(seed)) fail("seed", `must be an integer, got ${seed}`);

  const host = options.host ?? d.host;
  if (typeof host !== "string" || host === "") fail("host", "must be a non-empty address");

  return Object.freeze({
    model,
    servedModelNames: Object.freeze(served),
    host,
    port: int("port", options.port, d.port, 0, 65535),
    loraModules: Object.freeze(loraModules),
    maxLoras,
    maxCpuLoras: maxCpuLoras === 0 ? maxLoras : maxCpuLoras,
    loraLoadTimeMs: num("loraLoadTimeMs", options.loraLoadTimeMs, d.loraLoadTimeMs, 0),
    maxModelLen: int("maxModelLen", options.maxModelLen, d.maxModelLen, 2),
    maxNumSeqs: int("maxNumSeqs", options.maxNumSeqs, d.maxNumSeqs, 1, 1 << 16),
    maxWaitingQueueLength: int("maxWaitingQueueLength", options.maxWaitingQueueLength, d.maxWaitingQueueLength, 1),
    mode,
    seed,
    timeToFirstTokenMs: num("timeToFirstTokenMs", options.timeToFirstTokenMs, d.timeToFirstTokenMs, 0),
    interTokenLatencyMs: num("interTokenLatencyMs", options.interTokenLatencyMs, d.interTokenLatencyMs, 0),
    prefillOverheadMs: num("prefillOverheadMs", options.prefillOverheadMs, d.prefillOverheadMs, 0),
    prefillTimePerTokenMs: num("prefillTimePerTokenMs", options.prefillTimePerTokenMs, d.prefillTimePerTokenMs, 0),
    timeFactorUnderLoad: num("timeFactorUnderLoad", options.timeFactorUnderLoad, d.timeFactorUnderLoad, 1),
    kvCacheSize: int("kvCacheSize", options.kvCacheSize, d.kvCacheSize, 1, 1 << 24),
    blockSize: int("blockSize", options.blockSize, d.blockSize, 1, 1024),
    enablePrefixCaching: options.enablePrefixCaching ?? d.enablePrefixCaching,
    failureInjectionRate: num("failureInjectionRate", options.failureInjectionRate, d.failureInjectionRate, 0, 100),
    failureTypes: Object.freeze(failureTypes),
    metricsDelayMs: num("metricsDelayMs", options.metricsDelayMs, d.metricsDelayMs, 0),
    hangRate: num("hangRate", options.hangRate, d.hangRate, 0, 100),
    kvCacheMetricName: kvName,
    loraInfoAtStart: options.loraInfoAtStart ?? d.loraInfoAtStart,
    gaugeLag:
      options.gaugeLag === undefined || options.gaugeLag === "first-step"
        ? d.gaugeLag
        : num("gaugeLag", options.gaugeLag, 0, 0),
    dataParallelSize: int("dataParallelSize", options.dataParallelSize, d.dataParallelSize, 1, 64),
    dpGaugesAfterFirstRequest: options.dpGaugesAfterFirstRequest ?? d.dpGaugesAfterFirstRequest,
    speed: positive("speed", options.speed, d.speed),
    streamBatchTokens: int("streamBatchTokens", options.streamBatchTokens, d.streamBatchTokens, 1, 4096),
    podName: options.podName || undefined,
    podNamespace: options.podNamespace || undefined,
    maxBodyBytes: int("maxBodyBytes", options.maxBodyBytes, d.maxBodyBytes, 1),
  });
}
