/**
 * The benchmark's request trace: seeded, so every routing mode replays exactly the same requests in the same order
 * (docs/design/benchmarks.md §4.2). Arrival gaps are drawn at unit rate and divided by the offered rate when a stage
 * runs, so one trace serves every load step: a step at twice the rate sends the same requests twice as densely.
 *
 * Shapes:
 * - prompt and output lengths are bimodal log-normal mixtures (most requests short, a heavy tail of long ones);
 * - a share of requests belongs to shared-prefix groups (a long system prompt per group, inference-perf
 *   `shared_prefix` semantics), the rest share nothing but a short preamble;
 * - a share targets LoRA adapters with Zipf-like popularity;
 * - criticality is drawn independently (e.g. 20 % Critical / 50 % Standard / 30 % Sheddable).
 */
import { CHARS_PER_TOKEN } from "../common/constants.js";
import { Rng } from "../sim/random.js";

export type Criticality = "Critical" | "Standard" | "Sheddable";
export const CRITICALITIES: readonly Criticality[] = ["Critical", "Standard", "Sheddable"];

/** A log-normal length distribution: median and log-space sigma, clamped to [min, max]. */
export interface LengthMode {
  readonly median: number;
  readonly sigma: number;
  readonly min: number;
  readonly max: number;
}

/** Two log-normal modes: `tailShare` of requests come from `tail`, the rest from `body`. */
export interface LengthMix {
  readonly body: LengthMode;
  readonly tail: LengthMode;
  readonly tailShare: number;
}

export interface WorkloadSpec {
  readonly seed: number;
  readonly prompt: LengthMix;
  readonly output: LengthMix;
  /** Share of requests that belong to a shared-prefix group. */
  readonly sharedPrefixShare: number;
  readonly prefixGroups: number;
  /** Each group's system prompt length is drawn uniformly from this range (tokens). */
  readonly prefixTokens: readonly [number, number];
  /** Share of requests that target a LoRA adapter. */
  readonly loraShare: number;
  /** Adapters, most popular first (Zipf weights 1/k). */
  readonly loras: readonly string[];
  /** Shares of Critical, Standard, Sheddable (normalised). */
  readonly criticalityMix: readonly [number, number, number];
}

/** The full benchmark's workload (documented in bench/README.md). */
export const DEFAULT_WORKLOAD: WorkloadSpec = {
  seed: 20260101,
  // 90 % chat-sized prompts around 300 tokens, 10 % documents of 3k–10k tokens.
  prompt: {
    body: { median: 300, sigma: 0.7, min: 100, max: 2000 },
    tail: { median: 5000, sigma: 0.4, min: 2500, max: 10_000 },
    tailShare: 0.1,
  },
  // 85 % short answers around 150 tokens, 15 % long generations of 500–3,000 tokens (see README: a 10k-token
  // generation at H100 decode speed lasts minutes, longer than a stage this box can afford).
  output: {
    body: { median: 150, sigma: 0.6, min: 20, max: 600 },
    tail: { median: 1000, sigma: 0.5, min: 500, max: 3000 },
    tailShare: 0.15,
  },
  sharedPrefixShare: 0.5,
  prefixGroups: 12,
  prefixTokens: [1000, 3000],
  loraShare: 0.1,
  loras: ["sql-lora", "tweet-summary-lora", "code-lora"],
  criticalityMix: [0.2, 0.5, 0.3],
};

export interface TraceItem {
  readonly index: number;
  /** Inter-arrival gap at 1 request/s (exponential, mean 1 s); divide by the rate. */
  readonly gap: number;
  readonly promptTokens: number;
  readonly outputTokens: number;
  /** Shared-prefix group, or -1. */
  readonly group: number;
  readonly lora: string | undefined;
  readonly criticality: Criticality;
}

export interface Trace {
  readonly spec: WorkloadSpec;
  readonly items: readonly TraceItem[];
  /** System prompt length per group (tokens). */
  readonly groupTokens: readonly number[];
}

function drawLength(rng: Rng, mix: LengthMix): number {
  const mode = rng.next() < mix.tailShare ? mix.tail : mix.body;
  const v = Math.round(Math.exp(Math.log(mode.median) + mode.sigma * rng.normal()));
  return Math.min(mode.max, Math.max(mode.min, v));
}

function pickWeighted(rng: Rng, weights: readonly number[]): number {
  let total = 0;
  for (const w of weights) total += w;
  let u = rng.next() * total;
  for (let i = 0; i < weights.length; i++) {
    u -= weights[i]!;
    if (u < 0) return i;
  }
  return weights.length - 1;
}

export function validateWorkload(spec: WorkloadSpec): void {
  const unit = (name: string, v: number) => {
    if (!(v >= 0 && v <= 1)) throw new RangeError(`workload.${name} must be between 0 and 1, got ${v}`);
  };
  unit("sharedPrefixShare", spec.sharedPrefixShare);
  unit("loraShare", spec.loraShare);
  unit("prompt.tailShare", spec.prompt.tailShare);
  unit("output.tailShare", spec.output.tailShare);
  if (spec.loraShare > 0 && spec.loras.length === 0) throw new RangeError("workload.loras is empty but loraShare > 0");
  if (!Number.isInteger(spec.prefixGroups) || spec.prefixGroups < 1)
    throw new RangeError("workload.prefixGroups must be an integer >= 1");
  if (spec.criticalityMix.some((v) => !(v >= 0)) || spec.criticalityMix.every((v) => v === 0))
    throw new RangeError("workload.criticalityMix needs non-negative shares, not all zero");
}

