/**
 * Virtual time for the fleet simulation (docs/design/benchmarks.md §5): a binary-heap event queue and the
 * EngineClock the simulated pods run on. Events at the same instant run in the order they were scheduled, so a run
 * is a pure function of its inputs and seed — no wall-clock read anywhere on the simulated path.
 */
import type { EngineClock } from "../sim/engine.js";

interface Event {
  readonly at: number;
  readonly seq: number;
  readonly fn: () => void;
  cancelled: boolean;
}

/** Wall-clock epoch the virtual clock reports for `wallMs()` (fixed, so LoRA series timestamps are reproducible). */
const VIRTUAL_EPOCH_MS = Date.UTC(2026, 0, 1);

export class EventQueue {
  #heap: Event[] = [];
  #seq = 0;
  #now = 0;
  #processed = 0;

  /** Current virtual time, ms. */
  get now(): number {
    return this.#now;
  }

  /** Events run so far (cancelled ones excluded). */
  get processed(): number {
    return this.#processed;
  }

  get pending(): number {
    return this.#heap.length;
  }

  /** Schedules `fn` at absolute time `at` (clamped to now: the past is not reachable). */
  at(at: number, fn: () => void): Event {
    const e: Event = { at: Math.max(at, this.#now), seq: this.#seq++, fn, cancelled: false };
    const h = this.#heap;
    h.push(e);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!before(e, h[p]!)) break;
      h[i] = h[p]!;
      i = p;
    }
    h[i] = e;
    return e;
  }

  after(delayMs: number, fn: () => void): Event {
    return this.at(this.#now + delayMs, fn);
  }

  /** Runs events in time order until the queue is empty or `stop()` returns true (checked between events). */
  run(stop?: () => boolean): void {
    const h = this.#heap;
    while (h.length > 0) {
      const e = this.#pop();
      if (e.cancelled) continue;
      this.#now = e.at;
      this.#processed++;
      e.fn();
      if (stop?.()) return;
    }
  }

  #pop(): Event {
    const h = this.#heap;
    const top = h[0]!;
    const last = h.pop()!;
    if (h.length > 0) {
      let i = 0;
      const n = h.length;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= n) break;
        const r = l + 1;
        const c = r < n && before(h[r]!, h[l]!) ? r : l;
        if (!before(h[c]!, last)) break;
        h[i] = h[c]!;
        i = c;
      }
      h[i] = last;
    }
    return top;
  }
}

function before(a: Event, b: Event): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}

/** The engine's clock on the event queue: timers are events, deferred work runs at the same instant, next. */
export function virtualClock(q: EventQueue): EngineClock {
  return {
    now: () => q.now,
    wallMs: () => VIRTUAL_EPOCH_MS + q.now,
    setTimer: (fn, delayMs) => q.after(delayMs, fn),
    clearTimer(handle) {
      (handle as Event).cancelled = true;
    },
    defer(fn) {
      q.after(0, fn);
    },
  };
}
