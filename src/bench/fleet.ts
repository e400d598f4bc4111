/**
 * The benchmark fleet: an H100-like Llama-3-8B pool, scaled down so a 2-core machine can carry the token stream,
 * with one slower pod, one much slower pod, and LoRA adapters resident on half of the pods with fewer GPU slots
 * than adapters. The same parameters drive both backends: switchyard's simulator (in-process hosts, several
 * simulators per process) and llm-d-inference-sim (one process per pod).
 *
 * Latency sources (order of magnitude, then scaled; see bench/README.md):
 * - decode: vLLM on one H100 serves Llama-3-8B at ~10–15 ms per output token at small batch, rising to ~25–35 ms
 *   near a full batch (vLLM v0.6.0 performance blog, Sept 2024; llm-d and GIE regression runs on H100 use the
 *   same class of numbers) → --inter-token-latency 12ms, --time-factor-under-load 2.5;
 * - prefill: ~5–10k prompt tokens/s per request → 0.15 ms per uncached token (a 10k-token document ≈ 1.5 s);
 * - batch and KV: an H100 holds ~460k Llama-3-8B tokens of KV at bf16 and runs batches of 64–256; both are scaled
 *   by ~1/16 (8 sequences, 32k tokens) so the whole fleet streams ~2k tokens/s, which this box can relay.
 */
import { accessSync, constants as fsConstants } from "node:fs";
import { ConfigError } from "../common/errors.js";
import { findTool } from "../common/tools.js";
import { BASE_MODEL, fleet, type SimPod } from "../local/stack.js";
import type { SimulatorOptions } from "../sim/options.js";
import { CRITICALITY_MODELS } from "./workload.js";

/** Names every backend pod answers to: the base model and the per-criticality InferenceModel names (the baselines
 * forward the body untouched, so the servers must accept the un-rewritten names). */
export const SERVED_MODEL_NAMES: readonly string[] = [BASE_MODEL, ...Object.values(CRITICALITY_MODELS)];

export interface FleetParams {
  readonly interTokenLatencyMs: number;
  readonly timeFactorUnderLoad: number;
  readonly timeToFirstTokenMs: number;
  readonly prefillOverheadMs: number;
  readonly prefillTimePerTokenMs: number;
  readonly maxNumSeqs: number;
  readonly maxWaitingQueueLength: number;
  readonly kvCacheSize: number;
  readonly blockSize: number;
  readonly maxModelLen: number;
  readonly maxLoras: number;
  readonly loraLoadTimeMs: number;
}

export const H100_SCALED: FleetParams = {
  interTokenLatencyMs: 12,
  timeFactorUnderLoad: 2.5,
  timeToFirstTokenMs: 10,
  prefillOverheadMs: 5,
  prefillTimePerTokenMs: 0.15,
  maxNumSeqs: 8,
  maxWaitingQueueLength: 128,
  kvCacheSize: 2048,
  blockSize: 16,
  maxModelLen: 32_768,
  maxLoras: 2,
  loraLoadTimeMs: 100,
};

/** Speed per pod: the last pod twice as slow, the middle one 1.5× (an older GPU, a noisy neighbour). */
export function podSpeeds(count: number): number[] {
  const speeds = Array.from({ length: count }, () => 1);
  if (count >= 2) speeds[count - 1] = 2;
  if (count >= 4) speeds[Math.floor(count / 2) - 1] = 1.5;
  return speeds;
}

export interface BenchFleetOptions {
  readonly count: number;
  readonly addressPrefix: string;
  readonly port: number;
  readonly loras: readonly string[];
  readonly params: FleetParams;
}

/** Pod layout via the shared `fleet()`: LoRA adapters on the first half of the pods. */
export function benchPods(o: BenchFleetOptions): SimPod[] {
  return fleet({
    count: o.count,
    addressPrefix: o.addressPrefix,
    port: o.port,
    speeds: podSpeeds(o.count),
    loras: o.loras,
    loraPods: Math.max(1, Math.floor(o.count / 2)),
    maxLoras: o.params.maxLoras,
  });
}

/**
 * A request's TTFT alone on an idle 1× pod with a cold cache, in unscaled ms: what no router can improve on, and
 * the denominator of the benchmark's TTFT slowdown. It follows the simulator's model (src/sim/engine.ts): prefill =
 * time-to-first-token + overhead + every prompt token × per-token time, times the load factor of a batch of one
 * (1 + (time-factor-under-load − 1) / max-num-seqs); an adapter request first waits for its adapter to load.
 */
export function idleColdTtftMs(p: FleetParams, promptTokens: number, lora: boolean): number {
  const batchOfOne = 1 + (p.timeFactorUnderLoad - 1) / p.maxNumSeqs;
  const prefill = (p.timeToFirstTokenMs + p.prefillOverheadMs + promptTokens * p.prefillTimePerTokenMs) * batchOfOne;
  return prefill + (lora ? p.loraLoadTimeMs : 0);
}

/**
 * Programmatic options for switchyard's simulator. `timeScale` multiplies every model latency on top of the pod's
 * own speed (0.1 = the whole fleet 10× faster, so a bounded run carries 10× the requests; bench/README.md);
 * `streamBatchTokens` is the simulator's --stream-batch-tokens.
 */
