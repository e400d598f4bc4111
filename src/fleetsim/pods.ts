/**
 * Simulated pods: `switchyard sim`'s engine (src/sim/engine.ts: continuous batching, prefill/decode costs, paged KV
 * with prefix caching, LoRA slots, speed, gauge lag) on the virtual clock, and what a scrape of one would return.
 *
 * Scrape path (docs/design/benchmarks.md §5.2): by default the EndpointMetrics are built straight from the engine's
 * gauges (`direct`), because rendering and parsing Prometheus text for every pod every 50 ms would cost most of a
 * run's CPU; `text` renders the simulator's real /metrics and runs the EPP's real extractor
 * (src/datalayer/engines.ts) instead. test/fleetsim/pods.test.ts holds the two equal, so `direct` is a shortcut, not
 * a second model.
 */

import { type FleetParams, SERVED_MODEL_NAMES, simOptions } from "../bench/fleet.js";
import { DEFAULT_ENGINE, type EngineMapping, EngineRegistry, extractMetrics } from "../datalayer/engines.js";
import type { EndpointMetrics, ServedModels } from "../datastore/types.js";
import type { SimPod } from "../local/stack.js";
import { Engine } from "../sim/engine.js";
import { renderMetrics } from "../sim/metrics.js";
import { resolveSimOptions } from "../sim/options.js";
import { type EventQueue, virtualClock } from "./clock.js";

export type ScrapeMode = "direct" | "text";

const EMPTY: ReadonlySet<string> = new Set();

function adapterSet(list: string): ReadonlySet<string> {
  return list === "" ? EMPTY : new Set(list.split(","));
}

let vllmMapping: EngineMapping | undefined;

export class VirtualPod {
  readonly spec: SimPod;
  readonly engine: Engine;
  readonly #q: EventQueue;
  /** Model ids the pod answers to (base names and adapters), what its /v1/models lists. */
  readonly ids: ReadonlySet<string>;
  readonly loras: ReadonlySet<string>;
  readonly #served: ReadonlySet<string>;

  constructor(spec: SimPod, params: FleetParams, q: EventQueue, seed: number, gaugeLag?: "first-step" | number) {
    this.spec = spec;
    this.#q = q;
    const options = resolveSimOptions({
      ...simOptions(spec, params, seed),
      ...(gaugeLag === undefined ? {} : { gaugeLag }),
    });
    this.engine = new Engine(options, virtualClock(q));
    this.loras = new Set(options.loraModules.map((m) => m.name));
    this.ids = new Set([...SERVED_MODEL_NAMES, ...this.loras]);
    this.#served = new Set([options.servedModelNames[0]!]);
  }

  /** What the scraper's /v1/models read gives the datastore (src/datalayer/scraper.ts). */
  servedModels(): ServedModels {
    const adapters = new Map<string, string>();
    for (const l of this.loras) adapters.set(l, SERVED_MODEL_NAMES[0]!);
    return { ids: this.ids, adapters, updateTime: this.#q.now };
  }

  /** A scrape answered at the current virtual time; `updateTime` is when the EPP will have parsed it. */
  scrape(mode: ScrapeMode, updateTime: number): EndpointMetrics {
    const now = this.#q.now;
    if (mode === "text") {
      vllmMapping ??= new EngineRegistry().get(DEFAULT_ENGINE)!;
      const text = renderMetrics(this.engine, now);
      return extractMetrics(
        vllmMapping,
        text,
        updateTime,
        this.spec.name,
        undefined,
        virtualClock(this.#q).wallMs() / 1000,
      );
    }
    const e = this.engine;
    const o = e.options;
    let running = 0;
    let waiting = 0;
    for (const c of e.gaugeCounts(now)) {
      if (c === undefined) continue;
      running += c.running;
      waiting += c.waiting;
    }
    let activeModels = EMPTY;
    let waitingModels = EMPTY;
    let maxActiveModels = 0;
    let lora: "reported" | "pending" | undefined;
    if (e.lora !== undefined) {
      const series = e.loraSeries();
      const current = series[series.length - 1];
      if (current === undefined) lora = "pending";
      else {
        lora = "reported";
        activeModels = adapterSet(current.running);
        waitingModels = adapterSet(current.waiting);
        maxActiveModels = o.maxLoras;
      }
    }
    return {
      waitingQueueSize: waiting,
      runningRequestsSize: running,
      kvCacheUsagePercent: Math.min(1, e.kv.usage),
      activeModels,
      waitingModels,
      maxActiveModels,
      servedModels: this.#served,
      cacheBlockSize: o.blockSize,
      cacheNumBlocks: o.kvCacheSize,
      updateTime,
      lora,
      unreported: undefined,
    };
  }
}
