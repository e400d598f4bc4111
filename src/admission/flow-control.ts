/**
 * Priority flow control (docs/design/scheduling.md §8): while the pool is saturated, requests WAIT in a bounded
 * in-memory queue instead of failing, and are dispatched — then scheduled on fresh metrics (late binding) — as soon as
 * an endpoint has capacity again.
 *
 * Dispatch order:
 * 1. strict priority bands: a higher band always goes first;
 * 2. within a band, fairness among tenants (flows): round-robin by default — one request per tenant in turn, so a
 *    tenant with a deep backlog cannot starve a light one (GIE's default, global-strict, serves the band in arrival
 *    order, which lets one bulk tenant delay everyone); `global-strict-fairness-policy` is available;
 * 3. FIFO within a tenant.
 *
 * When dispatch may happen: the head request's candidates are checked with the saturation detector on a short
 * unref'd timer (the metrics refresh interval, clamped to 10–50 ms, running only while something is queued) and
 * whenever a request finishes. Metrics lag the dispatches they cause by up to one scrape, so draining a long queue
 * the moment saturation clears would release the whole backlog onto pods that are about to be busy again (a
 * thundering herd). Dispatch therefore spends credits: one per candidate endpoint per metrics refresh, plus one per
 * finished request — never more than the pool can plausibly absorb before the next scrape shows the effect.
 *
 * Limits: TTL (defaultRequestTTL) → SY_QUEUE_TIMEOUT 503; global and per-band count/byte limits → SY_QUEUE_FULL 429;
 * an aborted signal (Envoy closed the stream) removes the request at once → SY_CLIENT_DISCONNECTED. Every structure
 * is an intrusive linked list, so removal from the middle is O(1) and nothing lingers after a request leaves.
 */
import { SwitchyardError } from "../common/errors.js";
import type { Endpoint } from "../datastore/types.js";
import type { BandLimits, FlowControlSettings } from "./config.js";

/** GIE's queue outcome names (the `outcome` label of the flow-control queue-duration histogram). */
export type QueueOutcome =
  | "Dispatched"
  | "RejectedCapacity"
  | "EvictedTTL"
  | "EvictedContextCancelled"
  | "EvictedOther";

export interface QueuedRequestInfo {
  readonly requestId: string;
  readonly tenant: string;
  readonly priority: number;
  readonly bytes: number;
  readonly model: string;
  readonly targetModel: string;
}

export interface FlowControlHooks {
  /** A request entered the queue. */
  onEnqueue?(info: QueuedRequestInfo): void;
  /** A request left the queue (dispatched or evicted) after waiting `waitedMs`. */
  onDequeue?(info: QueuedRequestInfo, outcome: QueueOutcome, waitedMs: number): void;
  /** Time enqueue() spent deciding (GIE's enqueue-duration histogram): "Enqueued" or the rejection outcome. */
  onEnqueueDecided?(info: QueuedRequestInfo, outcome: "Enqueued" | QueueOutcome, durationMs: number): void;
  /** One dispatch cycle (expiry sweep + dispatch loop) took `durationMs`. */
  onDispatchCycle?(durationMs: number): void;
}

export interface FlowControllerOptions {
  readonly settings: FlowControlSettings;
  /** The saturation detector's verdict for these candidates now. */
  readonly isSaturated: (candidates: readonly Endpoint[]) => boolean;
  /** Monotonic ms (performance.now()); injectable for tests. */
  readonly now?: () => number;
  /** Re-check period while something is queued; clamped to [10, 50] ms. Default 20. */
  readonly intervalMs?: number;
  readonly hooks?: FlowControlHooks;
}

class Node<T> {
  prev: Node<T> | undefined;
  next: Node<T> | undefined;
  constructor(readonly value: T) {}
}

class LinkedList<T> {
  head: Node<T> | undefined;
  tail: Node<T> | undefined;
  size = 0;

  push(value: T): Node<T> {
    const node = new Node(value);
    this.#append(node);
    return node;
  }

  #append(node: Node<T>): void {
    node.prev = this.tail;
    node.next = undefined;
    if (this.tail) this.tail.next = node;
    else this.head = node;
    this.tail = node;
    this.size++;
  }

  remove(node: Node<T>): void {
    if (node.prev) node.prev.next = node.next;
    else this.head = node.next;
    if (node.next) node.next.prev = node.prev;
    else this.tail = node.prev;
    node.prev = node.next = undefined;
    this.size--;
  }

  moveToEnd(node: Node<T>): void {
    if (this.tail === node) return;
    this.remove(node);
    this.#append(node);
  }
}

