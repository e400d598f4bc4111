/**
 * A fixed-size ring of recent routing decisions for /debug/endpoints and `switchyard top`. Plain data only: the
 * director writes, the debug handler reads; prompts are never stored.
 */

export interface DecisionRecord {
  /** ms since epoch (formatted only when read, to keep the hot path cheap). */
  readonly time: number;
  readonly requestId: string;
  readonly model: string;
  readonly targetModel: string;
  readonly criticality: string;
  readonly priority: number;
  readonly outcome: "routed" | "rejected";
  readonly endpoints?: readonly string[];
  readonly error?: { readonly code: string; readonly status: number; readonly message: string };
  readonly scores?: readonly {
    readonly endpoint: string;
    readonly total: number;
    readonly scores: Readonly<Record<string, number>>;
  }[];
  readonly filtered?: readonly { readonly endpoint: string; readonly by: string }[];
  /** Endpoints the filters removed; `filtered` lists the first DECISION_DETAIL of them. */
  readonly filteredCount?: number;
  /** Endpoints scored; `scores` holds the chosen ones and the best others, at most DECISION_DETAIL rows. */
  readonly candidates?: number;
  readonly schedulingMicros?: number;
}

/**
 * Rows of scores and filter verdicts a decision record keeps. A record outlives its request (the ring holds the
 * last 50), so what it keeps must not grow with the pool.
 */
export const DECISION_DETAIL = 10;

export class DecisionLog {
  readonly #items: (DecisionRecord | undefined)[];
  #next = 0;
  #count = 0;

  constructor(readonly capacity = 50) {
    this.#items = new Array(capacity);
  }

  push(record: DecisionRecord): void {
    this.#items[this.#next] = record;
    this.#next = (this.#next + 1) % this.capacity;
    if (this.#count < this.capacity) this.#count++;
  }

  /** Newest first. */
  recent(limit = this.capacity): DecisionRecord[] {
    const out: DecisionRecord[] = [];
    for (let i = 1; i <= Math.min(limit, this.#count); i++) {
      const item = this.#items[(this.#next - i + this.capacity) % this.capacity];
      if (item) out.push(item);
    }
    return out;
  }
}