/** Draws `count` requests. The same spec and count always give the same trace. */
export function generateTrace(spec: WorkloadSpec, count: number): Trace {
  validateWorkload(spec);
  const rng = new Rng(spec.seed);
  const [pmin, pmax] = spec.prefixTokens;
  const groupTokens = Array.from({ length: spec.prefixGroups }, () => Math.round(pmin + rng.next() * (pmax - pmin)));
  const zipf = spec.loras.map((_, k) => 1 / (k + 1));
  const items: TraceItem[] = [];
  for (let i = 0; i < count; i++) {
    const gap = -Math.log(1 - rng.next());
    const group = rng.next() < spec.sharedPrefixShare ? rng.int(spec.prefixGroups) : -1;
    // Grouped requests keep their drawn length as the question after the shared system prompt.
    const promptTokens = drawLength(rng, spec.prompt);
    const outputTokens = drawLength(rng, spec.output);
    const lora = rng.next() < spec.loraShare ? spec.loras[pickWeighted(rng, zipf)] : undefined;
    const criticality = CRITICALITIES[pickWeighted(rng, spec.criticalityMix)]!;
    items.push({ index: i, gap, promptTokens, outputTokens, group, lora, criticality });
  }
  return { spec, items, groupTokens };
}

const WORDS =
  "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee zulu cache token prefix batch queue model route pod gpu".split(
    " ",
  );

/** Deterministic filler text of `tokens` tokens under the chars/4 estimate the simulator and the EPP share. */
export function fillerText(seed: number, tokens: number): string {
  const rng = new Rng(seed);
  const target = tokens * CHARS_PER_TOKEN;
  const parts: string[] = [];
  let len = 0;
  while (len < target) {
    const w = WORDS[rng.int(WORDS.length)]!;
    parts.push(w);
    len += w.length + 1;
  }
  return parts.join(" ").slice(0, target);
}

/** Model names per criticality for base-model traffic: the InferenceModels the bench's resources declare. */
export const CRITICALITY_MODELS: Readonly<Record<Criticality, string>> = {
  Critical: "llama3",
  Standard: "llama3-standard",
  Sheddable: "llama3-batch",
};

/**
 * LoRA requests name the adapter as the model, so their criticality travels as an InferenceObjective
 * (`x-gateway-inference-objective`): "interactive" (priority 10) for Critical, "batch" (priority −1) for Sheddable.
 */
export const CRITICALITY_OBJECTIVES: Readonly<Record<Criticality, string | undefined>> = {
  Critical: "interactive",
  Standard: undefined,
  Sheddable: "batch",
};

export interface BuiltRequest {
  readonly body: string;
  readonly objective: string | undefined;
}

/**
 * Renders trace items into request bodies: streaming chat with include_usage and ignore_eos (so the server
 * generates exactly max_tokens, as llm-d-inference-sim does only with ignore_eos). `salt` starts every system
 * prompt so a run never hits prefix-cache blocks left by the previous mode's identical trace.
 */
export class RequestBuilder {
  readonly #trace: Trace;
  readonly #salt: string;
  readonly #groupText = new Map<number, string>();

  constructor(trace: Trace, salt: string) {
    this.#trace = trace;
    this.#salt = salt;
  }

  build(item: TraceItem): BuiltRequest {
    let system: string;
    if (item.group >= 0) {
      let text = this.#groupText.get(item.group);
      if (text === undefined) {
        text = `[${this.#salt}] ${fillerText(this.#trace.spec.seed ^ (0x51ed + item.group * 7919), this.#trace.groupTokens[item.group]!)}`;
        this.#groupText.set(item.group, text);
      }
      system = text;
    } else {
      system = `[${this.#salt}] You are a helpful assistant.`;
    }
    const user = fillerText(this.#trace.spec.seed ^ (0x9e37 + item.index * 104729), item.promptTokens);
    const model = item.lora ?? CRITICALITY_MODELS[item.criticality];
    const body = JSON.stringify({
      model,
      messages: [
        { role: "system", content: system },
        { role: "user", content: user },
      ],
      max_tokens: item.outputTokens,
      ignore_eos: true,
      stream: true,
      stream_options: { include_usage: true },
    });
    return { body, objective: item.lora !== undefined ? CRITICALITY_OBJECTIVES[item.criticality] : undefined };
  }
}

/** Mean output tokens over a trace: converts measured output tokens/s into request capacity. */
export function meanOutputTokens(trace: Trace): number {
  let sum = 0;
  for (const it of trace.items) sum += it.outputTokens;
  return trace.items.length === 0 ? 0 : sum / trace.items.length;
}

/** Requests a stage at `rate` req/s for `durationMs` may send, with headroom for Poisson bunching. */
export function traceLengthFor(maxRate: number, durationMs: number): number {
  return Math.ceil((maxRate * durationMs) / 1000) * 2 + 50;
}
