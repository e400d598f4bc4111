/**
 * Response accounting: token usage, time to first content, and model-name write-back, for JSON and SSE bodies
 * (docs/design/model-servers.md §2, docs/design/ext-proc-protocol.md §5.10). Where GIE falls short (§7 there), this
 * does better:
 *  - SSE lines split across ext_proc chunks are reassembled (GIE parses each chunk alone and misses them);
 *  - only lines that can carry usage are JSON-parsed (a `"usage":` key followed by an object), so the
 *    `"usage":null` on every OpenAI chunk costs a substring search, not a parse;
 *  - the LAST usage seen wins, so vLLM's `continuous_usage_stats` reports final totals (GIE keeps the first);
 *  - cached tokens are read from all three spellings, not only GIE's own `prompt_token_details`.
 * No I/O, and per-chunk work is a few native `indexOf` calls.
 */
import { DEFAULT_MAX_BODY_BYTES } from "../common/constants.js";
import type { OpenAiApi } from "./openai.js";
import { DEFAULT_MAX_SSE_LINE_BYTES, SseLineSplitter, startsWithAscii } from "./sse.js";
import { ModelNameWriteBack } from "./writeback.js";

export interface Usage {
  readonly promptTokens: number;
  readonly completionTokens: number;
  readonly totalTokens: number;
  /** Prompt tokens served from the prefix cache; 0 when the server does not say. */
  readonly cachedTokens: number;
}

export type StatusClass = "ok" | "client_error" | "server_error" | "rate_limited";

/** Buckets an upstream HTTP status for error metrics. 0 (unknown) and 1xx–3xx are "ok". */
export function classifyStatus(status: number): StatusClass {
  if (status === 429) return "rate_limited";
  if (status >= 500) return "server_error";
  if (status >= 400) return "client_error";
  return "ok";
}

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function count(v: unknown): number | undefined {
  return typeof v === "number" && Number.isFinite(v) && v >= 0 ? Math.trunc(v) : undefined;
}

function cachedOf(details: unknown): number | undefined {
  return isObject(details) ? count(details["cached_tokens"]) : undefined;
}

/**
 * Usage from a parsed response body or SSE event: top-level `usage` (chat, completions, embeddings, and
 * continuous-usage chunks) or `response.usage` (Responses API `response.completed` / `response.incomplete`).
 * Both naming sets are accepted whatever the `object`, as GIE does when it is unknown.
 */
export function extractUsage(doc: unknown): Usage | undefined {
  if (!isObject(doc)) return undefined;
  let u = doc["usage"];
  if (!isObject(u)) {
    const response = doc["response"];
    if (!isObject(response) || !isObject(response["usage"])) return undefined;
    u = response["usage"];
  }
  const usage = u as Json;
  const promptTokens = count(usage["prompt_tokens"]) ?? count(usage["input_tokens"]) ?? 0;
  const completionTokens = count(usage["completion_tokens"]) ?? count(usage["output_tokens"]) ?? 0;
  return {
    promptTokens,
    completionTokens,
    totalTokens: count(usage["total_tokens"]) ?? promptTokens + completionTokens,
    cachedTokens:
      cachedOf(usage["prompt_tokens_details"]) ??
      cachedOf(usage["prompt_token_details"]) ??
      cachedOf(usage["input_tokens_details"]) ??
      0,
  };
}

const QUOTE = 0x22;
const LBRACE = 0x7b;
const USAGE_KEY = Buffer.from('"usage":', "latin1");
const DONE = Buffer.from("[DONE]", "latin1");
/** Keys whose non-empty string value means the event carries generated output (text, reasoning, tool args). */
const CONTENT_KEYS: readonly Buffer[] = ["content", "text", "delta", "reasoning_content", "reasoning", "arguments"].map(
  (k) => Buffer.from(`"${k}":`, "latin1"),
);
const DELTA_SUFFIX = Buffer.from(".delta", "latin1");