interface Band {
  readonly priority: number;
  readonly limits: BandLimits;
  count: number;
  bytes: number;
  readonly flows: Map<string, Flow>;
  /** Flows with queued requests, in round-robin order. */
  readonly ring: LinkedList<Flow>;
}

interface Flow {
  readonly tenant: string;
  readonly band: Band;
  readonly items: LinkedList<Item>;
  ringNode: Node<Flow> | undefined;
}

interface Item {
  readonly seq: number;
  readonly info: QueuedRequestInfo;
  readonly candidates: () => readonly Endpoint[];
  readonly signal: AbortSignal;
  readonly enqueuedAt: number;
  readonly deadline: number;
  readonly flow: Flow;
  flowNode: Node<Item> | undefined;
  ageNode: Node<Item> | undefined;
  readonly resolve: () => void;
  readonly reject: (err: SwitchyardError) => void;
  readonly onAbort: () => void;
}

const MIN_INTERVAL_MS = 10;
const MAX_INTERVAL_MS = 50;

export class FlowController {
  readonly #settings: FlowControlSettings;
  readonly #isSaturated: (candidates: readonly Endpoint[]) => boolean;
  readonly #now: () => number;
  readonly #intervalMs: number;
  readonly #hooks: FlowControlHooks;
  readonly #bands = new Map<number, Band>();
  /** Band priorities, highest first. */
  #order: number[] = [];
  /** Every queued item in arrival order (= deadline order: one TTL for all). */
  readonly #age = new LinkedList<Item>();
  #count = 0;
  #bytes = 0;
  #seq = 0;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;
  #credits = 0;
  #creditCap = 1;
  #epoch = Number.NEGATIVE_INFINITY;
  #pumping = false;

  constructor(options: FlowControllerOptions) {
    this.#settings = options.settings;
    this.#isSaturated = options.isSaturated;
    this.#now = options.now ?? (() => performance.now());
    this.#intervalMs = Math.min(MAX_INTERVAL_MS, Math.max(MIN_INTERVAL_MS, options.intervalMs ?? 20));
    this.#hooks = options.hooks ?? {};
  }

  /** Requests queued right now. */
  get length(): number {
    return this.#count;
  }

  /** Body bytes queued right now. */
  get bytes(): number {
    return this.#bytes;
  }

  /** Requests queued in one priority band. */
  bandLength(priority: number): number {
    return this.#bands.get(priority)?.count ?? 0;
  }

  /** Tenants with queued requests in one band. */
  bandFlows(priority: number): number {
    return this.#bands.get(priority)?.ring.size ?? 0;
  }

