/**
 * OpenAI-compatible request parsing, after GIE's openai parser
 * (`pkg/epp/framework/plugins/requesthandling/parsers/openai/openai.go@v1.5.0`, docs/design/model-servers.md §1):
 * API detection by path suffix, GIE's exact 400 messages, and the per-API prefix-hash text.
 *
 * Two deliberate departures from GIE (docs/design/ext-proc-protocol.md §7): the body is parsed ONCE (GIE unmarshals it
 * once into a map and again into a typed struct per API), and it is never re-serialised — `rewriteModel` splices the
 * new model value into the original bytes, and raw top-level values are sliced for hashing.
 */
import { CHARS_PER_TOKEN } from "../common/constants.js";
import { SwitchyardError } from "../common/errors.js";
import { decodeJsonString, type JsonRange, type TopLevelScan, TopLevelScanner } from "./json-scan.js";

/** API names as GIE spells them (its `*API` constants). */
export type OpenAiApi = "conversations" | "responses" | "chat/completions" | "completions" | "embeddings";

export interface ParsedRequest {
  readonly api: OpenAiApi;
  /** The model the client named (a string, possibly empty: GIE accepts `""`). */
  readonly model: string;
  /** `stream === true`. The response path also switches to streaming on an SSE content-type. */
  readonly stream: boolean;
  /** `stream_options.include_usage === true`: only then do chat/completions streams carry usage. */
  readonly includeUsage: boolean;
  /** `max_tokens ?? max_completion_tokens ?? max_output_tokens` when a finite number ≥ 0. */
  readonly maxTokens: number | undefined;
  /** Characters of prompt text (UTF-16 code units); token-id inputs count CHARS_PER_TOKEN per token. */
  readonly promptChars: number;
  /** `ceil(promptChars / CHARS_PER_TOKEN)`. */
  readonly inputTokens: number;
  /**
   * Text fed to prefix hashing, per GIE's per-API rule (raw JSON slices, never re-serialised). Built on first read
   * and cached: only a prefix-cache scorer needs it, and for a 220 KB prompt it is a 220 KB string.
   */
  readonly prefixText: string;
  /** vLLM `cache_salt`, mixed into the first prefix block. */
  readonly cacheSalt: string | undefined;
  /**
   * Byte range of the top-level `model` value (quotes included); pass it to `rewriteModel` to skip a rescan.
   * Located on first read (throws SY_INTERNAL in the impossible case that JSON.parse and the scanner disagree).
   */
  readonly modelRange: JsonRange;
  /** The parsed body, for plugins that need other fields. Never mutate it: it is not what gets forwarded. */
  readonly payload: Readonly<Record<string, unknown>>;
}

/** Suffixes in GIE's order: `/chat/completions` must be tested before `/completions`. */
const API_SUFFIXES: readonly (readonly [string, OpenAiApi])[] = [
  ["/conversations", "conversations"],
  ["/responses", "responses"],
  ["/chat/completions", "chat/completions"],
  ["/completions", "completions"],
  ["/embeddings", "embeddings"],
];

/**
 * The API a path addresses. The query string and fragment are ignored, as are trailing slashes; anything
 * unrecognised is Completions, for compatibility with GIE's clients and tests.
 */
export function detectApi(path: string): OpenAiApi {
  let end = path.length;
  const q = path.indexOf("?");
  if (q !== -1) end = q;
  const h = path.indexOf("#");
  if (h !== -1 && h < end) end = h;
  while (end > 1 && path.charCodeAt(end - 1) === 0x2f) end--;
  const p = end === path.length ? path : path.slice(0, end);
  for (const [suffix, api] of API_SUFFIXES) if (p.endsWith(suffix)) return api;
  return "completions";
}

/** GIE's exact validation messages (docs/design/model-servers.md §1.1). */
export const INVALID_REQUEST_MESSAGES: Readonly<Record<OpenAiApi, string>> = {
  conversations: "invalid conversations request: must have items field",
  responses: "invalid responses request: must have input field",
  "chat/completions": "invalid chat completions request: must have valid messages field",
  completions: "invalid completions request: must have prompt field",
  embeddings: "invalid embeddings request: must have input field",
};

export const MODEL_MISSING_MESSAGE = "model not found in request body";
/** GIE wraps the decoder's error in this prefix (its variable is named bodyMap). */
const BAD_JSON_PREFIX = "error unmarshaling request bodyMap: ";

const KEY_MODEL = 0;
const KEY_MESSAGES = 1;
const KEY_ITEMS = 2;
const KEY_INPUT = 3;
const KEY_INSTRUCTIONS = 4;
const KEY_TOOLS = 5;
const scanner = new TopLevelScanner(["model", "messages", "items", "input", "instructions", "tools"]);

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** What Go's decoder calls a JSON value that is not an object, for GIE-shaped error text. */
function goKind(v: unknown): string {
  if (Array.isArray(v)) return "array";
  if (typeof v === "boolean") return "bool";
  return typeof v;
}

