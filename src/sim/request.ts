/**
 * OpenAI request parsing and simulated text for the simulator. Token counts use the shared estimate of
 * characters / 4 (CHARS_PER_TOKEN), the same one GIE and llm-d use without a tokenizer, so the router and the
 * simulator agree on prompt sizes. One generated token is one word.
 */
import { CHARS_PER_TOKEN } from "../common/constants.js";
import type { FinishReason } from "./engine.js";
import type { ResolvedSimOptions } from "./options.js";
import type { Rng } from "./random.js";

export type Api = "chat" | "completions";

/** An OpenAI-style error the HTTP layer writes as `{"error":{message,type,param,code}}` (vLLM's shape). */
export class SimHttpError extends Error {
  override readonly name = "SimHttpError";
  constructor(
    readonly status: number,
    readonly type: string,
    message: string,
    readonly param: string | null = null,
  ) {
    super(message);
  }
}

const badRequest = (message: string, param: string | null = null): SimHttpError =>
  new SimHttpError(400, "BadRequestError", message, param);

export interface ParsedRequest {
  readonly api: Api;
  /** Model name exactly as requested (echoed in responses). */
  readonly model: string;
  /** Adapter name when `model` names a LoRA adapter. */
  readonly lora: string | undefined;
  readonly promptText: string;
  readonly promptTokens: number;
  /** Source words for echo mode: the last user message (chat) or the prompt (completions). */
  readonly echoText: string;
  /** max_completion_tokens ?? max_tokens, when given. */
  readonly requestedMaxTokens: number | undefined;
  readonly stream: boolean;
  readonly includeUsage: boolean;
  readonly continuousUsage: boolean;
  /** Per-request `seed`: makes this request's text independent of arrival order. */
  readonly seed: number | undefined;
  readonly cacheSalt: string | undefined;
}

export function estimateTokens(text: string): number {
  return Math.max(1, Math.ceil(text.length / CHARS_PER_TOKEN));
}

function optionalInt(body: Record<string, unknown>, field: string, min: number): number | undefined {
  const v = body[field];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "number" || !Number.isInteger(v) || v < min)
    throw badRequest(`${field} must be an integer >= ${min}, got ${JSON.stringify(v)}`, field);
  return v;
}

function contentText(content: unknown, index: number): string {
  if (content === undefined || content === null) return "";
  if (typeof content === "string") return content;
  if (!Array.isArray(content))
    throw badRequest(`messages[${index}].content must be a string or an array of parts`, "messages");
  let text = "";
  for (const part of content) {
    if (typeof part !== "object" || part === null)
      throw badRequest(`messages[${index}].content parts must be objects`, "messages");
    const p = part as Record<string, unknown>;
    if (p.type === "text" && typeof p.text === "string") text += text === "" ? p.text : `\n${p.text}`;
  }
  return text;
}

/** The text the generation prompt adds after the last message (see renderChat). */
export const GENERATION_PROMPT = "<|im_start|>assistant\n";

/**
 * Renders chat messages into the prompt text the engine sees: a ChatML-like rendering where each turn is a stable
 * prefix of the next, so multi-turn chats hit the prefix cache. /v1/chat/completions, /tokenize and
 * /v1/chat/completions/render all use it, so the three agree on a prompt's text, token count and token ids.
 * Throws SimHttpError 400 on an invalid message list.
 */
export function renderChat(messages: unknown): { promptText: string; echoText: string } {
  if (!Array.isArray(messages) || messages.length === 0)
    throw badRequest("messages must be a non-empty array", "messages");
  const parts: string[] = [];
  let echoText = "";
  for (let i = 0; i < messages.length; i++) {
    const m = messages[i] as unknown;
    if (typeof m !== "object" || m === null) throw badRequest(`messages[${i}] must be an object`, "messages");
    const role = (m as Record<string, unknown>).role;
    if (typeof role !== "string" || role === "")
      throw badRequest(`messages[${i}].role must be a non-empty string`, "messages");
    const text = contentText((m as Record<string, unknown>).content, i);
    if (role === "user") echoText = text;
    parts.push(`<|im_start|>${role}\n${text}<|im_end|>\n`);
  }
  parts.push(GENERATION_PROMPT);
  return { promptText: parts.join(""), echoText };
}

/**
 * Validates a completions or chat body. `loras` maps adapter names; `served` the base model's names.
 * Throws SimHttpError (400 invalid, 404 unknown model).
 */
