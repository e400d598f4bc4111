/**
 * Randomness for pickers and tie-breaks. GIE uses math/rand (PCG); we use the project's one seeded generator
 * (src/common/random.ts, sfc32), reproducible for tests given a fixed seed.
 */

export { createRandom, type RandomSource } from "../common/random.js";

/** Anything with a [0,1) `random()` method, e.g. a PluginHandle (no bound closure needed). */
export interface RandomProvider {
  random(): number;
}

/** In-place Fisher–Yates shuffle of `items[0..length)`. */
export function shuffleInPlace<T>(items: T[], rng: RandomProvider, length = items.length): void {
  for (let i = length - 1; i > 0; i--) {
    const j = Math.floor(rng.random() * (i + 1));
    const tmp = items[i]!;
    items[i] = items[j]!;
    items[j] = tmp;
  }
}
