/**
 * One virtual-time run (docs/design/benchmarks.md §5): a fleet of simulated pods, a router (baseline or the real
 * EPP path), a scrape loop with lag, and the trace's requests arriving as a Poisson process at `rate` (open loop)
 * or `concurrency` at a time (closed loop, for the capacity probe). Everything runs on one event queue, so a run
 * is a pure function of its config: same seed, same numbers.
 */

import { type FleetParams, podSpeeds, SERVED_MODEL_NAMES } from "../bench/fleet.js";
import { DEFAULT_REFRESH_METRICS_INTERVAL_MS, DEFAULT_SCRAPE_TIMEOUT_MS } from "../common/constants.js";
import { endpointKey } from "../datastore/types.js";
import { fleet, fleetResources, POOL_NAME, POOL_NAMESPACE, type SimPod } from "../local/stack.js";
import { EngineRejection, type EngineRequest, type SequenceInfo, type SequenceSink } from "../sim/engine.js";
import { Rng } from "../sim/random.js";
import { EventQueue } from "./clock.js";
import { type ScrapeMode, VirtualPod } from "./pods.js";
import { BalancerRouter, EppRouter, type RequestEvents, type Router } from "./router.js";
import { aloneTtftMs, PreparedTrace } from "./trace.js";

/** How a mode routes: a baseline balancer or an EPP profile. */
export type ModeSpec =
  | { readonly id: string; readonly kind: "round-robin" }
  | { readonly id: string; readonly kind: "least-request"; readonly choices: number }
  | {
      readonly id: string;
      readonly kind: "epp";
      readonly configFile?: string | undefined;
      readonly configText?: string | undefined;
    };

export interface FleetShape {
  readonly pods: number;
  /** Speed per pod (latency multiplier); default the bench's podSpeeds(). */
  readonly speeds?: readonly number[];
  /** Pods (from the first) that load LoRA adapters; default half, as the bench. */
  readonly loraPods?: number;
  readonly params: FleetParams;
}

export interface RunConfig {
  readonly fleet: FleetShape;
  readonly trace: PreparedTrace;
  readonly mode: ModeSpec;
  readonly seed: number;
  /** Open loop: requests per second. */
  readonly rate?: number;
  /** Closed loop: requests kept in flight (used by the capacity probe). */
  readonly concurrency?: number;
  /** Requests to send (≤ trace length). */
  readonly requests: number;
  /** `--refresh-metrics-interval`. Default 50 ms. */
  readonly scrapeIntervalMs?: number;
  /** Time from a pod answering /metrics to the EPP holding the parsed result. Default 2 ms. */
  readonly scrapeLagMs?: number;
  readonly scrapeMode?: ScrapeMode;
  /** The simulator's `--gauge-lag`; default its own ("first-step", like vLLM). */
  readonly gaugeLag?: "first-step" | number;
  /**
   * EPP modes only: time from the pick to the pod receiving the request, the ext_proc round trip the real-time bench
   * pays on every EPP request (and, at its 5x time scale, pays 5x larger relative to model time). Default 0.
   */
  readonly eppOverheadMs?: number;
  /**
   * EPP modes only: how much later than the pod's first token the client sees it, the response side of the ext_proc
   * path (every chunk crosses the EPP before the client). Added to the recorded TTFT; the EPP's own events are not
   * moved. Default 0.
   */
  readonly eppResponseOverheadMs?: number;
  /**
   * EPP modes only: per-request (request side, response side) delays in model ms, one pair drawn at random (seeded)
   * for every EPP request instead of the two constants above: the measured ext_proc path, with its tail
   * (read by `switchyard fleetsim --epp-path`: src/cli/fleetsim.ts).
   */
  readonly eppPathSamples?: EppPathSamples;
}

/** Paired samples: index i is one real request's request-side and response-side delay, model ms. */
export interface EppPathSamples {
  readonly requestMs: readonly number[];
  readonly responseMs: readonly number[];
}

export interface RequestRecord {
  readonly pod: number;
  /** HTTP status of the answer; 200 for a served request. */
  status: number;
  arrival: number;
  ttft: number;
  e2e: number;
  outputTokens: number;
  cachedTokens: number;
  aloneTtft: number;
  /** EPP modes: how much later than the pod's first token the client sees it (ms); 0 for the balancers. */
  responseOverhead: number;
}

export interface RunOutput {
  readonly pods: readonly SimPod[];
  readonly records: readonly RequestRecord[];
  /** Output tokens emitted while requests were still being sent, and the length of that window (ms). */
  readonly windowTokens: number;
  readonly windowMs: number;
  /** Virtual time from the first arrival to the last completion, ms. */
  readonly spanMs: number;
  readonly prefixQueries: number;
  readonly prefixHits: number;
  /** Per pod: time-averaged requests running / waiting in the engine (true state, sampled once a simulated second). */
  readonly meanRunning: readonly number[];
  readonly meanWaiting: readonly number[];
  readonly events: number;
}

