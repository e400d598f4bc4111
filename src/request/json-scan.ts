/**
 * A tolerant scanner over a UTF-8 JSON Buffer that locates the byte ranges of TOP-LEVEL values without building
 * the document. It exists so switchyard never re-serialises a request body (GIE always does,
 * docs/design/ext-proc-protocol.md §5.5 and §7): the model value is spliced in place, and large values such as
 * `messages` are sliced raw for prefix hashing.
 *
 * "Tolerant" means it never throws and never loops forever: on malformed input it stops and reports
 * `complete: false`, keeping the ranges found so far. It does not validate (the caller has already run
 * JSON.parse when validity matters); it only needs to find value boundaries, which depend on strings, brackets
 * and delimiters alone. Containers are skipped iteratively (no recursion), so nesting depth cannot overflow the
 * stack, and string bodies are skipped with native `indexOf`, so a 220 KB prompt costs a handful of memchr calls.
 */

/** Byte offsets into the scanned Buffer; `end` is exclusive. String values include their quotes. */
export interface JsonRange {
  readonly start: number;
  readonly end: number;
}

export interface TopLevelScan {
  /** One entry per requested key, in the order the keys were given; undefined when the key is absent. */
  readonly ranges: readonly (JsonRange | undefined)[];
  /** False when the buffer is not a well-delimited JSON object (ranges found before the problem are kept). */
  readonly complete: boolean;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const LBRACE = 0x7b;
const RBRACE = 0x7d;
const LBRACKET = 0x5b;
const RBRACKET = 0x5d;
const COLON = 0x3a;
const COMMA = 0x2c;

function isWs(b: number): boolean {
  return b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09;
}

/** True when [start, end) contains a backslash; bounded, unlike `buf.indexOf(x, start)` which runs to the end. */
function hasBackslash(buf: Buffer, start: number, end: number): boolean {
  if (end - start > 64) return buf.subarray(start, end).indexOf(BACKSLASH) !== -1;
  for (let i = start; i < end; i++) if (buf[i] === BACKSLASH) return true;
  return false;
}

/** First index at or after `pos` that is not JSON whitespace (may be `buf.length`). */
export function skipWhitespace(buf: Buffer, pos: number): number {
  const n = buf.length;
  let i = pos;
  while (i < n && isWs(buf[i]!)) i++;
  return i;
}

/**
 * `pos` is at an opening quote; returns the index just past the closing quote, or -1 when unterminated.
 * A quote is a terminator when preceded by an even number of backslashes (`\\"` ends the string, `\"` does not).
 */
export function skipString(buf: Buffer, pos: number): number {
  let from = pos + 1;
  for (;;) {
    const q = buf.indexOf(QUOTE, from);
    if (q === -1) return -1;
    let j = q - 1;
    while (j > pos && buf[j] === BACKSLASH) j--;
    // q - 1 - j backslashes immediately precede the quote.
    if (((q - 1 - j) & 1) === 0) return q + 1;
    from = q + 1;
  }
}

function skipContainer(buf: Buffer, pos: number): number {
  const n = buf.length;
  let depth = 0;
  let i = pos;
  while (i < n) {
    const c = buf[i]!;
    if (c === QUOTE) {
      i = skipString(buf, i);
      if (i < 0) return -1;
      continue;
    }
    if (c === LBRACE || c === LBRACKET) depth++;
    else if (c === RBRACE || c === RBRACKET) {
      depth--;
      if (depth === 0) return i + 1;
    }
    i++;
  }
  return -1;
}

/**
 * `pos` is at the first byte of a value; returns the index just past it, or -1 when it is malformed or runs off
 * the end. Numbers and literals (`1e400`, `12345678901234567890`, `true`) are taken verbatim up to a delimiter.
 */
export function skipValue(buf: Buffer, pos: number): number {
  const n = buf.length;
  if (pos >= n) return -1;
  const b = buf[pos]!;
  if (b === QUOTE) return skipString(buf, pos);
  if (b === LBRACE || b === LBRACKET) return skipContainer(buf, pos);
  let i = pos;
  while (i < n) {
    const c = buf[i]!;
    if (c === COMMA || c === RBRACE || c === RBRACKET || isWs(c)) break;
    if (c === QUOTE || c === LBRACE || c === LBRACKET || c === COLON) return -1;
    i++;
  }
  return i === pos ? -1 : i;
}

/**
 * Decodes the JSON string at `range` (quotes included). The escape-free case — nearly every model name — is a
 * plain UTF-8 slice; escapes go through JSON.parse of just that slice. Returns undefined when `range` is not a
 * valid JSON string.
 */
export function decodeJsonString(buf: Buffer, range: JsonRange): string | undefined {
  const { start, end } = range;
  if (end - start < 2 || buf[start] !== QUOTE || buf[end - 1] !== QUOTE) return undefined;
  if (!hasBackslash(buf, start + 1, end - 1)) return buf.toString("utf8", start + 1, end - 1);
  try {
    const value: unknown = JSON.parse(buf.toString("utf8", start, end));
    return typeof value === "string" ? value : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Finds a fixed set of top-level keys. Build one per key set and reuse it: the key bytes are encoded once.
 * Duplicate keys resolve to the LAST occurrence, matching JSON.parse (and Python's json, which model servers use),
 * so a spliced value is the one the server will read.
 */
export class TopLevelScanner {
  readonly #names: readonly string[];
  readonly #keys: readonly Buffer[];

  constructor(keys: readonly string[]) {
    this.#names = keys.slice();
    this.#keys = keys.map((k) => Buffer.from(k, "utf8"));
  }

  scan(buf: Buffer): TopLevelScan {
    const ranges: (JsonRange | undefined)[] = new Array(this.#keys.length).fill(undefined);
    const n = buf.length;
    let i = skipWhitespace(buf, 0);
    if (i >= n || buf[i] !== LBRACE) return { ranges, complete: false };
    i = skipWhitespace(buf, i + 1);
    if (buf[i] === RBRACE) return { ranges, complete: skipWhitespace(buf, i + 1) === n };
    for (;;) {
      if (i >= n || buf[i] !== QUOTE) return { ranges, complete: false };
      const keyEnd = skipString(buf, i);
      if (keyEnd < 0) return { ranges, complete: false };
      const slot = this.#match(buf, i, keyEnd);
      i = skipWhitespace(buf, keyEnd);
      if (buf[i] !== COLON) return { ranges, complete: false };
      const valueStart = skipWhitespace(buf, i + 1);
      const valueEnd = skipValue(buf, valueStart);
      if (valueEnd < 0) return { ranges, complete: false };
      if (slot >= 0) ranges[slot] = { start: valueStart, end: valueEnd };
      i = skipWhitespace(buf, valueEnd);
      const d = buf[i];
      if (d === COMMA) {
        i = skipWhitespace(buf, i + 1);
        continue;
      }
      if (d === RBRACE) return { ranges, complete: skipWhitespace(buf, i + 1) === n };
      return { ranges, complete: false };
    }
  }

  /** Index of the wanted key spelled by the string at [start, end) (quotes included), or -1. */
  #match(buf: Buffer, start: number, end: number): number {
    const len = end - start - 2;
    const keys = this.#keys;
    for (let k = 0; k < keys.length; k++) {
      const key = keys[k]!;
      if (key.length !== len) continue;
      let j = 0;
      while (j < len && buf[start + 1 + j] === key[j]) j++;
      if (j === len) return k;
    }
    // A key spelled with escapes ("mod\u0065l") still names `model` for JSON.parse; decode only in that rare case.
    if (!hasBackslash(buf, start + 1, end - 1)) return -1;
    const name = decodeJsonString(buf, { start, end });
    return name === undefined ? -1 : this.#names.indexOf(name);
  }
}

const singleKeyScanners = new Map<string, TopLevelScanner>();

/** Range of one top-level key's value, or undefined when absent or the buffer is not a JSON object. */
export function findTopLevelValue(buf: Buffer, key: string): JsonRange | undefined {
  let scanner = singleKeyScanners.get(key);
  if (scanner === undefined) {
    scanner = new TopLevelScanner([key]);
    // Bounded: callers use a handful of literal keys; the cap keeps arbitrary keys from growing the cache.
    if (singleKeyScanners.size < 64) singleKeyScanners.set(key, scanner);
  }
  return scanner.scan(buf).ranges[0];
}
