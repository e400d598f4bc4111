/**
 * The simulated inference engine: vLLM-style continuous batching driven by ONE timer per simulator.
 *
 * Model (all latencies × `speed`):
 * - Requests wait in a FIFO queue; up to `maxNumSeqs` run. A request is admitted when its KV blocks fit (memory is
 *   strictly FIFO: a large request at the head is not overtaken, so it cannot starve) and its LoRA adapter holds or
 *   can take a GPU slot (LoRA-blocked requests are skipped, as in vLLM, but once the oldest one is blocked, other
 *   adapter requests stop being admitted until a slot drains, so no adapter starves).
 * - KV: blocks for the prompt (+ the first output token) are allocated at admission, one more block whenever decode
 *   crosses a block boundary. When a block cannot be found the most recently admitted sequence is preempted
 *   (vLLM v1 recompute preemption): its blocks are freed and it returns to the head of the queue; on re-admission
 *   its prompt blocks are usually still cached.
 * - Prefill is a delay before the first token: time-to-first-token + prefill-overhead + uncached context tokens ×
 *   prefill-time-per-token, scaled by the load factor; an adapter load adds its remaining load time first.
 * - Decode is a global step: every step emits one token for each decoding sequence; the step time is
 *   inter-token-latency × (1 + (time-factor-under-load − 1) × running / maxNumSeqs). A sequence that just produced
 *   its first token skips a step that comes less than half a step later, so gaps stay within [½, 1½] steps.
 * The timer is armed only while there is work, for the earliest of the next step and the next prefill completion,
 * so thousands of queued streams cost nothing and an idle simulator costs nothing.
 */
import { Histogram, ITL_BUCKETS, REQUEST_LATENCY_BUCKETS, TTFT_BUCKETS } from "./histogram.js";
import { KvCache } from "./kv-cache.js";
import { LoraSlots } from "./lora.js";
import type { ResolvedSimOptions } from "./options.js";
import { hashChunk, hashString } from "./random.js";

/**
 * Where the engine reads time and arms its one timer. The HTTP simulator uses REAL_CLOCK (performance.now,
 * setTimeout, microtasks); the virtual-time fleet simulation (src/fleetsim) injects a clock its event queue drives,
 * so the same engine model runs thousands of simulated seconds in one real second (docs/design/benchmarks.md §5).
 */
export interface EngineClock {
  /** Monotonic milliseconds. */
  now(): number;
  /** Wall-clock milliseconds since the epoch (only the LoRA info series' value uses it). */
  wallMs(): number;
  /** Calls `fn` after `delayMs`; the handle goes to clearTimer. Must not keep a process alive on its own. */
  setTimer(fn: () => void, delayMs: number): unknown;
  clearTimer(handle: unknown): void;
  /** Runs `fn` after the current call stack, at the same instant (a microtask in real time). */
  defer(fn: () => void): void;
}

export const REAL_CLOCK: EngineClock = {
  now: () => performance.now(),
  wallMs: () => Date.now(),
  setTimer(fn, delayMs) {
    const t = setTimeout(fn, delayMs);
    // The HTTP server keeps the process alive while it listens; the engine alone must not.
    t.unref();
    return t;
  },
  clearTimer: (handle) => clearTimeout(handle as NodeJS.Timeout),
  defer: (fn) => queueMicrotask(fn),
};

export type FinishReason = "length" | "stop";

/** What the HTTP layer hands the engine: already validated and capped. */
export interface EngineRequest {
  /** Adapter name, or undefined for the base model. */
  readonly lora: string | undefined;
  /** Text the prefix cache hashes (the rendered prompt). */
  readonly promptText: string;
  readonly promptTokens: number;
  /** Output tokens to generate, ≥ 1, already capped by the context window. */
  readonly maxTokens: number;
  /** Reported when `maxTokens` tokens were produced. */
  readonly finishReason: FinishReason;
  /** vLLM's `cache_salt`: mixed into the first block hash so tenants do not share cache. */
  readonly cacheSalt?: string;
}