function isSpace(b: number | undefined): boolean {
  return b === 0x20 || b === 0x09;
}

/** True when some occurrence of `key` at/after `from` has a value (after optional spaces) satisfying `test`. */
function findValue(line: Buffer, from: number, key: Buffer, test: (line: Buffer, at: number) => boolean): boolean {
  let i = line.indexOf(key, from);
  while (i !== -1) {
    let j = i + key.length;
    while (isSpace(line[j])) j++;
    if (test(line, j)) return true;
    i = line.indexOf(key, j);
  }
  return false;
}

function nonEmptyString(line: Buffer, at: number): boolean {
  return line[at] === QUOTE && at + 1 < line.length && line[at + 1] !== QUOTE;
}

function objectValue(line: Buffer, at: number): boolean {
  return line[at] === LBRACE;
}

export interface ResponseAccountantOptions {
  /** SSE (request `stream: true` or an event-stream content-type) versus one JSON body. */
  readonly streaming: boolean;
  readonly api: OpenAiApi;
  /** The model the client asked for. */
  readonly clientModel: string;
  /** The model the request was sent as; when it differs, the response is rewritten back to clientModel. */
  readonly targetModel: string;
  /** Non-streaming bodies larger than this are passed on untouched but not parsed. Default 16 MiB. */
  readonly maxBufferedBytes?: number;
  /** Longest SSE line parsed; longer lines are passed on but not parsed. Default 4 MiB. */
  readonly maxLineBytes?: number;
  /** Clock for firstContentAt; default performance.now. */
  readonly now?: () => number;
}

/** One per response. Not reusable. */
export class ResponseAccountant {
  readonly #streaming: boolean;
  readonly #now: () => number;
  readonly #maxBufferedBytes: number;
  readonly #writeBack: ModelNameWriteBack | undefined;
  readonly #lines: SseLineSplitter | undefined;
  /** Non-streaming body chunks, kept by reference until end of stream. */
  #chunks: Buffer[] | undefined;
  #chunkBytes = 0;
  #usage: Usage | undefined;
  #firstContentAt: number | undefined;
  #contentEvents = 0;
  #bytes = 0;
  #ended = false;
  /** Within the current SSE event: an `event:` line was seen, and whether its type ends in `.delta`. */
  #eventTyped = false;
  #eventIsDelta = false;
  /** A `data:` line has been seen: the body really is SSE. */
  #sawData = false;

  constructor(options: ResponseAccountantOptions) {
    this.#streaming = options.streaming;
    this.#now = options.now ?? performance.now.bind(performance);
    const maxBuffered = options.maxBufferedBytes ?? DEFAULT_MAX_BODY_BYTES;
    if (!Number.isInteger(maxBuffered) || maxBuffered < 0)
      throw new TypeError(`maxBufferedBytes must be a non-negative integer, got ${String(options.maxBufferedBytes)}`);
    this.#maxBufferedBytes = maxBuffered;
    this.#writeBack =
      options.targetModel !== options.clientModel
        ? new ModelNameWriteBack(options.targetModel, options.clientModel)
        : undefined;
    if (options.streaming)
      this.#lines = new SseLineSplitter({ maxLineBytes: options.maxLineBytes ?? DEFAULT_MAX_SSE_LINE_BYTES });
    else this.#chunks = [];
  }

