/**
 * Line splitting for server-sent events arriving as arbitrary byte chunks. GIE splits each ext_proc body chunk
 * on "\n" independently, so a `data:` line cut by a chunk boundary is lost (docs/design/model-servers.md §2.2); this
 * splitter carries the partial line over to the next chunk.
 *
 * Lines end at "\n"; a trailing "\r" is dropped, so "\r\n" works too. (A lone "\r" terminator is legal SSE but
 * no model server emits it, and honouring it would mean holding back every chunk that ends in "\r".)
 */

const LF = 0x0a;
const CR = 0x0d;

/** Default cap on one buffered line. A Responses `response.completed` event repeats the whole output text. */
export const DEFAULT_MAX_SSE_LINE_BYTES = 4 * 1024 * 1024;

export type LineHandler = (line: Buffer) => void;

export interface SseLineSplitterOptions {
  /** Longest line kept for parsing; longer lines are dropped whole (never truncated). Default 4 MiB. */
  readonly maxLineBytes?: number;
}

export class SseLineSplitter {
  readonly #maxLineBytes: number;
  /** Pieces of the current unterminated line; joined once, when its "\n" arrives. */
  readonly #pending: Buffer[] = [];
  #pendingBytes = 0;
  /** The current line outgrew the cap: skip bytes until the next "\n". */
  #discarding = false;
  #droppedLines = 0;

  constructor(options: SseLineSplitterOptions = {}) {
    const max = options.maxLineBytes ?? DEFAULT_MAX_SSE_LINE_BYTES;
    if (!Number.isInteger(max) || max < 1)
      throw new TypeError(`maxLineBytes must be a positive integer, got ${String(options.maxLineBytes)}`);
    this.#maxLineBytes = max;
  }

  /** Lines that exceeded maxLineBytes and were dropped. */
  get droppedLines(): number {
    return this.#droppedLines;
  }

  /** Bytes of the unterminated line held over. */
  get pendingBytes(): number {
    return this.#pendingBytes;
  }

  /**
   * Calls `onLine` for every line completed by `chunk`, in order, without its terminator. Lines inside the chunk
   * are zero-copy views of it; only a line spanning chunks is joined. `chunk` must not be mutated afterwards
   * (the tail is retained by reference until its line completes).
   */
  push(chunk: Buffer, onLine: LineHandler): void {
    const n = chunk.length;
    let start = 0;
    while (start < n) {
      const nl = chunk.indexOf(LF, start);
      if (nl === -1) {
        this.#hold(chunk.subarray(start));
        return;
      }
      if (this.#discarding) {
        this.#discarding = false;
      } else if (this.#pendingBytes > 0 || this.#pending.length > 0) {
        const piece = chunk.subarray(start, nl);
        if (this.#pendingBytes + piece.length > this.#maxLineBytes) {
          this.#droppedLines++;
          this.#reset();
        } else {
          this.#pending.push(piece);
          const line = Buffer.concat(this.#pending, this.#pendingBytes + piece.length);
          this.#reset();
          onLine(stripCr(line));
        }
      } else if (nl - start > this.#maxLineBytes) {
        this.#droppedLines++;
      } else {
        onLine(stripCr(chunk.subarray(start, nl)));
      }
      start = nl + 1;
    }
  }

  /** Flushes a final line that had no terminator (end of stream). */
  end(onLine: LineHandler): void {
    if (this.#discarding) {
      this.#discarding = false;
      return;
    }
    if (this.#pending.length === 0) return;
    const line = Buffer.concat(this.#pending, this.#pendingBytes);
    this.#reset();
    onLine(stripCr(line));
  }

  #hold(piece: Buffer): void {
    if (this.#discarding || piece.length === 0) return;
    if (this.#pendingBytes + piece.length > this.#maxLineBytes) {
      this.#droppedLines++;
      this.#reset();
      this.#discarding = true;
      return;
    }
    this.#pending.push(piece);
    this.#pendingBytes += piece.length;
  }

  #reset(): void {
    this.#pending.length = 0;
    this.#pendingBytes = 0;
  }
}

function stripCr(line: Buffer): Buffer {
  const n = line.length;
  return n > 0 && line[n - 1] === CR ? line.subarray(0, n - 1) : line;
}

/** True when `line` starts with the ASCII bytes of `prefix`. */
export function startsWithAscii(line: Buffer, prefix: string): boolean {
  const n = prefix.length;
  if (line.length < n) return false;
  for (let i = 0; i < n; i++) if (line[i] !== prefix.charCodeAt(i)) return false;
  return true;
}
