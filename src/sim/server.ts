/**
 * The simulator's HTTP face: vLLM's OpenAI-compatible routes over node:http, driven by the Engine.
 * Per-token work is one pre-templated string concatenation and one socket write; no per-token JSON.stringify of
 * whole chunk objects, no per-token timers.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { Engine, EngineRejection, type SequenceInfo, type SequenceSink } from "./engine.js";
import { METRICS_CONTENT_TYPE, renderMetrics } from "./metrics.js";
import { type FailureType, type ResolvedSimOptions, resolveSimOptions, type SimulatorOptions } from "./options.js";
import { hashString, Rng } from "./random.js";
import {
  type Api,
  GENERATION_PROMPT,
  type ParsedRequest,
  parseRequest,
  planOutput,
  renderChat,
  SimHttpError,
  TokenText,
} from "./request.js";
import { SimTokenizer } from "./tokenizer.js";

export interface Simulator {
  /** `http://host:port` (IPv6 hosts bracketed). */
  readonly url: string;
  readonly address: string;
  readonly port: number;
  readonly engine: Engine;
  readonly options: ResolvedSimOptions;
  /** The HTTP server, for tests that also want to see each request as it reaches the pod. */
  readonly server: Server;
  /** Requests received per path since start (GET /sim/endpoint-hits serves the same). */
  endpointHits(): Record<string, number>;
  /** Stops listening, drops in-flight and hung requests, and resolves once the server is closed. */
  close(): Promise<void>;
}

const JSON_TYPE = "application/json";

function errorBody(err: SimHttpError): string {
  return JSON.stringify({ error: { message: err.message, type: err.type, param: err.param, code: err.status } });
}

interface FailureSpec {
  readonly status: number;
  readonly type: string;
  readonly message: (model: string, options: ResolvedSimOptions) => string;
  readonly param: string | null;
}

/** llm-d-inference-sim's injected failures: same kinds, same status codes. */
const FAILURES: Readonly<Record<FailureType, FailureSpec>> = {
  rate_limit: {
    status: 429,
    type: "RateLimitError",
    message: (model) => `Rate limit reached for ${model} in organization org-xxx on requests per min (RPM): Limit 3.`,
    param: null,
  },
  invalid_api_key: {
    status: 401,
    type: "AuthenticationError",
    message: () => "Incorrect API key provided.",
    param: null,
  },
  context_length: {
    status: 400,
    type: "BadRequestError",
    message: (_m, o) =>
      `This model's maximum context length is ${o.maxModelLen} tokens. However, you requested ${o.maxModelLen + 1} tokens. Please reduce the length of the messages or completion.`,
    param: "messages",
  },
  server_error: {
    status: 503,
    type: "ServiceUnavailableError",
    message: () => "The server is overloaded or not ready yet.",
    param: null,
  },
  invalid_request: {
    status: 400,
    type: "BadRequestError",
    message: () => "Invalid request: the request is malformed or missing required parameters.",
    param: null,
  },
  model_not_found: {
    status: 404,
    type: "NotFoundError",
    message: (model) => `The model \`${model}-nonexistent\` does not exist.`,
    param: "model",
  },
};

export class SimulatorServer {
  readonly engine: Engine;
  readonly options: ResolvedSimOptions;
  readonly server: Server;
  #served: ReadonlySet<string>;
  #loras: ReadonlySet<string>;
  #rng: Rng;
  #requests = 0;
  #created = Math.floor(Date.now() / 1000);
  #baseHeaders: Record<string, string> = {};
  #hung = new Set<ServerResponse>();
  #modelsBody: string;
  readonly #tokenizer = new SimTokenizer();
  readonly #hits = new Map<string, number>();