/** Read-only view of a sequence for the HTTP layer. */
export interface SequenceInfo {
  readonly id: number;
  readonly promptTokens: number;
  readonly maxTokens: number;
  readonly finishReason: FinishReason;
  /** Output tokens produced so far. */
  readonly generated: number;
  /** Prompt tokens served from the prefix cache at first admission (usage.prompt_tokens_details.cached_tokens). */
  readonly cachedTokens: number;
}

/** Callbacks into the HTTP layer. They run inside the engine step and must not throw or block. */
export interface SequenceSink {
  onToken(seq: SequenceInfo): void;
  onFinish(seq: SequenceInfo): void;
}

/** Why the engine refused a request; the HTTP layer maps `status` to the response. */
export class EngineRejection extends Error {
  override readonly name = "EngineRejection";
  constructor(
    readonly status: number,
    readonly type: string,
    message: string,
  ) {
    super(message);
  }
}

const WAITING = 0;
const PREFILL = 1;
const DECODE = 2;
const DONE = 3;

/** Timers fire on libuv's cached loop clock and can look up to ~1 ms early against performance.now(). */
const DUE_SLACK_MS = 1;
/** Lingering lora_requests_info label sets kept (vLLM keeps all; a bound keeps a long run's scrape small). */
const MAX_LORA_SERIES = 64;

class Sequence implements SequenceInfo {
  readonly id: number;
  readonly lora: string | undefined;
  readonly promptTokens: number;
  readonly maxTokens: number;
  readonly finishReason: FinishReason;
  readonly hashes: number[];
  readonly sink: SequenceSink;
  readonly arrivedAt: number;
  /** Data-parallel engine the request is attributed to on /metrics. */
  readonly rank: number;
  state = WAITING;
  generated = 0;
  cachedTokens = -1;
  blocks: number[] = [];
  /** When the current prefill completes (first token after admission). */
  readyAt = 0;
  lastTokenAt = 0;
  cancelRequested = false;

  constructor(id: number, req: EngineRequest, hashes: number[], sink: SequenceSink, now: number, rank: number) {
    this.id = id;
    this.rank = rank;
    this.lora = req.lora;
    this.promptTokens = req.promptTokens;
    this.maxTokens = req.maxTokens;
    this.finishReason = req.finishReason;
    this.hashes = hashes;
    this.sink = sink;
    this.arrivedAt = now;
  }
}

export interface LoraSeries {
  readonly running: string;
  readonly waiting: string;
  /** Wall-clock seconds of the change that produced this label set. */
  readonly timestamp: number;
}

/** Counters and histograms exported on /metrics. */
export class EngineStats {
  promptTokens = 0;
  generationTokens = 0;
  prefixCacheQueries = 0;
  prefixCacheHits = 0;
  preemptions = 0;
  successStop = 0;
  successLength = 0;
  readonly ttft = new Histogram(TTFT_BUCKETS);
  readonly itl = new Histogram(ITL_BUCKETS);
  readonly e2e = new Histogram(REQUEST_LATENCY_BUCKETS);
  readonly queueTime = new Histogram(REQUEST_LATENCY_BUCKETS);
}