export function parseRequest(
  api: Api,
  raw: unknown,
  served: ReadonlySet<string>,
  loras: ReadonlySet<string>,
): ParsedRequest {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) throw badRequest("request body must be an object");
  const body = raw as Record<string, unknown>;
  const model = body.model;
  if (typeof model !== "string" || model === "") throw badRequest("model must be a non-empty string", "model");
  const isLora = loras.has(model);
  if (!isLora && !served.has(model))
    throw new SimHttpError(404, "NotFoundError", `The model \`${model}\` does not exist.`, "model");

  let promptText: string;
  let echoText: string;
  let promptTokens: number;
  if (api === "chat") {
    const rendered = renderChat(body.messages);
    promptText = rendered.promptText;
    echoText = rendered.echoText;
    promptTokens = estimateTokens(promptText);
  } else {
    const prompt = body.prompt;
    if (typeof prompt === "string" && prompt !== "") {
      promptText = prompt;
      promptTokens = estimateTokens(prompt);
    } else if (Array.isArray(prompt) && prompt.length > 0 && prompt.every((p) => typeof p === "string")) {
      promptText = prompt.join(" ");
      promptTokens = estimateTokens(promptText);
    } else if (Array.isArray(prompt) && prompt.length > 0 && prompt.every((p) => Number.isInteger(p))) {
      // Pre-tokenized prompt: the ids are the tokens.
      promptText = prompt.join(" ");
      promptTokens = prompt.length;
    } else {
      throw badRequest("prompt must be a non-empty string, array of strings or array of token ids", "prompt");
    }
    echoText = promptText;
  }

  const n = optionalInt(body, "n", 1);
  if (n !== undefined && n !== 1) throw badRequest("the simulator supports only n = 1", "n");
  const requestedMaxTokens = optionalInt(body, "max_completion_tokens", 1) ?? optionalInt(body, "max_tokens", 1);
  const stream = body.stream;
  if (stream !== undefined && stream !== null && typeof stream !== "boolean")
    throw badRequest("stream must be a boolean", "stream");
  const so = body.stream_options;
  if (so !== undefined && so !== null && (typeof so !== "object" || Array.isArray(so)))
    throw badRequest("stream_options must be an object", "stream_options");
  const streamOptions = (so ?? {}) as Record<string, unknown>;
  const seed = optionalInt(body, "seed", Number.MIN_SAFE_INTEGER);
  const salt = body.cache_salt;
  if (salt !== undefined && salt !== null && typeof salt !== "string")
    throw badRequest("cache_salt must be a string", "cache_salt");

  return {
    api,
    model,
    lora: isLora ? model : undefined,
    promptText,
    promptTokens,
    echoText,
    requestedMaxTokens,
    stream: stream === true,
    includeUsage: streamOptions.include_usage === true,
    continuousUsage: streamOptions.continuous_usage_stats === true,
    seed,
    cacheSalt: typeof salt === "string" ? salt : undefined,
  };
}

const WORDS: readonly string[] = [
  "the of and to in a is that for it as was with be by on not this are or at from which an but all were can has",
  "more one model token cache router gateway request latency batch prefix queue stream server pod inference",
  "endpoint picker switchyard signal metric adapter block memory schedule score filter load balance throughput",
  "decode prefill window context reply",
]
  .join(" ")
  .split(" ");

/** Output length and the finish reason to report when it is reached. */
export interface OutputPlan {
  readonly tokens: number;
  readonly finishReason: FinishReason;
  readonly words: readonly string[] | undefined;
}

/**
 * Decides the output: echo mode repeats the last user message's words (at most max_tokens of them); random mode
 * produces exactly max_tokens, or a seeded log-normal length (median 48) when the client set no limit. Both are
 * capped by the context window left after the prompt.
 */
export function planOutput(req: ParsedRequest, options: ResolvedSimOptions, rng: Rng): OutputPlan {
  const room = options.maxModelLen - req.promptTokens;
  const requested = req.requestedMaxTokens;
  if (options.mode === "echo") {
    const words = req.echoText.split(/\s+/).filter((w) => w !== "");
    if (words.length === 0) words.push(".");
    const limit = Math.min(requested ?? Number.POSITIVE_INFINITY, room);
    const tokens = Math.min(words.length, limit);
    return { tokens, finishReason: tokens === limit ? "length" : "stop", words };
  }
  if (requested !== undefined) return { tokens: Math.min(requested, room), finishReason: "length", words: undefined };
  const drawn = Math.round(Math.exp(Math.log(48) + 0.8 * rng.normal()));
  const tokens = Math.max(1, Math.min(drawn, room));
  return { tokens, finishReason: tokens === room ? "length" : "stop", words: undefined };
}

/** Produces the text of token i (0-based) of a response; random words come from the request's own PRNG. */
export class TokenText {
  #rng: Rng;
  #words: readonly string[] | undefined;
  #i = 0;

  constructor(rng: Rng, words: readonly string[] | undefined) {
    this.#rng = rng;
    this.#words = words;
  }

  next(): string {
    const i = this.#i++;
    const words = this.#words;
    const word = words === undefined ? WORDS[this.#rng.int(WORDS.length)]! : words[i % words.length]!;
    return i === 0 ? word : ` ${word}`;
  }
}
