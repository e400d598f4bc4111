/**
 * Seedable [0,1) random source for pickers and tie-breaks. GIE uses math/rand (PCG); we use sfc32 seeded through
 * splitmix32: four 32-bit words of state, fast with Math.imul, and reproducible for tests given a fixed seed.
 */
import { randomBytes } from "node:crypto";

export type RandomSource = () => number;

const TWO_POW_32 = 4294967296;

/** Returns a [0,1) generator fully determined by `seed` (any finite number; the low 32 bits are used). */
export function createRandom(seed?: number): RandomSource {
  let s = seed === undefined ? randomBytes(4).readUInt32LE(0) : seed >>> 0;
  // splitmix32 spreads a small or zero seed across all state words, so sfc32 never starts degenerate.
  const next = (): number => {
    s = (s + 0x9e3779b9) | 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return (z ^ (z >>> 16)) >>> 0;
  };
  let a = next();
  let b = next();
  let c = next();
  let d = next();
  const sfc32: RandomSource = () => {
    const t = (((a + b) | 0) + d) | 0;
    d = (d + 1) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (c << 21) | (c >>> 11);
    c = (c + t) | 0;
    return (t >>> 0) / TWO_POW_32;
  };
  // Discard the first outputs: sfc32's authors recommend a short warm-up.
  for (let i = 0; i < 12; i++) sfc32();
  return sfc32;
}

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
