/**
 * The benchmark's trace (src/bench/workload.ts) turned into what the fleet simulation sends: the same request
 * bodies `switchyard bench` sends (RequestBuilder), the engine request the simulator's HTTP layer would make of each
 * (src/sim/request.ts parseRequest + planOutput), and each request's TTFT alone on an idle 1× pod with a cold cache —
 * the denominator of the TTFT slowdown (docs/design/benchmarks.md §5.4).
 *
 * Built lazily and cached per index: every mode and load point replays the same requests, and building a body
 * (filler text, JSON) costs more than simulating it. A request holds its body and rendered prompt (~20–40 KB with
 * its share of the heap; a 10k-request sweep peaks near 450 MB), so past CACHE_LIMIT requests nothing is kept and
 * every run rebuilds what it sends: slower, but memory stays bounded by the requests in flight.
 */

import type { FleetParams } from "../bench/fleet.js";
import { type Criticality, generateTrace, RequestBuilder, type Trace, type WorkloadSpec } from "../bench/workload.js";
import { OBJECTIVE_HEADER } from "../common/constants.js";
import type { EngineRequest } from "../sim/engine.js";
import { parseRequest } from "../sim/request.js";

/** Traces longer than this are not cached (see above). */
export const CACHE_LIMIT = 20_000;

export interface PreparedRequest {
  readonly index: number;
  /** Inter-arrival gap at 1 request/s. */
  readonly gap: number;
  readonly body: Buffer;
  readonly headers: ReadonlyMap<string, string>;
  readonly criticality: Criticality;
  /** Adapter the request names, or undefined for the base model. */
  readonly lora: string | undefined;
  /** What the pod's engine is handed; undefined when the pod would answer 400 (prompt over the context window). */
  readonly engine: EngineRequest | undefined;
}

const NO_HEADERS: ReadonlyMap<string, string> = new Map();

export class PreparedTrace {
  readonly trace: Trace;
  readonly #builder: RequestBuilder;
  readonly #items: (PreparedRequest | undefined)[];
  readonly #maxModelLen: number;
  readonly #loras: ReadonlySet<string>;
  readonly #served: ReadonlySet<string>;

  constructor(
    spec: WorkloadSpec,
    count: number,
    maxModelLen: number,
    servedNames: readonly string[],
    cacheLimit = CACHE_LIMIT,
  ) {
    this.trace = generateTrace(spec, count);
    // One salt for every run: each run starts on fresh simulated pods, so nothing is left in a cache to hit.
    this.#builder = new RequestBuilder(this.trace, "fleetsim");
    this.#items = count <= cacheLimit ? new Array(count) : [];
    this.#maxModelLen = maxModelLen;
    this.#loras = new Set(spec.loras);
    this.#served = new Set(servedNames);
  }

  get length(): number {
    return this.trace.items.length;
  }

  get(i: number): PreparedRequest {
    let p = this.#items[i];
    if (p !== undefined) return p;
    const item = this.trace.items[i]!;
    const built = this.#builder.build(item);
    const parsed = parseRequest("chat", JSON.parse(built.body), this.#served, this.#loras);
    const room = this.#maxModelLen - parsed.promptTokens;
    const engine: EngineRequest | undefined =
      room <= 0
        ? undefined
        : {
            lora: parsed.lora,
            promptText: parsed.promptText,
            promptTokens: parsed.promptTokens,
            // The bench always sets max_tokens (and ignore_eos): planOutput's random mode caps it by the window.
            maxTokens: Math.min(parsed.requestedMaxTokens ?? item.outputTokens, room),
            finishReason: "length",
          };
    p = {
      index: i,
      gap: item.gap,
      body: Buffer.from(built.body),
      headers: built.objective === undefined ? NO_HEADERS : new Map([[OBJECTIVE_HEADER, built.objective]]),
      criticality: item.criticality,
      lora: item.lora,
      engine,
    };
    if (this.#items.length > 0) this.#items[i] = p;
    return p;
  }
}

/**
 * TTFT of `req` alone on an idle speed-1 pod with cold prefix and adapter caches, from the engine model
 * (src/sim/engine.ts): the adapter's cold load, then time-to-first-token + prefill overhead + every prompt token's
 * prefill, at the load factor of a batch of one.
 */
export function aloneTtftMs(p: FleetParams, req: EngineRequest): number {
  const loadFactor = 1 + (p.timeFactorUnderLoad - 1) / p.maxNumSeqs;
  const prefill = p.timeToFirstTokenMs + p.prefillOverheadMs + req.promptTokens * p.prefillTimePerTokenMs;
  return (req.lora !== undefined ? p.loraLoadTimeMs : 0) + prefill * loadFactor;
}
