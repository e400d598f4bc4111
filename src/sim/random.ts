/**
 * Seeded randomness and string hashing for the simulator. Everything the simulator draws (output lengths, words,
 * failure and hang decisions) comes from these generators so that `--seed` makes a run replayable.
 */
import { createU32Random } from "../common/random.js";

/** The project's seeded generator (src/common/random.ts, sfc32) with the draws the simulator needs. */
export class Rng {
  readonly #u32: () => number;

  constructor(seed: number) {
    this.#u32 = createU32Random(seed);
  }

  nextU32(): number {
    return this.#u32();
  }

  /** Uniform in [0, 1). */
  next(): number {
    return this.nextU32() / 4294967296;
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** Standard normal via Box–Muller (one value per call; the twin is dropped to keep the state simple). */
  normal(): number {
    const u = 1 - this.next();
    const v = this.next();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }
}

const TWO_32 = 4294967296;

/**
 * 53-bit hash of `text[start, end)` chained onto `parent` (cyrb53 with the parent folded into its initial state).
 * Chaining makes block i's hash depend on every earlier block, which is what makes a prefix cache a *prefix* cache.
 * Iterates char codes in place: hashing a 40k-character prompt allocates nothing.
 */
export function hashChunk(text: string, start: number, end: number, parent: number): number {
  let h1 = 0xdeadbeef ^ (parent >>> 0);
  let h2 = 0x41c6ce57 ^ (Math.floor(parent / TWO_32) >>> 0);
  for (let i = start; i < end; i++) {
    const ch = text.charCodeAt(i);
    h1 = Math.imul(h1 ^ ch, 2654435761);
    h2 = Math.imul(h2 ^ ch, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507);
  h1 ^= Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507);
  h2 ^= Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return TWO_32 * (2097151 & h2) + (h1 >>> 0);
}

/** Hash of a whole string, e.g. to derive a per-request seed. */
export function hashString(text: string, parent = 0): number {
  return hashChunk(text, 0, text.length, parent);
}