  constructor(options: ResolvedSimOptions) {
    this.options = options;
    this.engine = new Engine(options);
    this.#served = new Set(options.servedModelNames);
    this.#loras = new Set(options.loraModules.map((m) => m.name));
    this.#rng = new Rng(options.seed);
    this.#modelsBody = this.#renderModels();
    this.server = createServer({ noDelay: true, keepAlive: true }, (req, res) => this.#handle(req, res));
    // Scrapers poll every 50 ms on kept-alive connections; outlive the common client idle timeouts.
    this.server.keepAliveTimeout = 65_000;
    this.server.headersTimeout = 66_000;
  }

  /** Sets the x-inference-* headers once the port is known (llm-d-inference-sim sends them when POD_NAME is set). */
  setPort(port: number): void {
    const o = this.options;
    if (o.podName !== undefined) {
      this.#baseHeaders = { "x-inference-pod": o.podName, "x-inference-port": String(port) };
      if (o.podNamespace !== undefined) this.#baseHeaders["x-inference-namespace"] = o.podNamespace;
    }
  }

  /** Destroys responses parked by --hang-rate; server.close() would otherwise wait for them forever. */
  dropHung(): void {
    for (const res of this.#hung) res.destroy();
    this.#hung.clear();
  }

  #renderModels(): string {
    const o = this.options;
    const data: unknown[] = o.servedModelNames.map((id) => ({
      id,
      object: "model",
      created: this.#created,
      owned_by: "vllm",
      root: o.model,
      parent: null,
      max_model_len: o.maxModelLen,
    }));
    for (const m of o.loraModules) {
      data.push({
        id: m.name,
        object: "model",
        created: this.#created,
        owned_by: "vllm",
        root: m.path ?? m.name,
        parent: m.base_model_name ?? o.servedModelNames[0],
        max_model_len: null,
      });
    }
    return JSON.stringify({ object: "list", data });
  }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    const url = req.url ?? "/";
    const q = url.indexOf("?");
    const path = q === -1 ? url : url.slice(0, q);
    const method = req.method ?? "GET";
    this.#hits.set(path, (this.#hits.get(path) ?? 0) + 1);
    switch (path) {
      case "/v1/chat/completions":
      case "/v1/completions":
        if (method !== "POST") this.#methodNotAllowed(res, "POST");
        else this.#completion(path === "/v1/completions" ? "completions" : "chat", req, res);
        break;
      case "/v1/models":
        if (method !== "GET") this.#methodNotAllowed(res, "GET");
        else this.#send(res, 200, JSON_TYPE, this.#modelsBody);
        break;
      case "/health":
      case "/health/ready":
      case "/ready":
        if (method !== "GET" && method !== "HEAD") this.#methodNotAllowed(res, "GET");
        else this.#send(res, 200, JSON_TYPE, "");
        break;
      case "/metrics":
        if (method !== "GET") this.#methodNotAllowed(res, "GET");
        else this.#metrics(res);
        break;
      // vLLM's tokenizer endpoints, which routers call before routing (docs/design/model-servers.md §10.1).
      case "/tokenize":
      case "/detokenize":
      case "/v1/chat/completions/render":
      case "/v1/completions/render":
        if (method !== "POST") this.#methodNotAllowed(res, "POST");
        else this.#readJson(req, res, (body) => this.#tokenizerRoute(path, body, res));
        break;
      // SGLang's server endpoints, which sglang-router and vllm-router probe (docs/design/model-servers.md §10.2).
      case "/get_model_info":
      case "/model_info":
      case "/get_server_info":
      case "/server_info":
      case "/get_load":
        if (method !== "GET") this.#methodNotAllowed(res, "GET");
        else this.#send(res, 200, JSON_TYPE, JSON.stringify(this.#sglangInfo(path)));
        break;
      case "/sim/endpoint-hits":
        if (method !== "GET") this.#methodNotAllowed(res, "GET");
        else this.#send(res, 200, JSON_TYPE, JSON.stringify(this.endpointHits()));
        break;
      default:
        req.resume();
        this.#error(res, new SimHttpError(404, "NotFoundError", `no route for ${method} ${path}`));
    }
  }

