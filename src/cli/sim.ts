/**
 * `switchyard sim`: a vLLM-compatible model-server simulator (see src/sim). Flag names follow
 * llm-d-inference-sim where they overlap, so scripts written for it work unchanged, including its multi-value
 * forms `--lora-modules '{…}' '{…}'` and `--served-model-name a b`, and `--config file.yaml` with flag names as keys.
 */
import { readFileSync } from "node:fs";
import type { LevelWithSilent } from "pino";
import { parse as parseYaml } from "yaml";
import { ConfigError } from "../common/errors.js";
import { checks, type FlagSpecs, formatHelp, parseFlags } from "../common/flags.js";
import { createLogger } from "../observability/logger.js";
import {
  SIM_DEFAULTS as D,
  FAILURE_TYPES,
  type FailureType,
  KV_CACHE_METRIC_NAMES,
  type KvCacheMetricName,
  type SimMode,
  type SimulatorOptions,
  startSimulator,
} from "../sim/index.js";

const oneOf =
  (allowed: readonly string[]) =>
  (v: string): string | undefined =>
    allowed.includes(v) ? undefined : `must be one of ${allowed.join(", ")}`;
const percent = (v: number): string | undefined => (v >= 0 && v <= 100 ? undefined : "must be between 0 and 100");

export const SIM_FLAGS = {
  config: { kind: "string", default: "", help: "YAML file whose keys are these flag names; flags override it" },
  model: { kind: "string", default: "", help: "base model name (required; falls back to $SIM_MODEL)" },
  "served-model-name": {
    kind: "string",
    default: "",
    help: "names the base model answers to, space or comma separated; first is the metrics model_name (empty = --model)",
  },
  host: { kind: "string", default: D.host, help: "address to listen on" },
  port: { kind: "int", default: D.port, help: "port to listen on (0 = any free port)", check: checks.port },
  "lora-modules": {
    kind: "string",
    default: "",
    help: 'LoRA adapters: space-separated JSON {"name","path","base_model_name"} objects, or a comma list of names',
  },
  "max-loras": {
    kind: "int",
    default: D.maxLoras,
    help: "adapters resident on the GPU at once",
    check: checks.positive,
  },
  "max-cpu-loras": {
    kind: "int",
    default: D.maxCpuLoras,
    help: "adapters kept in host memory, which load 10x faster (0 = same as --max-loras)",
    check: checks.nonNegative,
  },
  "lora-load-time": { kind: "duration", default: D.loraLoadTimeMs, help: "time to load a cold adapter into a slot" },
  "max-model-len": { kind: "int", default: D.maxModelLen, help: "context window, prompt + output tokens" },
  "max-num-seqs": {
    kind: "int",
    default: D.maxNumSeqs,
    help: "requests running at once (continuous batch size)",
    check: checks.positive,
  },
  "max-waiting-queue-length": {
    kind: "int",
    default: D.maxWaitingQueueLength,
    help: "waiting requests beyond this are refused with HTTP 429",
    check: checks.positive,
  },
  mode: {
    kind: "string",
    default: D.mode,
    help: "response text: random words, or echo the last user message",
    check: oneOf(["random", "echo"]),
  },
  seed: { kind: "int", default: -1, help: "PRNG seed for reproducible text and fault draws (-1 = from the clock)" },
  "time-to-first-token": { kind: "duration", default: D.timeToFirstTokenMs, help: "constant part of the prefill time" },
  "inter-token-latency": {
    kind: "duration",
    default: D.interTokenLatencyMs,
    help: "decode step time with one running request",
  },
  "prefill-overhead": { kind: "duration", default: D.prefillOverheadMs, help: "fixed prefill cost per request" },
  "prefill-time-per-token": {
    kind: "duration",
    default: D.prefillTimePerTokenMs,
    help: "prefill cost per uncached prompt token (prefix-cache hits skip it)",
  },
  "time-factor-under-load": {
    kind: "float",
    default: D.timeFactorUnderLoad,
    help: "latency multiplier reached when --max-num-seqs requests run (>= 1; scales linearly with the batch)",
    check: (v: number) => (v >= 1 ? undefined : "must be >= 1"),
  },
  "kv-cache-size": { kind: "int", default: D.kvCacheSize, help: "KV cache blocks", check: checks.positive },
  "block-size": { kind: "int", default: D.blockSize, help: "tokens per KV block", check: checks.positive },
  "enable-kvcache": { kind: "bool", default: D.enablePrefixCaching, help: "prefix caching of prompt blocks" },
  "enable-prefix-caching": { kind: "bool", default: D.enablePrefixCaching, help: "alias of --enable-kvcache" },
  "failure-injection-rate": {
    kind: "float",
    default: D.failureInjectionRate,
    help: "percentage (0..100) of requests answered with an injected error",
    check: percent,
  },
  "failure-types": {
    kind: "list",
    default: [],
    help: `comma list of injected errors, from ${FAILURE_TYPES.join(", ")} (empty = all)`,
    check: (v: readonly string[]) => v.map(oneOf(FAILURE_TYPES)).find((m) => m !== undefined),
  },
  "metrics-delay": {
    kind: "duration",
    default: D.metricsDelayMs,
    help: "delay before /metrics answers (slow scrapes)",
  },
  "hang-rate": {
    kind: "float",
    default: D.hangRate,
    help: "percentage (0..100) of requests accepted and never answered (timeout tests)",
    check: percent,
  },
  "kv-cache-metric-name": {
    kind: "string",
    default: D.kvCacheMetricName,
    help: "KV usage gauge name: kv_cache_usage_perc (vLLM >= 0.9) or gpu_cache_usage_perc (older vLLM)",
    check: oneOf(KV_CACHE_METRIC_NAMES),
  },
  "gauge-lag": {
    kind: "string",
    default: "first-step",
    help: "when a request shows in the running/waiting gauges: first-step (like vLLM 0.32) or a delay in ms (0 = at once)",
    check: (v: string) => (v === "first-step" || /^\d+(\.\d+)?$/.test(v) ? undefined : 'must be "first-step" or ms'),
  },
  "data-parallel-size": {
    kind: "int",
    default: 1,
    help: 'vLLM data parallelism: per-engine series (engine="0"…), requests attributed round-robin',
    check: (v: number) => (v >= 1 && v <= 64 ? undefined : "must be 1..64"),
  },
  "dp-gauges-after-first-request": {
    kind: "bool",
    default: true,
    help: "with data parallelism, an engine exports its load gauges only after its first request",
  },
  "lora-info-at-start": {
    kind: "bool",
    default: D.loraInfoAtStart,
    help: "export vllm:lora_requests_info before the first request, as older vLLM did (vLLM 0.32 does not)",
  },
  speed: {
    kind: "float",
    default: D.speed,
    help: "multiplier on every model latency: 2 = a pod twice as slow, 0.5 = twice as fast",
    check: checks.positive,
  },
  "stream-batch-tokens": {
    kind: "int",
    default: D.streamBatchTokens,
    help: "streamed tokens per socket write (one SSE event each; the first token is never held back)",
    check: checks.positive,
  },
  "pod-name": {
    kind: "string",
    default: "",
    help: "x-inference-pod header value (empty = $POD_NAME; unset = no header)",
  },
  "pod-namespace": { kind: "string", default: "", help: "x-inference-namespace header value (empty = $POD_NAMESPACE)" },
  "log-level": {
    kind: "string",
    default: "info",
    help: "log level",
    check: oneOf(["trace", "debug", "info", "warn", "error", "fatal", "silent"]),
  },
} as const satisfies FlagSpecs;

