/**
 * Per-key log rate limiting. A pod that stays down is scraped 20 times a second; one warn line per failure would
 * drown every other line, and logging nothing after the first would hide that it is still down. So: the first
 * event for a key is logged, then at most one line per key per interval, carrying how many were suppressed.
 */

export const DEFAULT_LOG_THROTTLE_MS = 30_000;

export interface LogThrottleOptions {
  /** At most one line per key per this many ms. Default 30 s. */
  readonly intervalMs?: number;
  /** Clock in ms; injectable for tests. Default Date.now. */
  readonly now?: () => number;
  /**
   * Keys tracked at once; the oldest is forgotten beyond this so a churning key space (pods come and go) cannot
   * grow memory without bound. Default 10 000.
   */
  readonly maxKeys?: number;
}

interface KeyState {
  lastLoggedAt: number;
  suppressed: number;
}

export class LogThrottle {
  readonly #intervalMs: number;
  readonly #now: () => number;
  readonly #maxKeys: number;
  readonly #keys = new Map<string, KeyState>();

  constructor(options: LogThrottleOptions = {}) {
    const interval = options.intervalMs ?? DEFAULT_LOG_THROTTLE_MS;
    if (typeof interval !== "number" || !Number.isFinite(interval) || interval < 0)
      throw new TypeError(`intervalMs must be a non-negative finite number, got ${String(options.intervalMs)}`);
    const maxKeys = options.maxKeys ?? 10_000;
    if (!Number.isInteger(maxKeys) || maxKeys < 1)
      throw new TypeError(`maxKeys must be a positive integer, got ${String(options.maxKeys)}`);
    this.#intervalMs = interval;
    this.#now = options.now ?? Date.now;
    this.#maxKeys = maxKeys;
  }

  /**
   * Records one event for `key`. Returns the number of events suppressed since the last logged line when this
   * one should be logged, or undefined when it should be suppressed.
   */
  take(key: string): number | undefined {
    const now = this.#now();
    const state = this.#keys.get(key);
    if (state === undefined) {
      if (this.#keys.size >= this.#maxKeys) {
        const oldest = this.#keys.keys().next().value;
        if (oldest !== undefined) this.#keys.delete(oldest);
      }
      this.#keys.set(key, { lastLoggedAt: now, suppressed: 0 });
      return 0;
    }
    if (now - state.lastLoggedAt >= this.#intervalMs) {
      const suppressed = state.suppressed;
      state.lastLoggedAt = now;
      state.suppressed = 0;
      return suppressed;
    }
    state.suppressed++;
    return undefined;
  }

  /**
   * Forgets `key` (the condition cleared, or the endpoint left) so its next event is logged at once. Returns the
   * events suppressed since its last logged line.
   */
  reset(key: string): number {
    const state = this.#keys.get(key);
    this.#keys.delete(key);
    return state?.suppressed ?? 0;
  }

  get size(): number {
    return this.#keys.size;
  }
}