function validShape(api: OpenAiApi, body: Json): boolean {
  switch (api) {
    case "conversations": {
      const items = body["items"];
      return Array.isArray(items) && items.length > 0;
    }
    case "responses":
      return body["input"] !== undefined && body["input"] !== null;
    case "chat/completions": {
      const messages = body["messages"];
      if (!Array.isArray(messages) || messages.length === 0) return false;
      for (const m of messages) if (!isObject(m)) return false;
      return true;
    }
    case "completions": {
      const prompt = body["prompt"];
      if (typeof prompt === "string") return prompt.length > 0;
      if (!Array.isArray(prompt) || prompt.length === 0) return false;
      for (const p of prompt) if (typeof p !== "string") return false;
      return true;
    }
    case "embeddings":
      return body["input"] !== undefined && body["input"] !== null;
  }
}

/** Characters of text in a chat/responses `content`: a string, or parts whose `text` is a string. */
function contentChars(content: unknown): number {
  if (typeof content === "string") return content.length;
  if (!Array.isArray(content)) return 0;
  let n = 0;
  for (const part of content) {
    if (typeof part === "string") n += part.length;
    else if (isObject(part) && typeof part["text"] === "string") n += part["text"].length;
  }
  return n;
}

/** Responses `input` / Conversations `items`: a string, or items with `content` (or a bare `text`). */
function itemsChars(input: unknown): number {
  if (typeof input === "string") return input.length;
  if (!Array.isArray(input)) return 0;
  let n = 0;
  for (const item of input) {
    if (typeof item === "string") n += item.length;
    else if (isObject(item)) {
      if (item["content"] !== undefined) n += contentChars(item["content"]);
      else if (typeof item["text"] === "string") n += item["text"].length;
    }
  }
  return n;
}

/** Embeddings `input`: string | string[] | token ids | token-id arrays. Token ids count as exact tokens. */
function embeddingChars(input: unknown): number {
  if (typeof input === "string") return input.length;
  if (!Array.isArray(input)) return 0;
  let n = 0;
  for (const x of input) {
    if (typeof x === "string") n += x.length;
    else if (typeof x === "number") n += CHARS_PER_TOKEN;
    else if (Array.isArray(x)) n += x.length * CHARS_PER_TOKEN;
  }
  return n;
}

function promptCharsOf(api: OpenAiApi, body: Json): number {
  switch (api) {
    case "completions": {
      const prompt = body["prompt"];
      if (typeof prompt === "string") return prompt.length;
      let n = 0;
      for (const p of prompt as string[]) n += p.length;
      return n;
    }
    case "chat/completions": {
      let n = 0;
      for (const m of body["messages"] as Json[]) n += contentChars(m["content"]);
      return n;
    }
    case "responses": {
      const instructions = body["instructions"];
      return (typeof instructions === "string" ? instructions.length : 0) + itemsChars(body["input"]);
    }
    case "conversations":
      return itemsChars(body["items"]);
    case "embeddings":
      return embeddingChars(body["input"]);
  }
}

function rawSlice(buf: Buffer, range: JsonRange | undefined): string {
  return range === undefined ? "null" : buf.toString("utf8", range.start, range.end);
}

function prefixTextOf(api: OpenAiApi, body: Json, buf: Buffer, ranges: readonly (JsonRange | undefined)[]): string {
  switch (api) {
    case "completions": {
      const prompt = body["prompt"];
      return typeof prompt === "string" ? prompt : (prompt as string[]).join(" ");
    }
    case "chat/completions":
      return rawSlice(buf, ranges[KEY_MESSAGES]);
    case "responses":
      // GIE hashes JSON of [{instructions},{tools},{input}]; the raw slices keep the client's exact bytes.
      return (
        `[{"instructions":${rawSlice(buf, ranges[KEY_INSTRUCTIONS])}},` +
        `{"tools":${rawSlice(buf, ranges[KEY_TOOLS])}},` +
        `{"input":${rawSlice(buf, ranges[KEY_INPUT])}}]`
      );
    case "conversations":
      return rawSlice(buf, ranges[KEY_ITEMS]);
    case "embeddings":
      return rawSlice(buf, ranges[KEY_INPUT]);
  }
}

function nonNegative(v: unknown): number | undefined {
  return typeof v === "number" && Number.isFinite(v) && v >= 0 ? v : undefined;
}

/**
 * Parses and validates an OpenAI request body for `path`. Check order is GIE's: JSON, then the per-API shape,
 * then `model`. Throws SwitchyardError SY_BAD_JSON, SY_INVALID_REQUEST or SY_MODEL_MISSING (all 400).
 */