export const DEFAULT_SCRAPE_LAG_MS = 2;
const LOAD_SAMPLE_MS = 1000;

export function fleetPods(shape: FleetShape, loras: readonly string[]): SimPod[] {
  return fleet({
    count: shape.pods,
    addressPrefix: "10.0.0",
    port: 8000,
    speeds: shape.speeds !== undefined && shape.speeds.length > 0 ? [...shape.speeds] : podSpeeds(shape.pods),
    loras,
    loraPods: shape.loraPods ?? Math.max(1, Math.floor(shape.pods / 2)),
    maxLoras: shape.params.maxLoras,
  });
}

export function prepareTrace(
  workload: ConstructorParameters<typeof PreparedTrace>[0],
  count: number,
  params: FleetParams,
  cacheLimit?: number,
): PreparedTrace {
  return new PreparedTrace(workload, count, params.maxModelLen, SERVED_MODEL_NAMES, cacheLimit);
}

export function runFleet(c: RunConfig): RunOutput {
  const q = new EventQueue();
  const rng = new Rng(c.seed ^ 0x9e3779b9);
  const params = c.fleet.params;
  const specs = fleetPods(c.fleet, c.trace.trace.spec.loras);
  const pods = specs.map((s, i) => new VirtualPod(s, params, q, (c.seed + i * 7919) >>> 0, c.gaugeLag));
  const keys = specs.map((s) => endpointKey(s.address, s.port));
  const podOf = new Map(keys.map((k, i) => [k, i]));
  const mode = c.mode;
  let router: Router;
  if (mode.kind === "epp") {
    router = new EppRouter({
      name: mode.id,
      q,
      resourcesYaml: fleetResources(specs, c.trace.trace.spec.loras),
      poolName: POOL_NAME,
      poolNamespace: POOL_NAMESPACE,
      configFile: mode.configFile,
      configText: mode.configText,
      seed: c.seed,
    });
  } else {
    router = new BalancerRouter(mode.id, keys, mode.kind, mode.kind === "least-request" ? mode.choices : 1, c.seed);
  }

  const interval = c.scrapeIntervalMs ?? DEFAULT_REFRESH_METRICS_INTERVAL_MS;
  const lag = c.scrapeLagMs ?? DEFAULT_SCRAPE_LAG_MS;
  const scrapeMode = c.scrapeMode ?? "direct";
  let finished = false;
  const endpoints = router.endpoints;
  if (endpoints !== undefined) {
    for (const e of endpoints) {
      const i = podOf.get(e.key);
      if (i === undefined) throw new Error(`fleetsim: endpoint ${e.key} matches no simulated pod`);
      const pod = pods[i]!;
      // The scraper reads /v1/models too (src/datalayer/scraper.ts); the list never changes here.
      e.models = pod.servedModels();
      // Each endpoint's poll loop starts at its own phase, as independent timer chains do.
      const scrape = (): void => {
        if (finished) return;
        const m = pod.scrape(scrapeMode, q.now + lag);
        q.after(lag, () => {
          e.metrics = m;
          e.lastScrapeError = undefined;
          // src/datalayer/scraper.ts: fresh until the next answer is late (next tick + scrape timeout).
          e.metricsValidUntil = q.now + (interval - (lag % interval)) + DEFAULT_SCRAPE_TIMEOUT_MS;
        });
        q.after(interval, scrape);
      };
      q.at(rng.next() * interval, scrape);
    }
  }

  const total = Math.min(c.requests, c.trace.length);
  const eppOverhead = c.mode.kind === "epp" ? (c.eppOverheadMs ?? 0) : 0;
  const eppResponseOverhead = c.mode.kind === "epp" ? (c.eppResponseOverheadMs ?? 0) : 0;
  const path =
    c.mode.kind === "epp" && c.eppPathSamples && c.eppPathSamples.requestMs.length > 0 ? c.eppPathSamples : undefined;
  // Its own stream, so drawing path samples leaves every other random choice of the run as it was.
  const pathRng = new Rng(c.seed ^ 0x51ed2701);
  const records: RequestRecord[] = new Array(total);
  // Start after one full scrape round, as the bench waits for the EPP to see fresh metrics from every pod.
  const start = interval + lag;
  let sent = 0;
  let done = 0;
  let firstArrival = Number.NaN;
  let lastArrival = Number.NaN;
  let windowTokens = 0;
  let lastDone = start;

  const finish = (): void => {
    done++;
    lastDone = q.now;
    if (done === total) finished = true;
    if (c.concurrency !== undefined && sent < total) send();
  };

  const send = (): void => {
    const i = sent++;
    const item = c.trace.get(i);
    const now = q.now;
    if (Number.isNaN(firstArrival)) firstArrival = now;
    lastArrival = now;
    const rec: RequestRecord = {
      pod: -1,
      status: 0,
      arrival: now,
      ttft: Number.NaN,
      e2e: Number.NaN,
      outputTokens: 0,
      cachedTokens: 0,
      aloneTtft: item.engine === undefined ? Number.NaN : aloneTtftMs(params, item.engine),
      responseOverhead: 0,
    };
    records[i] = rec;
    const res = router.route({ requestId: `r${i}`, body: item.body, headers: item.headers });
    if (!res.ok) {
      rec.status = res.status;
      finish();
      return;
    }
    const p = podOf.get(res.endpoint);
    if (p === undefined) throw new Error(`fleetsim: router chose unknown endpoint ${res.endpoint}`);
    (rec as { pod: number }).pod = p;
    let before = eppOverhead;
    if (path !== undefined) {
      const k = Math.min(path.requestMs.length - 1, Math.floor(pathRng.next() * path.requestMs.length));
      before = path.requestMs[k]!;
      rec.responseOverhead = path.responseMs[k]!;
    } else rec.responseOverhead = eppResponseOverhead;
    if (before > 0) q.after(before, () => dispatch(rec, pods[p]!, item.lora, item.engine, res.events));
    else dispatch(rec, pods[p]!, item.lora, item.engine, res.events);
  };

  const dispatch = (
    rec: RequestRecord,
    pod: VirtualPod,
    lora: string | undefined,
    req: EngineRequest | undefined,
    events: RequestEvents,
  ): void => {
    // The pod answers what the real simulator would: 404 for an adapter it does not serve, 400 for a prompt over
    // its context window, 429 when its waiting queue is full.
    if (lora !== undefined && !pod.loras.has(lora)) {
      fail(rec, 404, events);
      return;
    }
    if (req === undefined) {
      fail(rec, 400, events);
      return;
    }
    const sink: SequenceSink = {
      onToken(seq: SequenceInfo) {
        const now = q.now;
        // Throughput counts what the fleet produced while load was still offered (as the bench does).
        if (sent < total) windowTokens++;
        if (seq.generated === 1) {
          rec.ttft = now - rec.arrival + rec.responseOverhead;
          events.firstToken();
        }
      },
      onFinish(seq: SequenceInfo) {
        rec.e2e = q.now - rec.arrival;
        rec.outputTokens = seq.generated;
        rec.cachedTokens = seq.cachedTokens;
        events.completed({
          promptTokens: seq.promptTokens,
          completionTokens: seq.generated,
          cachedTokens: seq.cachedTokens,
        });
        finish();
      },
    };
    try {
      pod.engine.submit(req, sink);
    } catch (err) {
      if (!(err instanceof EngineRejection)) throw err;
      fail(rec, err.status, events);
      return;
    }
    rec.status = 200;
    events.responseStarted(200);
  };

  const fail = (rec: RequestRecord, status: number, events: RequestEvents): void => {
    rec.status = status;
    events.responseStarted(status);
    finish();
  };

  // Per-pod load over the run. Sampling only reads engine state, so it does not change what the run does.
  const runningSum = new Array<number>(pods.length).fill(0);
  const waitingSum = new Array<number>(pods.length).fill(0);
  let samples = 0;
  const sample = (): void => {
    if (finished) return;
    for (let p = 0; p < pods.length; p++) {
      runningSum[p]! += pods[p]!.engine.running;
      waitingSum[p]! += pods[p]!.engine.waiting;
    }
    samples++;
    q.after(LOAD_SAMPLE_MS, sample);
  };
  q.at(start + LOAD_SAMPLE_MS / 2, sample);

  if (c.concurrency !== undefined) {
    const n = Math.min(c.concurrency, total);
    q.at(start, () => {
      for (let k = 0; k < n && sent < total; k++) send();
    });
  } else {
    const rate = c.rate ?? 0;
    if (!(rate > 0)) throw new RangeError("fleetsim: an open-loop run needs rate > 0");
    let t = start;
    const arrive = (): void => {
      send();
      if (sent < total) {
        t += (c.trace.trace.items[sent]!.gap * 1000) / rate;
        q.at(t, arrive);
      }
    };
    t += (c.trace.trace.items[0]!.gap * 1000) / rate;
    q.at(t, arrive);
  }
  q.run(() => finished);

  let prefixQueries = 0;
  let prefixHits = 0;
  for (const pod of pods) {
    prefixQueries += pod.engine.stats.prefixCacheQueries;
    prefixHits += pod.engine.stats.prefixCacheHits;
    pod.engine.close();
  }
  return {
    pods: specs,
    records,
    windowTokens,
    windowMs: lastArrival - firstArrival,
    spanMs: lastDone - firstArrival,
    prefixQueries,
    prefixHits,
    meanRunning: runningSum.map((v) => (samples > 0 ? v / samples : 0)),
    meanWaiting: waitingSum.map((v) => (samples > 0 ? v / samples : 0)),
    events: q.processed,
  };
}
