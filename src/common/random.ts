/**
 * The one seeded pseudo-random generator: sfc32 (small, fast, 128-bit state, passes PractRand far beyond what
 * pickers and simulators need) seeded through splitmix32, which spreads one seed over all four state words so
 * seeds 1 and 2 give unrelated streams and sfc32 never starts degenerate. Pickers' tie-breaks
 * (docs/design/scheduling.md §4) and the simulator's `--seed` replays draw from it.
 */
import { randomBytes } from "node:crypto";

/** A [0, 1) random source. */
export type RandomSource = () => number;

const TWO_POW_32 = 4294967296;

/** A uint32 generator fully determined by `seed` (the low 32 bits are used); a random seed when omitted. */
export function createU32Random(seed?: number): () => number {
  let s = seed === undefined ? randomBytes(4).readUInt32LE(0) : seed >>> 0;
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
  const sfc32 = (): number => {
    const t = (((a + b) | 0) + d) | 0;
    d = (d + 1) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (c << 21) | (c >>> 11);
    c = (c + t) | 0;
    return t >>> 0;
  };
  // Discard the first outputs: sfc32's authors recommend a short warm-up.
  for (let i = 0; i < 12; i++) sfc32();
  return sfc32;
}

/** A [0, 1) generator fully determined by `seed` (any finite number; the low 32 bits are used). */
export function createRandom(seed?: number): RandomSource {
  const u32 = createU32Random(seed);
  return () => u32() / TWO_POW_32;
}