const SUMMARY =
  "A vLLM-compatible model-server simulator: continuous batching, paged KV cache with prefix caching, LoRA slots,\n" +
  "vLLM metrics on /metrics, OpenAI /v1/completions and /v1/chat/completions (streaming and not), fault injection.";

/** Flags that, like llm-d-inference-sim's, take several space-separated values. */
const MULTI_VALUE = new Set(["lora-modules", "served-model-name"]);

/** Joins `--lora-modules a b c` into one value so the shared single-value parser can read it. */
export function joinMultiValueFlags(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    out.push(arg);
    const name = arg.replace(/^--?/, "");
    if (arg.startsWith("-") && MULTI_VALUE.has(name)) {
      const values: string[] = [];
      while (i + 1 < argv.length && !argv[i + 1]!.startsWith("-")) values.push(argv[++i]!);
      out.push(values.join(" "));
    }
  }
  return out;
}

/** Turns a llm-d-style YAML config into `--flag=value` arguments placed before the command line's. */
export function configArgs(file: string): string[] {
  let doc: unknown;
  try {
    doc = parseYaml(readFileSync(file, "utf8"));
  } catch (err) {
    throw new ConfigError((err as Error).message, file);
  }
  if (doc === null || doc === undefined) return [];
  if (typeof doc !== "object" || Array.isArray(doc)) throw new ConfigError("must be a mapping of flag names", file);
  const args: string[] = [];
  for (const [key, value] of Object.entries(doc as Record<string, unknown>)) {
    if (!(key in SIM_FLAGS) || key === "config") throw new ConfigError("unknown key (see --help)", file, key);
    let text: string;
    if (Array.isArray(value)) {
      const items = value.map((v) => (typeof v === "object" && v !== null ? JSON.stringify(v) : String(v)));
      text = items.join(key === "failure-types" ? "," : " ");
    } else if (typeof value === "object" && value !== null) text = JSON.stringify(value);
    else text = String(value);
    args.push(`--${key}=${text}`);
  }
  return args;
}