  #methodNotAllowed(res: ServerResponse, allow: string): void {
    res.req.resume();
    res.setHeader("allow", allow);
    this.#error(res, new SimHttpError(405, "MethodNotAllowedError", `method not allowed; use ${allow}`));
  }

  #send(res: ServerResponse, status: number, type: string, body: string): void {
    res.writeHead(status, { ...this.#baseHeaders, "content-type": type, "content-length": Buffer.byteLength(body) });
    res.end(body);
  }

  #error(res: ServerResponse, err: SimHttpError): void {
    if (res.headersSent) {
      res.destroy();
      return;
    }
    this.#send(res, err.status, JSON_TYPE, errorBody(err));
  }

  #metrics(res: ServerResponse): void {
    const delay = this.options.metricsDelayMs;
    if (delay <= 0) {
      this.#send(res, 200, METRICS_CONTENT_TYPE, renderMetrics(this.engine));
      return;
    }
    const timer = setTimeout(() => {
      if (!res.destroyed) this.#send(res, 200, METRICS_CONTENT_TYPE, renderMetrics(this.engine));
    }, delay);
    res.on("close", () => clearTimeout(timer));
  }

  #completion(api: Api, req: IncomingMessage, res: ServerResponse): void {
    this.#readJson(req, res, (body) => this.#start(api, parseRequest(api, body, this.#served, this.#loras), res));
  }

  /** Reads a bounded JSON body, then runs `handle`; errors it throws become OpenAI-style error responses. */
  #readJson(req: IncomingMessage, res: ServerResponse, handle: (body: unknown) => void): void {
    const limit = this.options.maxBodyBytes;
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = false;
    req.on("data", (chunk: Buffer) => {
      if (tooLarge) return;
      size += chunk.length;
      if (size > limit) {
        tooLarge = true;
        chunks.length = 0;
        res.shouldKeepAlive = false;
        this.#error(res, new SimHttpError(413, "BadRequestError", `request body exceeds ${limit} bytes`));
        return;
      }
      chunks.push(chunk);
    });
    req.on("end", () => {
      if (tooLarge || res.destroyed) return;
      let body: unknown;
      try {
        body = JSON.parse(Buffer.concat(chunks, size).toString("utf8"));
      } catch (err) {
        return this.#error(
          res,
          new SimHttpError(400, "BadRequestError", `invalid JSON body: ${(err as Error).message}`),
        );
      }
      try {
        handle(body);
      } catch (err) {
        if (err instanceof SimHttpError) return this.#error(res, err);
        if (err instanceof EngineRejection)
          return this.#error(res, new SimHttpError(err.status, err.type, err.message));
        this.#error(res, new SimHttpError(500, "InternalServerError", (err as Error).message ?? String(err)));
      }
    });
    // A reset mid-upload: nothing was queued yet, the socket is gone; just stop.
    req.on("error", () => {});
  }

  endpointHits(): Record<string, number> {
    return Object.fromEntries(this.#hits);
  }

  /** The model a tokenizer request names: optional in vLLM (then the base model), else a served name or adapter. */
  #tokenizerModel(body: Record<string, unknown>): string {
    const model = body.model;
    if (model === undefined || model === null) return this.options.servedModelNames[0]!;
    if (typeof model !== "string" || (!this.#served.has(model) && !this.#loras.has(model)))
      throw new SimHttpError(
        404,
        "NotFoundError",
        `The model \`${String(model)}\` does not exist. Valid aliases: ${[...this.#served, ...this.#loras].join(", ")}.`,
        "model",
      );
    return model;
  }

  #tokenizerRoute(path: string, raw: unknown, res: ServerResponse): void {
    if (typeof raw !== "object" || raw === null || Array.isArray(raw))
      throw new SimHttpError(400, "BadRequestError", "request body must be an object");
    const body = raw as Record<string, unknown>;
    const o = this.options;
    if (path === "/tokenize") {
      this.#tokenizerModel(body);
      let text: string;
      if (body.messages !== undefined) {
        text = renderChat(body.messages).promptText;
        // vLLM's add_generation_prompt (default true) appends the assistant turn's opening.
        if (body.add_generation_prompt === false) text = text.slice(0, -GENERATION_PROMPT.length);
      } else if (typeof body.prompt === "string") {
        text = body.prompt;
      } else {
        throw new SimHttpError(400, "BadRequestError", "prompt must be a string, or give messages", "prompt");
      }
      const tokens = this.#tokenizer.encode(text);
      const strs = body.return_token_strs === true ? tokens.map((t) => this.#tokenizer.piece(t) ?? "") : null;
      this.#send(
        res,
        200,
        JSON_TYPE,
        JSON.stringify({ count: tokens.length, max_model_len: o.maxModelLen, tokens, token_strs: strs }),
      );
      return;
    }
    if (path === "/detokenize") {
      this.#tokenizerModel(body);
      const tokens = body.tokens;
      if (!Array.isArray(tokens) || !tokens.every((t) => Number.isSafeInteger(t) && (t as number) >= 0))
        throw new SimHttpError(400, "BadRequestError", "tokens must be an array of integers >= 0", "tokens");
      this.#send(res, 200, JSON_TYPE, JSON.stringify({ prompt: this.#tokenizer.decode(tokens as number[]) }));
      return;
    }
    // /v1/chat/completions/render and /v1/completions/render: the request vLLM would hand its engine.
    const api: Api = path === "/v1/completions/render" ? "completions" : "chat";
    const parsed = parseRequest(api, body, this.#served, this.#loras);
    const prompt = api === "completions" ? body.prompt : undefined;
    const ids =
      Array.isArray(prompt) && prompt.every((p) => Number.isInteger(p))
        ? (prompt as number[])
        : this.#tokenizer.encode(parsed.promptText);
    const rendered = renderedRequest(api, parsed, body, ids, this.#rng);
    this.#send(res, 200, JSON_TYPE, JSON.stringify(api === "chat" ? rendered : [rendered]));
  }

  /** SGLang's /get_model_info, /get_server_info and /get_load bodies, from this simulator's options and state. */
  #sglangInfo(path: string): unknown {
    const o = this.options;
    const modelInfo = {
      model_path: o.model,
      tokenizer_path: o.model,
      is_generation: true,
      preferred_sampling_params: null,
      weight_version: "default",
      has_image_understanding: false,
      has_audio_understanding: false,
      model_type: "llama",
      architectures: ["LlamaForCausalLM"],
    };
    if (path === "/get_model_info" || path === "/model_info") return modelInfo;
    const e = this.engine;
    if (path === "/get_load") {
      // vllm-router's power_of_two reads `load`; SGLang itself answers a per-rank list (docs/design/model-servers.md §10.2).
      return {
        load: e.running + e.waiting,
        num_reqs: e.running + e.waiting,
        num_running_reqs: e.running,
        num_waiting_reqs: e.waiting,
        num_tokens: e.kv.usedBlocks * o.blockSize,
      };
    }
    return {
      ...modelInfo,
      served_model_name: o.servedModelNames[0],
      host: o.host,
      port: o.port,
      tp_size: 1,
      dp_size: o.dataParallelSize,
      page_size: o.blockSize,
      context_length: o.maxModelLen,
      max_running_requests: o.maxNumSeqs,
      max_total_num_tokens: o.kvCacheSize * o.blockSize,
      max_req_input_len: o.maxModelLen - 1,
      disable_radix_cache: !o.enablePrefixCaching,
      enable_lora: o.loraModules.length > 0,
      max_loras_per_batch: o.maxLoras,
      internal_states: [{ last_gen_throughput: 0, load: e.running + e.waiting }],
      version: "switchyard-sim",
    };
  }

  #start(api: Api, parsed: ParsedRequest, res: ServerResponse): void {
    const o = this.options;
    if (parsed.promptTokens >= o.maxModelLen) {
      throw new SimHttpError(
        400,
        "BadRequestError",
        `This model's maximum context length is ${o.maxModelLen} tokens. However, your request has ${parsed.promptTokens} input tokens. Please reduce the length of the input messages.`,
        api === "chat" ? "messages" : "prompt",
      );
    }
    if (o.failureInjectionRate > 0 && this.#rng.next() * 100 < o.failureInjectionRate) {
      const kind = o.failureTypes[this.#rng.int(o.failureTypes.length)]!;
      const f = FAILURES[kind];
      throw new SimHttpError(f.status, f.type, f.message(parsed.model, o), f.param);
    }
    if (o.hangRate > 0 && this.#rng.next() * 100 < o.hangRate) {
      // Accepted and never answered: no headers, no body, nothing queued; only the client can end it.
      this.#hung.add(res);
      res.on("close", () => this.#hung.delete(res));
      return;
    }

    const index = ++this.#requests;
    const seed =
      parsed.seed !== undefined ? hashString(parsed.promptText, parsed.seed) : hashString(String(index), o.seed);
    const rng = new Rng(seed);
    const plan = planOutput(parsed, o, rng);
    const id = `${api === "chat" ? "chatcmpl" : "cmpl"}-${seed.toString(16)}${index.toString(16)}`;
    const created = Math.floor(Date.now() / 1000);
    const text = new TokenText(rng, plan.words);
    const request = {
      lora: parsed.lora,
      promptText: parsed.promptText,
      promptTokens: parsed.promptTokens,
      maxTokens: plan.tokens,
      finishReason: plan.finishReason,
      ...(parsed.cacheSalt !== undefined ? { cacheSalt: parsed.cacheSalt } : {}),
    };
    const sink = parsed.stream
      ? new StreamSink(api, parsed, id, created, text, res, o.streamBatchTokens)
      : new JsonSink(api, parsed, id, created, text, res, this.#baseHeaders);
    // Throws EngineRejection (429 queue full) before any header is written; tokens flow from a later microtask.
    const seq = this.engine.submit(request, sink);
    if (parsed.stream) {
      res.writeHead(200, {
        ...this.#baseHeaders,
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-cache",
      });
      // vLLM flushes headers when the stream starts, long before the first token.
      res.flushHeaders();
    }
    res.on("close", () => {
      if (!sink.finished) this.engine.cancel(seq);
    });
  }
}

/** vLLM 0.32's GenerateRequest as the render endpoints return it (captured from a real server; model-servers.md §10.1). */
function renderedRequest(
  api: Api,
  parsed: ParsedRequest,
  body: Record<string, unknown>,
  ids: readonly number[],
  rng: Rng,
): Record<string, unknown> {
  const num = (v: unknown, d: number) => (typeof v === "number" && Number.isFinite(v) ? v : d);
  const id =
    Math.floor(rng.next() * 2 ** 32)
      .toString(16)
      .padStart(8, "0") +
    Math.floor(rng.next() * 2 ** 32)
      .toString(16)
      .padStart(8, "0");
  return {
    request_id: `${api === "chat" ? "chatcmpl" : "cmpl"}-${id}`,
    token_ids: ids,
    token_offsets: null,
    features: null,
    content_parts: null,
    sampling_params: {
      presence_penalty: num(body.presence_penalty, 0),
      frequency_penalty: num(body.frequency_penalty, 0),
      repetition_penalty: num(body.repetition_penalty, 1),
      temperature: num(body.temperature, 1),
      top_p: num(body.top_p, 1),
      min_p: num(body.min_p, 0),
      stop: [],
      stop_token_ids: [],
      ...(body.ignore_eos === true ? { ignore_eos: true } : {}),
      ...(parsed.requestedMaxTokens !== undefined ? { max_tokens: parsed.requestedMaxTokens } : {}),
      // vLLM's RequestOutputKind: DELTA (1) when streaming, FINAL_ONLY (2) otherwise.
      output_kind: parsed.stream ? 1 : 2,
      skip_clone: true,
      bad_words: [],
      skip_reading_prefix_cache: false,
    },
    model: parsed.model,
    reasoning_ended: null,
    reasoning_parser_kwargs: null,
    return_token_ids: null,
    output_mode: "tokens",
    stream: parsed.stream,
    stream_options: parsed.stream
      ? { include_usage: parsed.includeUsage, continuous_usage_stats: parsed.continuousUsage }
      : null,
    cache_salt: parsed.cacheSalt ?? null,
    priority: 0,
    kv_transfer_params: null,
    ec_transfer_params: null,
  };
}

function usageJson(seq: SequenceInfo): string {
  const cached = Math.max(0, seq.cachedTokens);
  return `{"prompt_tokens":${seq.promptTokens},"total_tokens":${seq.promptTokens + seq.generated},"completion_tokens":${seq.generated},"prompt_tokens_details":{"cached_tokens":${cached}}}`;
}

/** Streams one SSE event per token from templated prefix/suffix strings. */
class StreamSink implements SequenceSink {
  finished = false;
  #api: Api;
  #parsed: ParsedRequest;
  #text: TokenText;
  #res: ServerResponse;
  #head: string;
  #open: string;
  #tail: string;
  /** --stream-batch-tokens: events held back until this many are pending (the first token never waits). */
  #batch: number;
  #pending = "";
  #pendingTokens = 0;

  constructor(
    api: Api,
    parsed: ParsedRequest,
    id: string,
    created: number,
    text: TokenText,
    res: ServerResponse,
    batch: number,
  ) {
    this.#api = api;
    this.#batch = batch;
    this.#parsed = parsed;
    this.#text = text;
    this.#res = res;
    const object = api === "chat" ? "chat.completion.chunk" : "text_completion";
    this.#head = `data: {"id":"${id}","object":"${object}","created":${created},"model":${JSON.stringify(parsed.model)},"choices":`;
    this.#open = api === "chat" ? `[{"index":0,"delta":{"content":` : `[{"index":0,"text":`;
    this.#tail = api === "chat" ? `},"logprobs":null,"finish_reason":` : `,"logprobs":null,"finish_reason":`;
  }

  onToken(seq: SequenceInfo): void {
    const p = this.#parsed;
    const last = seq.generated >= seq.maxTokens;
    const usage = p.continuousUsage ? `,"usage":${usageJson(seq)}` : p.includeUsage ? `,"usage":null` : "";
    let out = "";
    if (seq.generated === 1 && this.#api === "chat") {
      // vLLM's first chat chunk announces the role with empty content.
      out += `${this.#head}[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]${usage}}\n\n`;
    }
    const reason = last ? `"${seq.finishReason}"` : "null";
    out += `${this.#head}${this.#open}${JSON.stringify(this.#text.next())}${this.#tail}${reason}}]${usage}}\n\n`;
    if (this.#batch <= 1 || seq.generated === 1) {
      this.#res.write(out);
      return;
    }
    this.#pending += out;
    if (++this.#pendingTokens < this.#batch) return;
    this.#res.write(this.#pending);
    this.#pending = "";
    this.#pendingTokens = 0;
  }

  onFinish(seq: SequenceInfo): void {
    this.finished = true;
    let out = this.#pending;
    this.#pending = "";
    if (this.#parsed.includeUsage) out += `${this.#head}[],"usage":${usageJson(seq)}}\n\n`;
    out += "data: [DONE]\n\n";
    this.#res.end(out);
  }
}

/** Collects the token count and writes one JSON body at the end (the text is generated then, in one go). */
class JsonSink implements SequenceSink {
  finished = false;
  #headers: Readonly<Record<string, string>>;
  #api: Api;
  #parsed: ParsedRequest;
  #id: string;
  #created: number;
  #text: TokenText;
  #res: ServerResponse;

  constructor(
    api: Api,
    parsed: ParsedRequest,
    id: string,
    created: number,
    text: TokenText,
    res: ServerResponse,
    headers: Readonly<Record<string, string>>,
  ) {
    this.#headers = headers;
    this.#api = api;
    this.#parsed = parsed;
    this.#id = id;
    this.#created = created;
    this.#text = text;
    this.#res = res;
  }

  onToken(): void {}

  onFinish(seq: SequenceInfo): void {
    this.finished = true;
    let content = "";
    for (let i = 0; i < seq.generated; i++) content += this.#text.next();
    const usage = {
      prompt_tokens: seq.promptTokens,
      total_tokens: seq.promptTokens + seq.generated,
      completion_tokens: seq.generated,
      prompt_tokens_details: { cached_tokens: Math.max(0, seq.cachedTokens) },
    };
    const choice =
      this.#api === "chat"
        ? {
            index: 0,
            message: { role: "assistant", content },
            logprobs: null,
            finish_reason: seq.finishReason,
          }
        : { index: 0, text: content, logprobs: null, finish_reason: seq.finishReason };
    const body = JSON.stringify({
      id: this.#id,
      object: this.#api === "chat" ? "chat.completion" : "text_completion",
      created: this.#created,
      model: this.#parsed.model,
      choices: [choice],
      usage,
    });
    if (this.#res.destroyed) return;
    this.#res.writeHead(200, {
      ...this.#headers,
      "content-type": JSON_TYPE,
      "content-length": Buffer.byteLength(body),
    });
    this.#res.end(body);
  }
}

/**
 * Starts a simulator and resolves once it listens. Many can run in one process (one engine timer each), e.g. one
 * per loopback address 127.0.1.N on the same port, like pods.
 */
export async function startSimulator(options: SimulatorOptions): Promise<Simulator> {
  const resolved = resolveSimOptions(options);
  const sim = new SimulatorServer(resolved);
  const server = sim.server;
  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error): void => {
      server.off("listening", onListening);
      reject(err);
    };
    const onListening = (): void => {
      server.off("error", onError);
      resolve();
    };
    server.once("error", onError);
    server.once("listening", onListening);
    server.listen(resolved.port, resolved.host);
  });
  const info = server.address() as AddressInfo;
  sim.setPort(info.port);
  const host = info.family === "IPv6" || info.address.includes(":") ? `[${info.address}]` : info.address;
  let closing: Promise<void> | undefined;
  return {
    url: `http://${host}:${info.port}`,
    address: info.address,
    port: info.port,
    engine: sim.engine,
    options: resolved,
    server,
    endpointHits: () => sim.endpointHits(),
    close(): Promise<void> {
      closing ??= new Promise<void>((resolve) => {
        sim.engine.close();
        sim.dropHung();
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
