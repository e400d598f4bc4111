/**
 * Model-name write-back on the response path: when the request was rewritten to a target model, the server
 * answers `"model":"<target>"` and the client must see the name it asked for. GIE does a byte replace of
 * `"model":"<target>"` and `"model": "<target>"` on each chunk (docs/design/ext-proc-protocol.md §5.10), which misses
 * an occurrence cut by a chunk boundary. This replacer holds back only a tail that could still become a match,
 * so chunks flow on at once, nothing is missed, and a chunk with no match and no suspicious tail is returned
 * as-is (zero copy).
 *
 * JSON escaping makes the needle safe: inside generated text the same characters appear as `\"model\":\"…`,
 * which never matches.
 */

const QUOTE = 0x22;
const PREFIX = Buffer.from('"model"', "latin1");
const EMPTY = Buffer.alloc(0);

/** JSON text of `s` with every non-ASCII UTF-16 unit as `\uXXXX`, as Python's json.dumps (ensure_ascii) writes it. */
function asciiJson(s: string): string {
  return JSON.stringify(s).replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

export class ModelNameWriteBack {
  readonly #needles: readonly Buffer[];
  readonly #replacements: readonly Buffer[];
  /** Longest needle − 1: the most a partial match can occupy at the end of a chunk. */
  readonly #maxPartial: number;
  #carry: Buffer | undefined;

  constructor(targetModel: string, clientModel: string) {
    const needles: Buffer[] = [];
    const replacements: Buffer[] = [];
    const client = JSON.stringify(clientModel);
    const encodings = new Set([JSON.stringify(targetModel), asciiJson(targetModel)]);
    for (const target of encodings) {
      for (const sep of [":", ": "]) {
        needles.push(Buffer.from(`"model"${sep}${target}`, "utf8"));
        replacements.push(Buffer.from(`"model"${sep}${client}`, "utf8"));
      }
    }
    this.#needles = needles;
    this.#replacements = replacements;
    this.#maxPartial = Math.max(...needles.map((b) => b.length)) - 1;
  }

  /** Bytes held back waiting for the next chunk. */
  get heldBytes(): number {
    return this.#carry?.length ?? 0;
  }

  /**
   * Returns the bytes to pass on for `chunk`. With `endOfStream` everything held is flushed. The concatenation
   * of all outputs equals the concatenation of all inputs with every complete occurrence replaced.
   */
  process(chunk: Buffer, endOfStream: boolean): Buffer {
    const carry = this.#carry;
    this.#carry = undefined;
    const region = carry === undefined ? chunk : chunk.length === 0 ? carry : Buffer.concat([carry, chunk]);
    const n = region.length;
    let pieces: Buffer[] | undefined;
    let last = 0;
    let i = region.indexOf(PREFIX, 0);
    while (i !== -1) {
      const k = this.#matchAt(region, i);
      if (k === -1) {
        i = region.indexOf(PREFIX, i + 1);
        continue;
      }
      pieces ??= [];
      pieces.push(region.subarray(last, i), this.#replacements[k]!);
      last = i + this.#needles[k]!.length;
      i = region.indexOf(PREFIX, last);
    }
    const cut = endOfStream ? n : this.#partialStart(region, last);
    if (cut < n) this.#carry = region.subarray(cut);
    if (pieces === undefined) return cut === n ? region : cut === 0 ? EMPTY : region.subarray(0, cut);
    pieces.push(region.subarray(last, cut));
    return Buffer.concat(pieces);
  }

  #matchAt(region: Buffer, i: number): number {
    const needles = this.#needles;
    for (let k = 0; k < needles.length; k++) {
      const needle = needles[k]!;
      const end = i + needle.length;
      if (end <= region.length && region.compare(needle, 0, needle.length, i, end) === 0) return k;
    }
    return -1;
  }

  /** Start of the longest tail (at or after `from`) that is a proper prefix of some needle; `region.length` if none. */
  #partialStart(region: Buffer, from: number): number {
    const n = region.length;
    for (let p = Math.max(from, n - this.#maxPartial); p < n; p++) {
      if (region[p] !== QUOTE) continue;
      const len = n - p;
      for (const needle of this.#needles) {
        if (len < needle.length && region.compare(needle, 0, len, p, n) === 0) return p;
      }
    }
    return n;
  }
}