function splitNames(text: string): string[] {
  return text.split(/[\s,]+/).filter((s) => s !== "");
}

export interface SimArgs {
  readonly options: SimulatorOptions;
  readonly logLevel: string;
}

/** Builds SimulatorOptions from flags, config file and environment (the only place the simulator reads env). */
export function parseSimArgs(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): SimArgs {
  let joined = joinMultiValueFlags(argv);
  const first = parseFlags(SIM_FLAGS, joined);
  if (first.config !== "") {
    joined = [...configArgs(first.config), ...joined];
  }
  const f = first.config !== "" ? parseFlags(SIM_FLAGS, joined) : first;
  if (f.$args.length > 0) throw new ConfigError(`unexpected argument "${f.$args[0]}"`);
  const model = f.model || env.SIM_MODEL || "";
  if (model === "") throw new ConfigError("is required (or set $SIM_MODEL)", undefined, "--model");
  const served = splitNames(f["served-model-name"]);
  const podName = f["pod-name"] || env.POD_NAME || undefined;
  const podNamespace = f["pod-namespace"] || env.POD_NAMESPACE || undefined;
  const options: SimulatorOptions = {
    model,
    ...(served.length > 0 ? { servedModelNames: served } : {}),
    host: f.host,
    port: f.port,
    loraModules: f["lora-modules"],
    maxLoras: f["max-loras"],
    maxCpuLoras: f["max-cpu-loras"],
    loraLoadTimeMs: f["lora-load-time"],
    maxModelLen: f["max-model-len"],
    maxNumSeqs: f["max-num-seqs"],
    maxWaitingQueueLength: f["max-waiting-queue-length"],
    mode: f.mode as SimMode,
    ...(f.seed >= 0 ? { seed: f.seed } : {}),
    timeToFirstTokenMs: f["time-to-first-token"],
    interTokenLatencyMs: f["inter-token-latency"],
    prefillOverheadMs: f["prefill-overhead"],
    prefillTimePerTokenMs: f["prefill-time-per-token"],
    timeFactorUnderLoad: f["time-factor-under-load"],
    kvCacheSize: f["kv-cache-size"],
    blockSize: f["block-size"],
    enablePrefixCaching: f["enable-kvcache"] && f["enable-prefix-caching"],
    failureInjectionRate: f["failure-injection-rate"],
    ...(f["failure-types"].length > 0 ? { failureTypes: f["failure-types"] as readonly FailureType[] } : {}),
    metricsDelayMs: f["metrics-delay"],
    hangRate: f["hang-rate"],
    kvCacheMetricName: f["kv-cache-metric-name"] as KvCacheMetricName,
    loraInfoAtStart: f["lora-info-at-start"],
    gaugeLag: f["gauge-lag"] === "first-step" ? "first-step" : Number(f["gauge-lag"]),
    dataParallelSize: f["data-parallel-size"],
    dpGaugesAfterFirstRequest: f["dp-gauges-after-first-request"],
    speed: f.speed,
    streamBatchTokens: f["stream-batch-tokens"],
    ...(podName !== undefined ? { podName } : {}),
    ...(podNamespace !== undefined ? { podNamespace } : {}),
  };
  return { options, logLevel: f["log-level"] };
}

export async function run(argv: readonly string[]): Promise<number | undefined> {
  if (argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write(formatHelp("sim", SUMMARY, SIM_FLAGS));
    return 0;
  }
  const { options, logLevel } = parseSimArgs(argv);
  const logger = createLogger({ name: "sim", level: logLevel as LevelWithSilent });
  const sim = await startSimulator(options);
  const o = sim.options;
  logger.info(
    {
      url: sim.url,
      model: o.servedModelNames[0],
      loras: o.loraModules.map((m) => m.name),
      maxNumSeqs: o.maxNumSeqs,
      kvCacheSize: o.kvCacheSize,
      seed: o.seed,
    },
    `simulator listening on ${sim.url}`,
  );
  // The root logger buffers 4 KiB before writing; supervisors and tests wait for this line.
  logger.flush();
  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    const onSignal = (sig: NodeJS.Signals): void => {
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
      resolve(sig);
    };
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);
  });
  await sim.close();
  logger.info({ signal }, "simulator stopped");
  logger.flush();
  return 0;
}