export class Engine {
  readonly options: ResolvedSimOptions;
  readonly stats = new EngineStats();
  readonly kv: KvCache;
  readonly lora: LoraSlots | undefined;
  #waiting: Sequence[] = [];
  #running: Sequence[] = [];
  #nextId = 1;
  readonly #clock: EngineClock;
  #timer: unknown;
  #timerAt = Number.POSITIVE_INFINITY;
  #nextStepAt = Number.POSITIVE_INFINITY;
  #admitDirty = false;
  #compact = false;
  #pumping = false;
  #again = false;
  #closed = false;
  #cancels: Sequence[] = [];
  #loraWaiting = new Map<string, number>();
  #loraRunning = new Map<string, number>();
  #loraSeries = new Map<string, LoraSeries>();
  #loraKey = "";
  #lastLoraMs = 0;
  /** Adapter sets are compared once per pass, so a request queued and admitted in one pass leaves no series. */
  #loraDirty = false;
  #pumpQueued = false;
  readonly #pumpTask = (): void => {
    this.#pumpQueued = false;
    this.#pump();
  };
  readonly #onTimer = (): void => {
    this.#timer = undefined;
    this.#timerAt = Number.POSITIVE_INFINITY;
    this.#pump();
  };

  constructor(options: ResolvedSimOptions, clock: EngineClock = REAL_CLOCK) {
    this.options = options;
    this.#clock = clock;
    this.kv = new KvCache(options.kvCacheSize, options.blockSize, options.enablePrefixCaching);
    if (options.loraModules.length > 0) {
      this.lora = new LoraSlots(options.maxLoras, options.maxCpuLoras, options.loraLoadTimeMs * options.speed);
      // vLLM 0.32 records the first label set at its first engine step; the first #loraChanged() does that here.
      if (options.loraInfoAtStart) this.#setLoraSeries("", "");
    }
  }

  get running(): number {
    return this.#running.length;
  }

  /** Per data-parallel engine: whether it has ever received a request (its gauges exist from then on). */
  readonly #rankUsed: boolean[] = [];

  /**
   * Running and waiting requests as the server's gauges show them at `now`, per data-parallel engine: a request is
   * counted only once it is visible under `gaugeLag` (vLLM 0.32 records a request's stats after its first engine
   * step, so a running request shows from its first token and a waiting one after one step). `undefined` for an
   * engine that exports no gauges yet (data parallelism, before its first request).
   */
  gaugeCounts(now: number): ({ running: number; waiting: number } | undefined)[] {
    const o = this.options;
    const n = o.dataParallelSize;
    const out: ({ running: number; waiting: number } | undefined)[] = [];
    for (let r = 0; r < n; r++)
      out.push(n > 1 && o.dpGaugesAfterFirstRequest && !this.#rankUsed[r] ? undefined : { running: 0, waiting: 0 });
    const lag = o.gaugeLag;
    const step = o.interTokenLatencyMs * o.speed;
    for (const seq of this.#running) {
      const c = out[seq.rank];
      if (c === undefined) continue;
      if (lag === "first-step" ? seq.state === DECODE : now - seq.arrivedAt >= lag) c.running++;
    }
    for (const seq of this.#waiting) {
      const c = out[seq.rank];
      if (c === undefined) continue;
      if (now - seq.arrivedAt >= (lag === "first-step" ? step : lag)) c.waiting++;
    }
    return out;
  }

  get waiting(): number {
    return this.#waiting.length;
  }

  /** Label sets of vllm:lora_requests_info, oldest first; the one with the largest timestamp is current. */
  loraSeries(): readonly LoraSeries[] {
    return [...this.#loraSeries.values()];
  }

  /**
   * Queues a request. Throws EngineRejection with 429 when the waiting queue is full, 400 when the request could
   * never fit in the KV cache, 503 after close().
   */
  submit(req: EngineRequest, sink: SequenceSink): SequenceInfo {
    if (this.#closed) throw new EngineRejection(503, "ServiceUnavailableError", "the simulator is shutting down");
    const bs = this.options.blockSize;
    const needed = Math.ceil((req.promptTokens + req.maxTokens) / bs);
    if (needed > this.kv.totalBlocks) {
      throw new EngineRejection(
        400,
        "BadRequestError",
        `the request needs ${needed} KV cache blocks (${req.promptTokens + req.maxTokens} tokens) but the cache holds only ${this.kv.totalBlocks}`,
      );
    }
    if (this.#waiting.length >= this.options.maxWaitingQueueLength) {
      throw new EngineRejection(
        429,
        "RateLimitError",
        `the waiting queue is full (${this.options.maxWaitingQueueLength} requests)`,
      );
    }
    const now = this.#clock.now();
    const id = this.#nextId++;
    const rank = (id - 1) % this.options.dataParallelSize;
    this.#rankUsed[rank] = true;
    const seq = new Sequence(id, req, this.#blockHashes(req), sink, now, rank);
    this.#waiting.push(seq);
    if (seq.lora !== undefined) this.#countLora(this.#loraWaiting, seq.lora, 1);
    this.#admitDirty = true;
    this.#schedulePump();
    return seq;
  }

  /** Withdraws a request (client went away): it leaves the queue or the batch and its blocks are freed. */
  cancel(info: SequenceInfo): void {
    const seq = info as Sequence;
    if (seq.state === DONE || seq.cancelRequested) return;
    seq.cancelRequested = true;
    this.#cancels.push(seq);
    this.#schedulePump();
  }

  /** Stops the timer and forgets every request; callers close their own connections. */
  close(): void {
    this.#closed = true;
    if (this.#timer !== undefined) this.#clock.clearTimer(this.#timer);
    this.#timer = undefined;
    for (const seq of this.#waiting) seq.state = DONE;
    for (const seq of this.#running) seq.state = DONE;
    this.#waiting = [];
    this.#running = [];
  }

  #blockHashes(req: EngineRequest): number[] {
    const text = req.promptText;
    const chunk = this.options.blockSize * 4;
    const full = Math.floor(text.length / chunk);
    const hashes = new Array<number>(full);
    // Block 0 is keyed by adapter and salt, like vLLM's extra keys: different adapters never share KV.
    let parent = hashString(`${req.lora ?? ""}\u0000${req.cacheSalt ?? ""}`);
    for (let i = 0; i < full; i++) {
      parent = hashChunk(text, i * chunk, (i + 1) * chunk, parent);
      hashes[i] = parent;
    }
    return hashes;
  }

  /**
   * Work triggered by submit/cancel runs in a microtask: the caller finishes writing response headers before the
   * first token can be emitted (a zero-latency simulator would otherwise emit inside submit()), and a burst of
   * calls in one tick costs one pass.
   */
  #schedulePump(): void {
    if (this.#pumpQueued) return;
    this.#pumpQueued = true;
    this.#clock.defer(this.#pumpTask);
  }

  #pump(): void {
    if (this.#closed) return;
    if (this.#pumping) {
      this.#again = true;
      return;
    }
    this.#pumping = true;
    let now = 0;
    try {
      do {
        this.#again = false;
        now = this.#clock.now();
        this.#step(now);
      } while (this.#again);
    } finally {
      this.#pumping = false;
    }
    // The first pass with work in it is the first engine step: vLLM records its first LoRA label set then.
    if (this.#loraDirty || (this.lora !== undefined && this.#loraSeries.size === 0 && this.#running.length > 0))
      this.#loraChanged();
    this.#arm(now);
  }

  #step(now: number): void {
    if (this.#cancels.length > 0) this.#applyCancels(now);
    if (now + DUE_SLACK_MS >= this.#nextStepAt) this.#decodeStep(now);
    const running = this.#running;
    for (let i = 0; i < running.length; i++) {
      const seq = running[i]!;
      if (seq.state === PREFILL && !seq.cancelRequested && now + DUE_SLACK_MS >= seq.readyAt)
        this.#completePrefill(seq, now);
    }
    if (this.#compact) this.#compactRunning();
    if (this.#admitDirty) this.#admit(now);
    // A zero-latency admission is already due: go round again rather than waiting for a timer.
    for (const seq of this.#running) if (seq.state === PREFILL && now + DUE_SLACK_MS >= seq.readyAt) this.#again = true;
  }

  #applyCancels(now: number): void {
    const cancels = this.#cancels;
    this.#cancels = [];
    for (const seq of cancels) {
      if (seq.state === DONE) continue;
      if (seq.state === WAITING) {
        const i = this.#waiting.indexOf(seq);
        if (i !== -1) this.#waiting.splice(i, 1);
        if (seq.lora !== undefined) this.#countLora(this.#loraWaiting, seq.lora, -1);
      } else {
        const i = this.#running.indexOf(seq);
        if (i !== -1) this.#running.splice(i, 1);
        this.#release(seq, now);
      }
      seq.state = DONE;
      this.#admitDirty = true;
    }
    if (this.#running.every((s) => s.state !== DECODE)) this.#nextStepAt = Number.POSITIVE_INFINITY;
  }

  #itl(): number {
    const o = this.options;
    return o.interTokenLatencyMs * o.speed * this.#loadFactor();
  }

  #loadFactor(): number {
    const o = this.options;
    return 1 + ((o.timeFactorUnderLoad - 1) * Math.min(this.#running.length, o.maxNumSeqs)) / o.maxNumSeqs;
  }

  #decodeStep(now: number): void {
    const itl = this.#itl();
    const halfStep = itl / 2 - DUE_SLACK_MS;
    const running = this.#running;
    const bs = this.options.blockSize;
    for (let i = 0; i < running.length; i++) {
      const seq = running[i]!;
      if (seq.state !== DECODE || seq.cancelRequested || now - seq.lastTokenAt < halfStep) continue;
      // The token about to be produced must have a KV slot.
      if (!this.#ensureBlocks(seq, Math.ceil((seq.promptTokens + seq.generated + 1) / bs), now)) {
        // `seq` preempted itself and left the array: the next sequence now sits at index i.
        i--;
        continue;
      }
      this.#emit(seq, now);
    }
    if (this.#compact) this.#compactRunning();
    let decoding = false;
    for (const seq of running) if (seq.state === DECODE) decoding = true;
    this.#nextStepAt = decoding ? now + this.#itl() : Number.POSITIVE_INFINITY;
  }

  /** Grows `seq` to `blocks` blocks, preempting the newest sequences as needed; false if `seq` itself was preempted. */
  #ensureBlocks(seq: Sequence, blocks: number, now: number): boolean {
    while (seq.blocks.length < blocks) {
      const block = this.kv.allocOne();
      if (block !== -1) {
        seq.blocks.push(block);
        continue;
      }
      let v = this.#running.length - 1;
      while (v >= 0 && this.#running[v]!.state === DONE) v--;
      const victim = this.#running[v]!;
      this.#preempt(victim, v, now);
      if (victim === seq) return false;
    }
    return true;
  }

  #preempt(seq: Sequence, index: number, now: number): void {
    this.#running.splice(index, 1);
    this.#release(seq, now);
    seq.state = WAITING;
    this.#waiting.unshift(seq);
    if (seq.lora !== undefined) this.#countLora(this.#loraWaiting, seq.lora, 1);
    this.stats.preemptions++;
    this.#admitDirty = true;
  }

  /** Frees what a running sequence holds: KV blocks and its adapter pin. */
  #release(seq: Sequence, now: number): void {
    this.kv.free(seq.blocks);
    seq.blocks = [];
    if (seq.lora !== undefined) {
      this.lora?.release(seq.lora, now);
      this.#countLora(this.#loraRunning, seq.lora, -1);
    }
  }

  #completePrefill(seq: Sequence, now: number): void {
    if (seq.generated === 0) this.stats.promptTokens += seq.promptTokens;
    this.kv.commit(seq.hashes, seq.blocks);
    seq.state = DECODE;
    this.#emit(seq, now);
    if (seq.state === DECODE && this.#nextStepAt === Number.POSITIVE_INFINITY) this.#nextStepAt = now + this.#itl();
  }

  #emit(seq: Sequence, now: number): void {
    seq.generated++;
    const stats = this.stats;
    stats.generationTokens++;
    if (seq.generated === 1) stats.ttft.observe((now - seq.arrivedAt) / 1000);
    else stats.itl.observe((now - seq.lastTokenAt) / 1000);
    seq.lastTokenAt = now;
    const done = seq.generated >= seq.maxTokens;
    if (done) {
      seq.state = DONE;
      this.#release(seq, now);
      if (seq.finishReason === "length") stats.successLength++;
      else stats.successStop++;
      stats.e2e.observe((now - seq.arrivedAt) / 1000);
      this.#compact = true;
      this.#admitDirty = true;
    }
    try {
      seq.sink.onToken(seq);
      if (done) seq.sink.onFinish(seq);
    } catch {
      // A sink is the HTTP layer's code and should not throw; if it does, drop the request, keep the engine alive.
      if (!done) this.cancel(seq);
    }
  }

  #compactRunning(): void {
    this.#compact = false;
    this.#running = this.#running.filter((s) => s.state !== DONE);
  }

  #admit(now: number): void {
    this.#admitDirty = false;
    const o = this.options;
    const bs = o.blockSize;
    const waiting = this.#waiting;
    const running = this.#running;
    let drainLoras = false;
    let i = 0;
    while (i < waiting.length && running.length < o.maxNumSeqs) {
      const seq = waiting[i]!;
      if (seq.lora !== undefined && (drainLoras || !this.lora!.canAcquire(seq.lora))) {
        drainLoras = true;
        i++;
        continue;
      }
      const context = seq.promptTokens + seq.generated;
      const needed = Math.ceil(Math.min(context + 1, seq.promptTokens + seq.maxTokens) / bs);
      // vLLM always recomputes the last prompt token, so a full-prompt hit still leaves one token of prefill.
      const hitLimit = Math.floor((seq.promptTokens - 1) / bs);
      const hits = this.kv.tryAllocate(seq.hashes, hitLimit, needed, seq.blocks);
      if (hits < 0) break;
      waiting.splice(i, 1);
      const cached = hits * bs;
      this.stats.prefixCacheQueries += context;
      this.stats.prefixCacheHits += cached;
      if (seq.cachedTokens < 0) {
        seq.cachedTokens = cached;
        this.stats.queueTime.observe((now - seq.arrivedAt) / 1000);
      }
      let start = now;
      if (seq.lora !== undefined) {
        start = this.lora!.acquire(seq.lora, now);
        this.#countLora(this.#loraWaiting, seq.lora, -1);
        this.#countLora(this.#loraRunning, seq.lora, 1);
      }
      running.push(seq);
      seq.state = PREFILL;
      const prefill = o.timeToFirstTokenMs + o.prefillOverheadMs + (context - cached) * o.prefillTimePerTokenMs;
      seq.readyAt = start + prefill * o.speed * this.#loadFactor();
    }
  }

  #arm(now: number): void {
    let at = this.#nextStepAt;
    for (const seq of this.#running) if (seq.state === PREFILL && seq.readyAt < at) at = seq.readyAt;
    if (at === Number.POSITIVE_INFINITY) {
      if (this.#timer !== undefined) this.#clock.clearTimer(this.#timer);
      this.#timer = undefined;
      this.#timerAt = at;
      return;
    }
    if (this.#timer !== undefined) {
      if (this.#timerAt <= at) return;
      this.#clock.clearTimer(this.#timer);
    }
    this.#timerAt = at;
    this.#timer = this.#clock.setTimer(this.#onTimer, Math.max(0, at - now));
  }

  #countLora(map: Map<string, number>, name: string, delta: number): void {
    const before = map.get(name) ?? 0;
    const after = before + delta;
    if (after <= 0) map.delete(name);
    else map.set(name, after);
    if ((before === 0) !== after <= 0) this.#loraChanged();
  }

  #loraChanged(): void {
    this.#loraDirty = false;
    const running = [...this.#loraRunning.keys()].sort().join(",");
    const waiting = [...this.#loraWaiting.keys()].sort().join(",");
    this.#setLoraSeries(running, waiting);
  }

  #setLoraSeries(running: string, waiting: string): void {
    const key = `${running}|${waiting}`;
    if (key === this.#loraKey && this.#loraSeries.size > 0) return;
    this.#loraKey = key;
    // Strictly increasing whole milliseconds, so "the series with the largest value is current" holds even for two
    // changes within one millisecond, and the value prints without float noise.
    const ms = Math.max(this.#clock.wallMs(), this.#lastLoraMs + 1);
    this.#lastLoraMs = ms;
    this.#loraSeries.delete(key);
    this.#loraSeries.set(key, { running, waiting, timestamp: ms / 1000 });
    if (this.#loraSeries.size > MAX_LORA_SERIES) {
      const oldest = this.#loraSeries.keys().next();
      if (!oldest.done) this.#loraSeries.delete(oldest.value);
    }
  }
}
