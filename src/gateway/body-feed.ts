/**
 * A request body that arrives piecewise (from the client, or echoed back by the EPP) and may have to be sent more
 * than once: a connection failure on the first endpoint means replaying it to the next one, as Envoy's retry does
 * from its request buffer. Chunks are kept by reference (no copies) until `stopRetaining()`.
 *
 * Readers are async iterators rather than Readables on purpose: undici derives a content-length from a Readable
 * that has already ended, while framing must follow the headers alone — Envoy sends chunked when the EPP did not
 * set content-length.
 */

export type PressureListener = (paused: boolean) => void;

/** Queued-but-unsent chunks per reader above which the producer is asked to pause. */
const HIGH_WATER_CHUNKS = 16;

interface Waiter {
  resolve(result: IteratorResult<Buffer>): void;
  reject(err: Error): void;
}

class FeedReader implements AsyncIterableIterator<Buffer> {
  queue: Buffer[];
  head = 0;
  waiter: Waiter | undefined;
  detached = false;
  readonly #feed: BodyFeed;

  constructor(feed: BodyFeed, initial: Buffer[]) {
    this.#feed = feed;
    this.queue = initial;
  }

  /** Called by the feed for each new chunk; returns false when this reader is backed up. */
  offer(chunk: Buffer): boolean {
    const waiter = this.waiter;
    if (waiter !== undefined) {
      this.waiter = undefined;
      waiter.resolve({ value: chunk, done: false });
      return true;
    }
    this.queue.push(chunk);
    return this.queue.length - this.head < HIGH_WATER_CHUNKS;
  }

  /** Superseded by a replay: ends at once, whatever it had queued. */
  detach(): void {
    this.detached = true;
    this.queue = [];
    this.head = 0;
    this.wake();
  }

  wake(): void {
    const waiter = this.waiter;
    if (waiter === undefined) return;
    this.waiter = undefined;
    const err = this.#feed.error;
    if (err !== undefined) waiter.reject(err);
    else waiter.resolve({ value: undefined, done: true });
  }

  next(): Promise<IteratorResult<Buffer>> {
    if (this.head < this.queue.length) {
      const chunk = this.queue[this.head]!;
      this.head++;
      if (this.head === this.queue.length) {
        this.queue = [];
        this.head = 0;
        this.#feed.drained(this);
      }
      return Promise.resolve({ value: chunk, done: false });
    }
    const err = this.#feed.error;
    if (err !== undefined) return Promise.reject(err);
    if (this.#feed.ended || this.detached) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve, reject) => {
      this.waiter = { resolve, reject };
    });
  }

  return(): Promise<IteratorResult<Buffer>> {
    this.detached = true;
    this.queue = [];
    this.head = 0;
    this.#feed.drained(this);
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): this {
    return this;
  }
}

export class BodyFeed {
  #chunks: Buffer[] | undefined = [];
  #ended = false;
  #error: Error | undefined;
  #reader: FeedReader | undefined;
  #paused = false;
  readonly #onPressure: PressureListener | undefined;

  /** `onPressure(true)` asks the producer to pause; `onPressure(false)` to resume. */
  constructor(onPressure?: PressureListener) {
    this.#onPressure = onPressure;
  }

  get ended(): boolean {
    return this.#ended;
  }

  get error(): Error | undefined {
    return this.#error;
  }

  push(chunk: Buffer): void {
    if (this.#ended || chunk.length === 0) return;
    this.#chunks?.push(chunk);
    const reader = this.#reader;
    if (reader !== undefined && !reader.detached && !reader.offer(chunk)) this.#setPaused(true);
  }

  end(): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#reader?.wake();
  }

  /** The producer failed: the active reader throws, so the upstream request is aborted rather than truncated. */
  fail(err: Error): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#error = err;
    this.#reader?.wake();
  }

  /** After this, chunks go only to the current reader; a new `open()` is no longer possible. */
  stopRetaining(): void {
    this.#chunks = undefined;
  }

  get canReplay(): boolean {
    return this.#chunks !== undefined;
  }

  /** A fresh iterator over the whole body so far plus everything still to come; detaches any earlier reader. */
  open(): AsyncIterableIterator<Buffer> {
    if (this.#chunks === undefined) throw new Error("body can no longer be replayed");
    this.#reader?.detach();
    const reader = new FeedReader(this, this.#chunks.slice());
    this.#reader = reader;
    this.#setPaused(false);
    return reader;
  }

  /** A reader consumed its backlog (or went away): the producer may continue. */
  drained(reader: FeedReader): void {
    if (reader === this.#reader || reader.detached) this.#setPaused(false);
  }

  #setPaused(paused: boolean): void {
    if (this.#paused === paused) return;
    this.#paused = paused;
    this.#onPressure?.(paused);
  }
}