export function parseRequest(body: Buffer, path: string): ParsedRequest {
  const api = detectApi(path);
  let doc: unknown;
  try {
    doc = JSON.parse(body.toString("utf8"));
  } catch (err) {
    const detail = err instanceof Error ? err.message : String(err);
    throw new SwitchyardError("SY_BAD_JSON", BAD_JSON_PREFIX + detail, { cause: err });
  }
  // Go unmarshals `null` into a map without error (leaving it empty); anything else non-object is a type error.
  if (doc === null) doc = {};
  if (!isObject(doc))
    throw new SwitchyardError(
      "SY_BAD_JSON",
      `${BAD_JSON_PREFIX}json: cannot unmarshal ${goKind(doc)} into Go value of type map[string]interface {}`,
    );
  const json = doc;
  if (!validShape(api, json)) throw new SwitchyardError("SY_INVALID_REQUEST", INVALID_REQUEST_MESSAGES[api]);
  const model = json["model"];
  if (typeof model !== "string") throw new SwitchyardError("SY_MODEL_MISSING", MODEL_MISSING_MESSAGE);

  const streamOptions = json["stream_options"];
  const promptChars = promptCharsOf(api, json);
  const cacheSalt = json["cache_salt"];
  return new Parsed(
    api,
    model,
    json["stream"] === true,
    isObject(streamOptions) && streamOptions["include_usage"] === true,
    nonNegative(json["max_tokens"]) ??
      nonNegative(json["max_completion_tokens"]) ??
      nonNegative(json["max_output_tokens"]),
    promptChars,
    typeof cacheSalt === "string" ? cacheSalt : undefined,
    json,
    body,
  );
}

/**
 * A class rather than an object literal: the lazy members are prototype getters, so a request that never needs
 * them (no rewrite, no prefix scorer) allocates neither closures nor the byte scan.
 */
class Parsed implements ParsedRequest {
  readonly inputTokens: number;
  readonly #body: Buffer;
  #scan: TopLevelScan | undefined;
  #prefixText: string | undefined;

  constructor(
    readonly api: OpenAiApi,
    readonly model: string,
    readonly stream: boolean,
    readonly includeUsage: boolean,
    readonly maxTokens: number | undefined,
    readonly promptChars: number,
    readonly cacheSalt: string | undefined,
    readonly payload: Json,
    body: Buffer,
  ) {
    this.inputTokens = Math.ceil(promptChars / CHARS_PER_TOKEN);
    this.#body = body;
  }

  /** The byte scan serves only a model rewrite and prefix hashing, so it runs on first need. */
  #scanned(): TopLevelScan {
    this.#scan ??= scanner.scan(this.#body);
    return this.#scan;
  }

  get prefixText(): string {
    this.#prefixText ??= prefixTextOf(this.api, this.payload, this.#body, this.#scanned().ranges);
    return this.#prefixText;
  }

  get modelRange(): JsonRange {
    const { ranges, complete } = this.#scanned();
    const range = ranges[KEY_MODEL];
    // JSON.parse accepted the body, so the scanner must agree; if not, refuse rather than splice the wrong bytes.
    if (!complete || range === undefined)
      throw new SwitchyardError("SY_INTERNAL", "request body scanner could not locate the top-level model value");
    return range;
  }
}

const modelOnly = new TopLevelScanner(["model"]);

/**
 * Returns `body` with the top-level `model` value replaced by `newModel` (JSON-escaped). Every other byte —
 * key order, spacing, number spellings, escapes, nested `model` keys — survives unchanged. When the model is
 * already `newModel` the SAME Buffer is returned (no copy). `range` (from ParsedRequest.modelRange) must
 * belong to this very Buffer; without it the body is scanned.
 * Throws SY_MODEL_MISSING when the body has no top-level string `model`.
 */
export function rewriteModel(body: Buffer, newModel: string, range?: JsonRange): Buffer {
  const r = range ?? modelOnly.scan(body).ranges[0];
  const current = r === undefined ? undefined : decodeJsonString(body, r);
  if (r === undefined || current === undefined) throw new SwitchyardError("SY_MODEL_MISSING", MODEL_MISSING_MESSAGE);
  if (current === newModel) return body;
  const encoded = JSON.stringify(newModel);
  const encodedBytes = Buffer.byteLength(encoded, "utf8");
  const out = Buffer.allocUnsafe(body.length - (r.end - r.start) + encodedBytes);
  body.copy(out, 0, 0, r.start);
  out.write(encoded, r.start, encodedBytes, "utf8");
  body.copy(out, r.start + encodedBytes, r.end);
  return out;
}