  /** True when some request of this priority or higher is waiting: a new arrival must not overtake it. */
  hasWaitingAtOrAbove(priority: number): boolean {
    if (this.#count === 0) return false;
    const top = this.#order[0];
    return top !== undefined && top >= priority;
  }

  /**
   * Queues a request until it may be dispatched. Resolves at dispatch; rejects with SY_QUEUE_FULL (limits),
   * SY_QUEUE_TIMEOUT (TTL) or SY_CLIENT_DISCONNECTED (signal aborted). Checks dispatch once before returning, so a
   * request is queued only as long as it has to be.
   */
  enqueue(info: QueuedRequestInfo, candidates: () => readonly Endpoint[], signal: AbortSignal): Promise<void> {
    const started = this.#now();
    if (this.#closed)
      return Promise.reject(new SwitchyardError("SY_QUEUE_TIMEOUT", "flow control is shutting down; retry"));
    if (signal.aborted)
      return Promise.reject(
        new SwitchyardError("SY_CLIENT_DISCONNECTED", "client disconnected: request context cancelled"),
      );
    const band = this.#band(info.priority);
    const full = this.#capacityError(band, info.bytes);
    if (full) {
      this.#dropEmptyBand(band);
      this.#hooks.onDequeue?.(info, "RejectedCapacity", 0);
      this.#hooks.onEnqueueDecided?.(info, "RejectedCapacity", this.#now() - started);
      return Promise.reject(full);
    }
    const queued = new Promise<void>((resolve, reject) => {
      let flow = band.flows.get(info.tenant);
      if (!flow) {
        flow = { tenant: info.tenant, band, items: new LinkedList<Item>(), ringNode: undefined };
        band.flows.set(info.tenant, flow);
      }
      const now = this.#now();
      const ttl = this.#settings.defaultRequestTTLMs;
      const item: Item = {
        seq: this.#seq++,
        info,
        candidates,
        signal,
        enqueuedAt: now,
        deadline: ttl > 0 ? now + ttl : Number.POSITIVE_INFINITY,
        flow,
        flowNode: undefined,
        ageNode: undefined,
        resolve,
        reject,
        onAbort: () => this.#evict(item, "EvictedContextCancelled"),
      };
      item.flowNode = flow.items.push(item);
      item.ageNode = this.#age.push(item);
      if (!flow.ringNode) flow.ringNode = band.ring.push(flow);
      band.count++;
      band.bytes += info.bytes;
      this.#count++;
      this.#bytes += info.bytes;
      signal.addEventListener("abort", item.onAbort, { once: true });
      this.#hooks.onEnqueue?.(info);
      this.#startTimer();
    });
    this.#hooks.onEnqueueDecided?.(info, "Enqueued", this.#now() - started);
    this.pump();
    return queued;
  }

  /** A request finished: capacity freed, so one more dispatch is allowed before the next metrics refresh. */
  notifyCapacity(): void {
    if (this.#credits < this.#creditCap) this.#credits++;
    if (this.#count > 0) this.pump();
  }

  /** Evicts expired requests, then dispatches while the head requests' candidates have capacity. */
  pump(): void {
    if (this.#pumping || this.#count === 0) return;
    this.#pumping = true;
    const started = this.#now();
    try {
      this.#expire(this.#now());
      // One saturation verdict per candidate list per pump: the datastore returns the same array until the
      // endpoint set changes, so this is one detector call per pump in the common case.
      const verdicts = new Map<readonly Endpoint[], boolean>();
      const blocked = (item: Item): boolean => {
        const cands = item.candidates();
        this.#refreshCredits(cands);
        let saturated = verdicts.get(cands);
        if (saturated === undefined) {
          saturated = cands.length === 0 || this.#isSaturated(cands);
          verdicts.set(cands, saturated);
        }
        return saturated;
      };
      for (;;) {
        if (this.#count === 0) break;
        let dispatched = false;
        for (const priority of this.#order) {
          const band = this.#bands.get(priority)!;
          const item = this.#pick(band, blocked);
          if (item === undefined) continue;
          if (this.#credits <= 0) return;
          this.#credits--;
          const flow = item.flow;
          // The flow just served its head: it goes to the back of the ring so the next tenant is served next.
          if (this.#settings.fairness === "round-robin" && flow.ringNode) band.ring.moveToEnd(flow.ringNode);
          this.#remove(item);
          this.#hooks.onDequeue?.(item.info, "Dispatched", this.#now() - item.enqueuedAt);
          item.resolve();
          dispatched = true;
          break;
        }
        if (!dispatched) break;
      }
    } finally {
      this.#pumping = false;
      if (this.#count === 0) this.#stopTimer();
      this.#hooks.onDispatchCycle?.(this.#now() - started);
    }
  }

  /** Rejects everything still queued (SY_QUEUE_TIMEOUT, retryable) and stops the timer. */
  close(): void {
    this.#closed = true;
    this.#stopTimer();
    for (let node = this.#age.head; node; node = this.#age.head) this.#evict(node.value, "EvictedOther");
  }

  /** New scrape results (a later updateTime) refill the credits: one per candidate endpoint. */
  #refreshCredits(cands: readonly Endpoint[]): void {
    let epoch = Number.NEGATIVE_INFINITY;
    for (const e of cands) {
      const t = e.metrics?.updateTime;
      if (t !== undefined && t > epoch) epoch = t;
    }
    if (epoch > this.#epoch) {
      this.#epoch = epoch;
      this.#creditCap = Math.max(1, cands.length);
      this.#credits = this.#creditCap;
    }
  }

  /** The next request this band would dispatch, or undefined when every flow's head is blocked. */
  #pick(band: Band, blocked: (item: Item) => boolean): Item | undefined {
    if (this.#settings.fairness === "global-strict") {
      let best: Item | undefined;
      for (let f = band.ring.head; f; f = f.next) {
        const head = f.value.items.head?.value;
        if (head && (best === undefined || head.seq < best.seq) && !blocked(head)) best = head;
      }
      return best;
    }
    for (let f = band.ring.head; f; f = f.next) {
      const head = f.value.items.head?.value;
      if (head && !blocked(head)) return head;
    }
    return undefined;
  }

  #expire(now: number): void {
    for (let node = this.#age.head; node && node.value.deadline <= now; node = this.#age.head)
      this.#evict(node.value, "EvictedTTL");
  }

  #evict(item: Item, outcome: Exclude<QueueOutcome, "Dispatched" | "RejectedCapacity">): void {
    if (item.flowNode === undefined) return;
    const waited = this.#now() - item.enqueuedAt;
    this.#remove(item);
    this.#hooks.onDequeue?.(item.info, outcome, waited);
    const seconds = (waited / 1000).toFixed(3);
    item.reject(
      outcome === "EvictedTTL"
        ? new SwitchyardError("SY_QUEUE_TIMEOUT", `request timed out in queue: request TTL expired after ${seconds}s`)
        : outcome === "EvictedContextCancelled"
          ? new SwitchyardError("SY_CLIENT_DISCONNECTED", "client disconnected: request context cancelled")
          : new SwitchyardError("SY_QUEUE_TIMEOUT", "evicted from queue: the endpoint picker is shutting down; retry"),
    );
  }

  #remove(item: Item): void {
    const flow = item.flow;
    const band = flow.band;
    item.signal.removeEventListener("abort", item.onAbort);
    flow.items.remove(item.flowNode!);
    item.flowNode = undefined;
    this.#age.remove(item.ageNode!);
    item.ageNode = undefined;
    band.count--;
    band.bytes -= item.info.bytes;
    this.#count--;
    this.#bytes -= item.info.bytes;
    if (flow.items.size === 0) {
      band.ring.remove(flow.ringNode!);
      flow.ringNode = undefined;
      band.flows.delete(flow.tenant);
    }
    this.#dropEmptyBand(band);
  }

  #band(priority: number): Band {
    let band = this.#bands.get(priority);
    if (!band) {
      band = {
        priority,
        limits: this.#settings.priorityBands.get(priority) ?? this.#settings.defaultPriorityBand,
        count: 0,
        bytes: 0,
        flows: new Map(),
        ring: new LinkedList<Flow>(),
      };
      this.#bands.set(priority, band);
      this.#order = [...this.#bands.keys()].sort((a, b) => b - a);
    }
    return band;
  }

  /** Bands exist only while they hold requests, so arbitrary priorities cannot accumulate state. */
  #dropEmptyBand(band: Band): void {
    if (band.count > 0 || this.#bands.get(band.priority) !== band) return;
    this.#bands.delete(band.priority);
    this.#order = this.#order.filter((p) => p !== band.priority);
  }

  #capacityError(band: Band, bytes: number): SwitchyardError | undefined {
    const s = this.#settings;
    const full = (what: string, limit: number) =>
      new SwitchyardError("SY_QUEUE_FULL", `flow-control queue at capacity: ${what} (limit ${limit})`);
    if (s.maxRequests > 0 && this.#count + 1 > s.maxRequests) return full("too many queued requests", s.maxRequests);
    if (s.maxBytes > 0 && this.#bytes + bytes > s.maxBytes) return full("too many queued bytes", s.maxBytes);
    const l = band.limits;
    if (l.maxRequests > 0 && band.count + 1 > l.maxRequests)
      return full(`too many queued requests at priority ${band.priority}`, l.maxRequests);
    if (l.maxBytes > 0 && band.bytes + bytes > l.maxBytes)
      return full(`too many queued bytes at priority ${band.priority}`, l.maxBytes);
    return undefined;
  }

  #startTimer(): void {
    if (this.#timer !== undefined) return;
    this.#timer = setInterval(() => this.pump(), this.#intervalMs);
    this.#timer.unref();
  }

  #stopTimer(): void {
    if (this.#timer === undefined) return;
    clearInterval(this.#timer);
    this.#timer = undefined;
  }
}
