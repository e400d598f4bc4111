/**
 * Seeded generators for the fuzz suite. Every fuzz test takes its seed from $SWITCHYARD_FUZZ_SEED (default a fixed
 * number) and prints it on failure, so a failing case can be replayed exactly; the case count is bounded
 * ($SWITCHYARD_FUZZ_CASES scales it) so CI stays well under a minute for the whole folder.
 */
import { createRandom } from "../../src/scheduling/index.js";

export const SEED = Number(process.env.SWITCHYARD_FUZZ_SEED ?? 20261207);
const SCALE = Number(process.env.SWITCHYARD_FUZZ_SCALE ?? 1);
export const cases = (n: number) => Math.max(1, Math.round(n * SCALE));

export class Gen {
  readonly #r: () => number;
  constructor(seed: number) {
    this.#r = createRandom(seed);
  }
  float(): number {
    return this.#r();
  }
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.#r() * (hi - lo + 1));
  }
  bool(p = 0.5): boolean {
    return this.#r() < p;
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(0, xs.length - 1)]!;
  }
  bytes(n: number): Buffer {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = this.int(0, 255);
    return b;
  }
  /** Mostly printable text, with some control characters, quotes, escapes and multi-byte code points. */
  text(max: number): string {
    const n = this.int(0, max);
    const alphabet = [
      "a",
      "Z",
      "0",
      " ",
      '"',
      "\\",
      "\n",
      "\t",
      "{",
      "}",
      "[",
      "]",
      ":",
      ",",
      "é",
      "\u0000",
      "𝄞",
      "#",
      "=",
      "-",
      ".",
    ];
    let s = "";
    for (let i = 0; i < n; i++) s += this.pick(alphabet);
    return s;
  }
  /** A mutation of `text`: byte flips, cuts, duplicated or deleted lines, inserted junk. */
  mutate(text: string): string {
    let s = text;
    const ops = this.int(1, 4);
    for (let k = 0; k < ops; k++) {
      const at = this.int(0, s.length);
      switch (this.int(0, 6)) {
        case 0:
          s = s.slice(0, at); // truncation
          break;
        case 1:
          s = s.slice(0, at) + this.text(20) + s.slice(at);
          break;
        case 2: {
          const lines = s.split("\n");
          const i = this.int(0, lines.length - 1);
          lines.splice(i, 0, ...Array(this.int(1, 3)).fill(lines[i] ?? ""));
          s = lines.join("\n");
          break;
        }
        case 3: {
          const lines = s.split("\n");
          lines.splice(this.int(0, lines.length - 1), 1);
          s = lines.join("\n");
          break;
        }
        case 4:
          s = s.replace(
            /\d+(\.\d+)?/,
            this.pick(["-1", "NaN", "+Inf", "-Inf", "1e309", "-0.5", "99999999999999999999", ""]),
          );
          break;
        case 5:
          s = s.slice(0, at) + String.fromCharCode(this.int(0, 0xffff)) + s.slice(at + 1);
          break;
        default:
          s = s + s.slice(0, this.int(0, 200));
      }
    }
    return s;
  }
}

/** Runs `body` for n cases with per-case generators, naming the seed and case of the first failure. */
export async function forCases(name: string, n: number, body: (g: Gen, i: number) => void | Promise<void>) {
  for (let i = 0; i < n; i++) {
    const g = new Gen(SEED * 1000 + i);
    try {
      await body(g, i);
    } catch (err) {
      throw new Error(`${name}: case ${i} failed (replay: SWITCHYARD_FUZZ_SEED=${SEED}): ${(err as Error).message}`, {
        cause: err,
      });
    }
  }
}