  /**
   * Accounts one upstream body chunk and returns the bytes to pass on: `chunk` itself when nothing is rewritten.
   * With write-back a few tail bytes may be held until the next call (the output can be empty); they are always
   * flushed on `endOfStream`. Calls after end of stream pass through untouched.
   */
  feed(chunk: Buffer, endOfStream: boolean): Buffer {
    this.#bytes += chunk.length;
    if (this.#ended) return chunk;
    if (this.#lines !== undefined) {
      this.#lines.push(chunk, this.#onLine);
      if (endOfStream) this.#lines.end(this.#onLine);
    } else {
      if (chunk.length > 0) this.#firstContentAt ??= this.#now();
      this.#retain(chunk);
      if (endOfStream) this.#parseBody();
    }
    if (endOfStream) this.#ended = true;
    return this.#writeBack === undefined ? chunk : this.#writeBack.process(chunk, endOfStream);
  }

  /** Usage reported by the server, or undefined (e.g. a stream without `include_usage`). */
  usage(): Usage | undefined {
    return this.#usage;
  }

  /** performance.now() of the first content-bearing SSE event, or of the first body byte when not streaming. */
  get firstContentAt(): number | undefined {
    return this.#firstContentAt;
  }

  /** Content-bearing SSE events seen: roughly one per output token; the fallback when usage is absent. */
  get outputTokensSeen(): number {
    return this.#contentEvents;
  }

  /** Body bytes received from upstream. */
  get bytes(): number {
    return this.#bytes;
  }

  get ended(): boolean {
    return this.#ended;
  }

  #retain(chunk: Buffer): void {
    const chunks = this.#chunks;
    if (chunks === undefined || chunk.length === 0) return;
    if (this.#chunkBytes + chunk.length > this.#maxBufferedBytes) {
      this.#chunks = undefined;
      this.#chunkBytes = 0;
      return;
    }
    chunks.push(chunk);
    this.#chunkBytes += chunk.length;
  }

  #parseBody(): void {
    const chunks = this.#chunks;
    this.#chunks = undefined;
    if (chunks === undefined || chunks.length === 0) return;
    const body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, this.#chunkBytes);
    this.#chunkBytes = 0;
    if (!findValue(body, 0, USAGE_KEY, objectValue)) return;
    try {
      this.#usage = extractUsage(JSON.parse(body.toString("utf8"))) ?? this.#usage;
    } catch {
      // Not JSON (an HTML error page, a truncated body): no usage, nothing else to do.
    }
  }

  readonly #onLine = (line: Buffer): void => {
    if (line.length === 0) {
      this.#eventTyped = false;
      this.#eventIsDelta = false;
      return;
    }
    if (startsWithAscii(line, "data:")) {
      this.#sawData = true;
      this.#onData(line, line[5] === 0x20 ? 6 : 5);
      return;
    }
    // `stream: true` answered with plain JSON (a server that ignores `stream`, or an error object): the body is
    // one unterminated line, flushed at end of stream. Read its usage rather than lose it.
    if (!this.#sawData && line[0] === LBRACE) {
      this.#parseUsage(line, 0);
      return;
    }
    if (startsWithAscii(line, "event:")) {
      let end = line.length;
      while (end > 6 && isSpace(line[end - 1])) end--;
      this.#eventTyped = true;
      const n = DELTA_SUFFIX.length;
      this.#eventIsDelta = end - 6 >= n && line.compare(DELTA_SUFFIX, 0, n, end - n, end) === 0;
    }
  };

  #onData(line: Buffer, from: number): void {
    if (line.length - from === DONE.length && line.compare(DONE, 0, DONE.length, from) === 0) return;
    // Responses API events name their type; otherwise look for a non-empty generated string.
    const content = this.#eventTyped ? this.#eventIsDelta : this.#hasContent(line, from);
    if (content) {
      this.#contentEvents++;
      this.#firstContentAt ??= this.#now();
    }
    this.#parseUsage(line, from);
  }

  #parseUsage(line: Buffer, from: number): void {
    if (!findValue(line, from, USAGE_KEY, objectValue)) return;
    try {
      this.#usage = extractUsage(JSON.parse(line.toString("utf8", from))) ?? this.#usage;
    } catch {
      // A malformed event is skipped, as every SSE consumer does.
    }
  }

  #hasContent(line: Buffer, from: number): boolean {
    for (const key of CONTENT_KEYS) if (findValue(line, from, key, nonEmptyString)) return true;
    return false;
  }
}