export function simOptions(
  pod: SimPod,
  p: FleetParams,
  seed: number,
  timeScale = 1,
  streamBatchTokens = 1,
): SimulatorOptions {
  return {
    model: BASE_MODEL,
    servedModelNames: SERVED_MODEL_NAMES,
    host: pod.address,
    port: pod.port,
    loraModules: pod.loras,
    maxLoras: pod.maxLoras,
    loraLoadTimeMs: p.loraLoadTimeMs,
    maxModelLen: p.maxModelLen,
    maxNumSeqs: p.maxNumSeqs,
    maxWaitingQueueLength: p.maxWaitingQueueLength,
    seed,
    timeToFirstTokenMs: p.timeToFirstTokenMs,
    interTokenLatencyMs: p.interTokenLatencyMs,
    prefillOverheadMs: p.prefillOverheadMs,
    prefillTimePerTokenMs: p.prefillTimePerTokenMs,
    timeFactorUnderLoad: p.timeFactorUnderLoad,
    kvCacheSize: p.kvCacheSize,
    blockSize: p.blockSize,
    enablePrefixCaching: true,
    speed: pod.speed * timeScale,
    streamBatchTokens,
    podName: pod.name,
    podNamespace: "default",
  };
}

/** Go duration text for a millisecond value (llm-d-inference-sim parses Go durations). */
export function goDuration(ms: number): string {
  if (Number.isInteger(ms)) return `${ms}ms`;
  const us = Math.round(ms * 1000);
  return `${us}us`;
}

/**
 * llm-d-inference-sim flags for one pod (docs/design/model-servers.md §7.2). It has no per-pod speed, so a slow pod's
 * latencies are multiplied here; it has no bind-address flag (only --port) and listens on all interfaces, so pods
 * get distinct ports on 127.0.0.1 instead of one port on distinct addresses.
 */
export function llmdArgs(pod: SimPod, p: FleetParams, seed: number, timeScale = 1): string[] {
  const s = pod.speed * timeScale;
  const args = [
    "--port",
    String(pod.port),
    "--model",
    BASE_MODEL,
    "--served-model-name",
    ...SERVED_MODEL_NAMES,
    "--max-num-seqs",
    String(p.maxNumSeqs),
    "--max-waiting-queue-length",
    String(p.maxWaitingQueueLength),
    "--max-model-len",
    String(p.maxModelLen),
    "--time-to-first-token",
    goDuration((p.timeToFirstTokenMs + p.prefillOverheadMs) * s),
    "--inter-token-latency",
    goDuration(p.interTokenLatencyMs * s),
    "--latency-calculator",
    "per-token",
    // The per-token calculator's TTFT is prefill-overhead + uncached tokens × prefill-time-per-token, so the
    // constant part of our model goes into the overhead (and into --time-to-first-token for the constant one).
    "--prefill-overhead",
    goDuration((p.timeToFirstTokenMs + p.prefillOverheadMs) * s),
    "--prefill-time-per-token",
    goDuration(p.prefillTimePerTokenMs * s),
    "--time-factor-under-load",
    String(p.timeFactorUnderLoad),
    "--enable-kvcache",
    "--kv-cache-size",
    String(p.kvCacheSize),
    "--block-size",
    String(p.blockSize),
    "--force-dummy-tokenizer",
    "--seed",
    String(seed),
    "--mode",
    "random",
    // With --enable-kvcache the simulator dials a ZMQ KV-event listener on 127.0.0.1:5557 forever unless the
    // endpoint is empty (docs/design/model-servers.md §7.2); nothing here listens for KV events.
    "--zmq-endpoint=",
  ];
  if (pod.loras.length > 0) {
    args.push(
      "--lora-modules",
      ...pod.loras.map((name) => JSON.stringify({ name, path: `/adapters/${name}`, base_model_name: BASE_MODEL })),
      "--max-loras",
      String(pod.maxLoras),
    );
  }
  return args;
}

export const LLMD_INSTALL_HINT = "install it with: npm run setup:tools -- llm-d-inference-sim (or pass --llmd-bin)";

/**
 * Finds the llm-d-inference-sim executable: an explicit path, else where every real tool is looked for
 * ($SWITCHYARD_LLM_D_INFERENCE_SIM, PATH, the setup:tools folder; src/common/tools.ts).
 */
export function findLlmdBinary(explicit: string, env: NodeJS.ProcessEnv = process.env): string {
  if (explicit !== "") {
    try {
      accessSync(explicit, fsConstants.X_OK);
      return explicit;
    } catch {
      throw new ConfigError(`llm-d-inference-sim not found or not executable at "${explicit}"; ${LLMD_INSTALL_HINT}`);
    }
  }
  const found = findTool("llm-d-inference-sim", env);
  if (found !== undefined) return found;
  throw new ConfigError(
    `llm-d-inference-sim is not installed (looked at $SWITCHYARD_LLM_D_INFERENCE_SIM, PATH and the setup:tools folder); ${LLMD_INSTALL_HINT}`,
  );
}
