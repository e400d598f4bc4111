/**
 * One ext_proc stream = one HTTP request. This is GIE's endpoint-picker protocol (handlers/server.go@v1.5.0,
 * docs/design/ext-proc-protocol.md §5) with the §7 fixes:
 *
 * - FULL_DUPLEX_STREAMED (what every GIE data plane uses): stay silent on request_headers, buffer body chunks,
 *   route at body end_of_stream — or at request_trailers, which GIE ignores and therefore stalls on — then answer
 *   headers → body chunks (≤ 62000 bytes) → trailers, strictly in that order.
 * - BUFFERED (Envoy AI Gateway's per-pool option, v0.2-era guides): Envoy waits for each answer, so request_headers
 *   gets an empty reply at once and the routing mutation rides on the body response (§5.13). GIE v1 stalls here.
 * - The subset hint survives messages that do not repeat it; the response status is read from `:status`.
 *
 * Messages are processed strictly one after another, even while route() is pending (flow-control queue), so
 * replies can never overtake each other. `done()` runs exactly once on every path.
 */
import { randomUUID } from "node:crypto";
import type * as grpc from "@grpc/grpc-js";
import { LazyCancellation } from "../common/cancellation.js";
import {
  DEFAULT_MAX_BODY_BYTES,
  DESTINATION_ENDPOINT_HEADER,
  DESTINATION_ENDPOINT_SERVED_KEY,
  DESTINATION_METADATA_NAMESPACE,
  REQUEST_ID_HEADER,
  SUBSET_HINT_KEY,
  SUBSET_HINT_NAMESPACE,
  SYSTEM_OWNED_HEADERS,
} from "../common/constants.js";
import { SwitchyardError } from "../common/errors.js";
import { type Logger, silentLogger } from "../observability/logger.js";
import type { IncomingRequest, LifecycleFactory, RequestLifecycle, RoutingDecision } from "../request/lifecycle.js";
import type { ProcessingResponseWire } from "./codec.js";
import { immediateResponseFor } from "./immediate.js";
import { Incoming, parseHeaders, RequestHeaders } from "./incoming.js";
import {
  BodySendMode,
  bodyResponse,
  destinationMetadata,
  HeaderSendMode,
  type HttpBody,
  type HttpHeaders,
  headersResponse,
  type Metadata,
  type ProcessingRequest,
  type ProcessingResponse,
  splitBody,
  streamedChunk,
  stringList,
  trailersResponse,
} from "./messages.js";

export type BodyMode = "full-duplex" | "buffered";

export interface StreamOptions {
  /** Largest request body accepted; larger → 413 SY_BODY_TOO_LARGE as soon as exceeded. Default 16 MiB. */
  readonly maxBodyBytes?: number;
  /** Body mode when the first message carries no `protocol_config` (older Envoy). Default "full-duplex". */
  readonly defaultRequestBodyMode?: BodyMode;
  /** Also echo every non-system request header, as GIE does (strict parity). Default false. */
  readonly echoRequestHeaders?: boolean;
  /** Default: silent. */
  readonly logger?: Logger;
}

export type ProcessCall = grpc.ServerDuplexStream<ProcessingRequest, ProcessingResponse>;

enum State {
  /** Waiting for request_headers. */
  RequestHeaders = 0,
  /** request_headers seen, collecting body chunks. */
  RequestBody = 1,
  /** route() is running (possibly queued in flow control). */
  Routing = 2,
  /** The request-path answer went out; waiting for the response path. */
  Routed = 3,
  /** response_headers seen, response body/trailers may follow. */
  ResponseBody = 4,
  /** The response ended (end_of_stream or trailers); only Envoy's half-close remains. */
  ResponseDone = 5,
  Closed = 6,
}

const STATE_NAMES = [
  "awaiting request_headers",
  "receiving the request body",
  "routing",
  "routed",
  "receiving the response body",
  "response complete",
  "closed",
] as const;

/** Queue marker for Envoy's half-close, so it is handled after every message that preceded it. */
const HALF_CLOSE = Symbol("half-close");
type QueueItem = ProcessingRequest | typeof HALF_CLOSE;

const SSE_CONTENT_TYPE = "text/event-stream";
const EMPTY = Buffer.alloc(0);

function protocolError(message: string): SwitchyardError {
  return new SwitchyardError("SY_PROTOCOL", message);
}

/** STREAMED / BUFFERED_PARTIAL request bodies kept streaming after request_headers asked Envoy to buffer them. */
function overrideIgnored(): SwitchyardError {
  return new SwitchyardError(
    "SY_PROTOCOL",
    "request_body_mode STREAMED/BUFFERED_PARTIAL needs allow_mode_override: true on Envoy's ext_proc filter (the picker routes on the whole body); or use FULL_DUPLEX_STREAMED or BUFFERED",
  );
}

function concat(chunks: Buffer[], total: number): Buffer {
  if (chunks.length === 0) return EMPTY;
  if (chunks.length === 1) return chunks[0]!;
  return Buffer.concat(chunks, total);
}

function sameBytes(a: Buffer, b: Buffer): boolean {
  return a === b || a.equals(b);
}

function isThenable<T>(value: T | Promise<T>): value is Promise<T> {
  return typeof (value as { then?: unknown } | null)?.then === "function";
}

/**
 * Drives one Process call. Construct it when the call opens; it attaches its own listeners and ends the call.
 * `onClose` fires once, after `done()`, so the server can count active streams.
 */
export class ExtProcStream {
  readonly #call: ProcessCall;
  readonly #lifecycle: RequestLifecycle;
  readonly #maxBodyBytes: number;
  readonly #echo: boolean;
  readonly #logger: Logger;
  readonly #onClose: (() => void) | undefined;

  #state: State = State.RequestHeaders;
  /** "streamed" (STREAMED / BUFFERED_PARTIAL) lasts until request_headers is answered with a mode override. */
  #requestMode: BodyMode | "streamed";
  /**
   * "buffered" / "streamed" both answer each body message with one BodyResponse; they differ in finality.
   * "none": Envoy sends no response body, so the exchange is over once response_headers is answered.
   */
  #responseMode: BodyMode | "streamed" | "none";
  /** The response_body_mode number Envoy announced, repeated in a mode override (which replaces every field). */
  #responseModeNumber: number = BodySendMode.FULL_DUPLEX_STREAMED;
  /** request_headers was answered with an override to BUFFERED; the next body message shows whether Envoy took it. */
  #overrideAsked = false;
  /** The response is a local reply of an earlier filter (no request was ever routed): pass it through untouched. */
  #localReply = false;
  #sawFirst = false;

  // Serial processing: while a message's handling is pending (async route, write backpressure) later items wait.
  #busy = false;
  #queue: QueueItem[] = [];
  /** The message being processed had observability_mode set: nothing may be written for it. */
  #observing = false;
  #drainWaiter: (() => void) | undefined;

  // Request state.
  #headers: RequestHeaders | undefined;
  #requestId = "";
  #generatedRequestId = false;
  #headerOnly = false;
  #chunks: Buffer[] = [];
  #bodyBytes = 0;
  #endedWithTrailers = false;
  /** BUFFERED mode: the body message had no end_of_stream, so request_trailers will follow. */
  #expectRequestTrailers = false;
  #subsetHint: string[] | undefined;
  #served: string | undefined;
  #cancel: LazyCancellation | undefined;

  // Response state.
  #responseStreaming = false;
  #responseFinalDelivered = false;
  #responseChunks: Buffer[] = [];
  #responseBytes = 0;

  constructor(call: ProcessCall, factory: LifecycleFactory, options: StreamOptions = {}, onClose?: () => void) {
    this.#call = call;
    this.#maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
    this.#echo = options.echoRequestHeaders ?? false;
    this.#logger = options.logger ?? silentLogger;
    this.#onClose = onClose;
    this.#requestMode = options.defaultRequestBodyMode ?? "full-duplex";
    this.#responseMode = this.#requestMode;
    call.on("data", (msg: ProcessingRequest) => this.#enqueue(msg));
    call.on("end", () => this.#enqueue(HALF_CLOSE));
    call.on("cancelled", () => this.#finish("cancelled"));
    call.on("error", (err: Error) => {
      this.#logger.debug({ err }, "ext_proc stream error");
      this.#finish("cancelled");
    });
    let lifecycle: RequestLifecycle;
    try {
      lifecycle = factory.begin();
    } catch (err) {
      // No lifecycle means nobody to call done() on: answer the first message with a 500 and close.
      this.#lifecycle = NOOP_LIFECYCLE;
      this.#fail(err);
      return;
    }
    this.#lifecycle = lifecycle;
  }

  /** True once the stream has finished (done() called). */
  get closed(): boolean {
    return this.#state === State.Closed;
  }

  // ----------------------------------------------------------------------------------------------------------
  // Serial queue

  #enqueue(item: QueueItem): void {
    if (this.#state === State.Closed) return;
    if (this.#busy) {
      this.#queue.push(item);
      return;
    }
    this.#run(item);
  }

  #run(item: QueueItem): void {
    let pending: Promise<void> | undefined;
    try {
      pending = item === HALF_CLOSE ? this.#onHalfClose() : this.#onMessage(item);
    } catch (err) {
      this.#fail(err);
      return;
    }
    if (pending === undefined) return;
    this.#busy = true;
    pending.then(
      () => this.#resume(),
      (err: unknown) => this.#fail(err),
    );
  }

  #resume(): void {
    this.#busy = false;
    while (!this.#busy && this.#queue.length > 0 && this.#state !== State.Closed) this.#run(this.#queue.shift()!);
  }

  // ----------------------------------------------------------------------------------------------------------
  // Dispatch

  #onMessage(msg: ProcessingRequest): Promise<void> | undefined {
    this.#observing = msg.observability_mode === true;
    if (!this.#sawFirst) {
      this.#sawFirst = true;
      const config = msg.protocol_config;
      if (config !== undefined) {
        const request = config.request_body_mode;
        if (request === BodySendMode.FULL_DUPLEX_STREAMED) this.#requestMode = "full-duplex";
        else if (request === BodySendMode.BUFFERED) this.#requestMode = "buffered";
        // Envoy sends no body in these modes until request_headers is answered: docs/design/ext-proc-protocol.md
        // "Body modes".
        else if (request === BodySendMode.STREAMED || request === BodySendMode.BUFFERED_PARTIAL) {
          this.#requestMode = "streamed";
        }
        const response = config.response_body_mode;
        this.#responseModeNumber = response ?? BodySendMode.NONE;
        if (response === BodySendMode.FULL_DUPLEX_STREAMED) this.#responseMode = "full-duplex";
        else if (response === BodySendMode.BUFFERED) this.#responseMode = "buffered";
        // STREAMED and BUFFERED_PARTIAL also want exactly one BodyResponse per body message.
        else if (response !== undefined && response !== BodySendMode.NONE) this.#responseMode = "streamed";
        // proto3 leaves NONE (0) off the wire: an announced config without a response mode means NONE.
        else this.#responseMode = "none";
      }
    }
    if (msg.metadata_context !== undefined) this.#readMetadata(msg.metadata_context);
    switch (msg.request) {
      case "request_headers":
        return this.#onRequestHeaders(msg.request_headers ?? {});
      case "request_body":
        return this.#onRequestBody(msg.request_body ?? {});
      case "request_trailers":
        return this.#onRequestTrailers();
      case "response_headers":
        return this.#onResponseHeaders(msg.response_headers ?? {});
      case "response_body":
        return this.#onResponseBody(msg.response_body ?? {});
      case "response_trailers":
        return this.#onResponseTrailers();
      default:
        throw protocolError("ProcessingRequest carries no request/response member");
    }
  }

  /** GIE overwrites its copy on every message; we keep the last value seen so a hint is never lost (§7). */
  #readMetadata(metadata: Metadata): void {
    const filter = metadata.filter_metadata;
    if (filter === undefined) return;
    const hint = filter[SUBSET_HINT_NAMESPACE]?.fields?.[SUBSET_HINT_KEY];
    if (hint !== undefined) {
      const list = stringList(hint);
      if (list !== undefined) this.#subsetHint = list;
    }
    const served = filter[DESTINATION_METADATA_NAMESPACE]?.fields?.[DESTINATION_ENDPOINT_SERVED_KEY];
    if (served !== undefined) {
      const list = stringList(served);
      if (list !== undefined && list.length > 0) this.#served = list[0];
    }
  }

  // ----------------------------------------------------------------------------------------------------------
  // Request path

  #onRequestHeaders(message: HttpHeaders): Promise<void> | undefined {
    if (this.#state !== State.RequestHeaders) {
      throw protocolError(`unexpected second request_headers (stream is ${STATE_NAMES[this.#state]})`);
    }
    const headers = new RequestHeaders(message.headers?.headers ?? []);
    const id = headers.get(REQUEST_ID_HEADER);
    if (id === undefined || id === "") {
      this.#requestId = randomUUID();
      this.#generatedRequestId = true;
      // As GIE: the generated id joins the stored headers so everything downstream sees one id.
      headers.set(REQUEST_ID_HEADER, this.#requestId);
    } else {
      this.#requestId = id;
    }
    this.#headers = headers;
    if (message.end_of_stream === true) {
      this.#headerOnly = true;
      return this.#route();
    }
    this.#state = State.RequestBody;
    // BUFFERED: Envoy holds the body until it gets this answer, so answer now (GIE v1 stalls here).
    if (this.#requestMode === "buffered") return this.#writeAll([headersResponse("request_headers")]);
    if (this.#requestMode === "streamed") {
      // Envoy waits for this answer before it sends any body chunk, and the route needs the whole body: ask Envoy to
      // buffer it (honoured with allow_mode_override: true).
      this.#requestMode = "buffered";
      this.#overrideAsked = true;
      const answer: ProcessingResponseWire = {
        ...headersResponse("request_headers"),
        mode_override: {
          request_header_mode: HeaderSendMode.SEND,
          response_header_mode: HeaderSendMode.SEND,
          request_body_mode: BodySendMode.BUFFERED,
          response_body_mode: this.#responseModeNumber,
          request_trailer_mode: HeaderSendMode.SEND,
          response_trailer_mode: HeaderSendMode.SEND,
        },
      };
      return this.#writeAll([answer]);
    }
    return undefined;
  }

  /** The body so far is shorter than the request's content-length (false without one). */
  #shortOfContentLength(): boolean {
    const declared = this.#headers?.get("content-length");
    return declared !== undefined && /^\d+$/.test(declared) && this.#bodyBytes < Number(declared);
  }

  #onRequestBody(message: HttpBody): Promise<void> | undefined {
    if (this.#state !== State.RequestBody) {
      if (this.#state === State.RequestHeaders) throw protocolError("request_body before request_headers");
      // More body after routing on an overridden (buffered) body: Envoy kept streaming, the override was ignored.
      if (this.#overrideAsked && !this.#headerOnly) throw overrideIgnored();
      throw protocolError(
        this.#headerOnly
          ? "request_body after request_headers with end_of_stream"
          : `request_body after the request body ended (stream is ${STATE_NAMES[this.#state]})`,
      );
    }
    const chunk = message.body;
    if (chunk !== undefined && chunk.length > 0) {
      this.#bodyBytes += chunk.length;
      if (this.#bodyBytes > this.#maxBodyBytes) {
        this.#chunks = [];
        throw new SwitchyardError(
          "SY_BODY_TOO_LARGE",
          `request body exceeds the limit of ${this.#maxBodyBytes} bytes (--max-body-bytes)`,
        );
      }
      this.#chunks.push(chunk);
    }
    if (this.#requestMode === "buffered") {
      // A buffered body without end_of_stream is the whole body with trailers to follow (they come once this is
      // answered); a STREAMED chunk looks the same, and means the override was ignored and the headers already
      // left without a destination. Only a content-length the chunk falls short of tells them apart here; without
      // one, the next chunk does (#onRequestBody in state Routed).
      if (this.#overrideAsked && message.end_of_stream !== true && this.#shortOfContentLength()) {
        throw overrideIgnored();
      }
      // The single buffered message is the whole body; without end_of_stream, trailers follow it.
      this.#expectRequestTrailers = message.end_of_stream !== true;
      return this.#route();
    }
    if (message.end_of_stream === true) return this.#route();
    return undefined;
  }

  #onRequestTrailers(): Promise<void> | undefined {
    if (this.#requestMode === "full-duplex") {
      if (this.#state === State.RequestBody) {
        // Envoy marks the end of a body that has trailers with the trailers message, not end_of_stream (§4.3).
        this.#endedWithTrailers = true;
        return this.#route();
      }
    } else if (this.#state === State.Routed && this.#expectRequestTrailers) {
      this.#expectRequestTrailers = false;
      return this.#writeAll([trailersResponse("request_trailers")]);
    } else if (this.#state === State.RequestBody) {
      throw protocolError(
        "request_trailers without a request_body in BUFFERED mode (the destination header can no longer be set)",
      );
    }
    if (this.#state === State.RequestHeaders) throw protocolError("request_trailers before request_headers");
    throw protocolError(`unexpected request_trailers (stream is ${STATE_NAMES[this.#state]})`);
  }

  #route(): Promise<void> | undefined {
    this.#state = State.Routing;
    const headers = this.#headers!;
    const body = concat(this.#chunks, this.#bodyBytes);
    this.#chunks = [];
    const request = new Incoming(this.#requestId, headers, body, this.#headerOnly, this.#subsetHint);
    this.#cancel = new LazyCancellation();
    const result = this.#lifecycle.route(request, this.#cancel);
    if (isThenable(result)) return result.then((decision) => this.#routed(request, decision));
    return this.#routed(request, result);
  }

  #routed(request: IncomingRequest, decision: RoutingDecision): Promise<void> | undefined {
    // Cancelled while route() was pending: done() already ran, the decision has nowhere to go.
    if (this.#state === State.Closed) return undefined;
    const endpoints = decision?.endpoints;
    if (!Array.isArray(endpoints) || endpoints.length === 0) {
      throw new SwitchyardError("SY_INTERNAL", "route() returned a decision without endpoints");
    }
    const body = decision.body;
    if (!Buffer.isBuffer(body)) throw new SwitchyardError("SY_INTERNAL", "route() returned a decision without a body");
    this.#state = State.Routed;
    const destination = endpoints.join(",");
    const buffered = this.#requestMode === "buffered" && !request.headerOnly;
    const bodyChanged = buffered && !sameBytes(body, request.body);

    const set: [string, string][] = [[DESTINATION_ENDPOINT_HEADER, destination]];
    // Envoy strips content-length when it may mutate a full-duplex body (§4.3); set it back or HTTP/1 upstreams
    // get chunked encoding. In BUFFERED mode only a changed body needs a new one.
    if (!request.headerOnly && body.length > 0 && (!buffered || bodyChanged)) {
      set.push(["content-length", String(body.length)]);
    }
    if (this.#generatedRequestId) set.push([REQUEST_ID_HEADER, this.#requestId]);
    const extra = decision.setHeaders;
    const echo = this.#echo && !request.headerOnly;
    if (extra !== undefined || echo) {
      // Our own headers win; content-length is reserved even when not set (only we know the forwarded length).
      const taken = new Set<string>(["content-length"]);
      for (const pair of set) taken.add(pair[0]);
      for (const pair of extra ?? []) {
        const name = pair[0].toLowerCase();
        if (taken.has(name)) continue;
        taken.add(name);
        set.push([name, pair[1]]);
      }
      if (echo) {
        for (const [name, value] of request.headers) {
          if (taken.has(name) || SYSTEM_OWNED_HEADERS.has(name)) continue;
          set.push([name, value]);
        }
      }
    }
    const metadata = destinationMetadata(destination, decision.metadata);

    if (request.headerOnly) {
      return this.#writeAll([headersResponse("request_headers", { setHeaders: set, clearRouteCache: true }, metadata)]);
    }
    if (buffered) {
      const options = bodyChanged
        ? { setHeaders: set, clearRouteCache: true, body }
        : { setHeaders: set, clearRouteCache: true };
      return this.#writeAll([bodyResponse("request_body", options, metadata)]);
    }
    const out: ProcessingResponse[] = [
      headersResponse("request_headers", { setHeaders: set, clearRouteCache: true }, metadata),
    ];
    // With trailers the body must not carry end_of_stream: the trailers response ends the direction.
    this.#pushChunks(out, "request_body", body, !this.#endedWithTrailers);
    if (this.#endedWithTrailers) out.push(trailersResponse("request_trailers"));
    return this.#writeAll(out);
  }

  #pushChunks(
    out: ProcessingResponse[],
    phase: "request_body" | "response_body",
    body: Buffer,
    endOfStream: boolean,
  ): void {
    const chunks = splitBody(body);
    const last = chunks.length - 1;
    for (let i = 0; i <= last; i++) out.push(streamedChunk(phase, chunks[i]!, endOfStream && i === last));
  }

  // ----------------------------------------------------------------------------------------------------------
  // Response path

  #onResponseHeaders(message: HttpHeaders): Promise<void> | undefined {
    const ended = message.end_of_stream === true;
    if (this.#state === State.RequestHeaders || this.#state === State.RequestBody) {
      // A local reply (an earlier filter's 401/403/CORS preflight, Envoy's own 413) is encoded back through this
      // filter on a stream whose request never reached us or never completed: docs/design/ext-proc-protocol.md
      // "A response without a request". It is not ours to change or count.
      this.#localReply = true;
      this.#chunks = [];
      this.#expectRequestTrailers = false;
      this.#state = ended ? State.ResponseDone : State.ResponseBody;
      return this.#answerLast([headersResponse("response_headers")], ended || this.#responseMode === "none");
    }
    if (this.#state !== State.Routed) {
      if (this.#state < State.Routed) {
        throw protocolError(`response_headers before the request was routed (stream is ${STATE_NAMES[this.#state]})`);
      }
      throw protocolError("unexpected second response_headers");
    }
    // BUFFERED request trailers that never came are moot once the response starts.
    this.#expectRequestTrailers = false;
    const headers = parseHeaders(message.headers);
    const statusText = headers.get(":status") ?? headers.get("status");
    const status = statusText === undefined ? 0 : Number.parseInt(statusText, 10);
    this.#responseStreaming = (headers.get("content-type") ?? "").includes(SSE_CONTENT_TYPE);
    const result = this.#lifecycle.responseHeaders({
      status: Number.isFinite(status) ? status : 0,
      headers,
      servedEndpoint: this.#served,
    });
    this.#state = ended ? State.ResponseDone : State.ResponseBody;
    const setHeaders = result?.setHeaders;
    return this.#answerLast(
      [headersResponse("response_headers", setHeaders === undefined ? {} : { setHeaders })],
      ended || this.#responseMode === "none",
    );
  }

  #onResponseBody(message: HttpBody): Promise<void> | undefined {
    if (this.#state !== State.ResponseBody) {
      if (this.#state < State.ResponseBody) {
        throw protocolError(`response_body before response_headers (stream is ${STATE_NAMES[this.#state]})`);
      }
      throw protocolError("response_body after the response ended");
    }
    const chunk = message.body ?? EMPTY;
    const eos = message.end_of_stream === true;
    if (eos) this.#state = State.ResponseDone;

    if (this.#localReply) {
      const echo =
        this.#responseMode === "full-duplex"
          ? streamedChunk("response_body", chunk, eos)
          : bodyResponse("response_body");
      return this.#answerLast([echo], eos);
    }

    if (this.#responseMode !== "full-duplex") {
      // BUFFERED delivers the whole body in this one message even when trailers follow.
      const final = eos || this.#responseMode === "buffered";
      const out = this.#deliverResponse(chunk, final);
      let answer: ProcessingResponse;
      if (sameBytes(out, chunk)) answer = bodyResponse("response_body");
      else if (this.#responseMode === "buffered") {
        // Envoy still holds the response headers in BUFFERED mode and refuses a body whose length differs from
        // their content-length (a local 500); in the other modes it has removed content-length itself.
        answer = bodyResponse("response_body", { body: out, setHeaders: [["content-length", String(out.length)]] });
      } else answer = bodyResponse("response_body", { body: out });
      return this.#answerLast([answer], eos);
    }

    if (!this.#responseStreaming) {
      if (chunk.length > 0) {
        this.#responseBytes += chunk.length;
        this.#responseChunks.push(chunk);
      }
      if (!eos) {
        // A response is never refused for size; past the cap we stop buffering and pass chunks through instead.
        if (this.#responseBytes <= this.#maxBodyBytes) return undefined;
        this.#responseStreaming = true;
        const pending = concat(this.#responseChunks, this.#responseBytes);
        this.#responseChunks = [];
        const out: ProcessingResponse[] = [];
        this.#pushChunks(out, "response_body", this.#deliverResponse(pending, false), false);
        return this.#writeAll(out);
      }
      const whole = concat(this.#responseChunks, this.#responseBytes);
      this.#responseChunks = [];
      const out: ProcessingResponse[] = [];
      this.#pushChunks(out, "response_body", this.#deliverResponse(whole, true), true);
      return this.#answerLast(out, true);
    }

    const passed = this.#deliverResponse(chunk, eos);
    // Nothing to say for a non-final chunk the lifecycle held back (e.g. half an SSE line).
    if (passed.length === 0 && !eos) return undefined;
    const out: ProcessingResponse[] = [];
    this.#pushChunks(out, "response_body", passed, eos);
    return this.#answerLast(out, eos);
  }

  #onResponseTrailers(): Promise<void> | undefined {
    if (this.#state !== State.ResponseBody) {
      if (this.#state < State.ResponseBody) {
        throw protocolError(`response_trailers before response_headers (stream is ${STATE_NAMES[this.#state]})`);
      }
      throw protocolError("response_trailers after the response ended");
    }
    this.#state = State.ResponseDone;
    if (this.#localReply) return this.#answerLast([trailersResponse("response_trailers")], true);
    const out: ProcessingResponse[] = [];
    if (!this.#responseFinalDelivered) {
      const pending = concat(this.#responseChunks, this.#responseBytes);
      this.#responseChunks = [];
      const passed = this.#deliverResponse(pending, true);
      // Trailers end the direction, so flushed bytes go out without end_of_stream (GIE does the same).
      if (this.#responseMode === "full-duplex" && passed.length > 0) {
        this.#pushChunks(out, "response_body", passed, false);
      }
    }
    out.push(trailersResponse("response_trailers"));
    return this.#answerLast(out, true);
  }

  #deliverResponse(chunk: Buffer, final: boolean): Buffer {
    if (final) this.#responseFinalDelivered = true;
    const out = this.#lifecycle.responseBody(chunk, final);
    if (!Buffer.isBuffer(out)) throw new SwitchyardError("SY_INTERNAL", "responseBody() did not return a Buffer");
    return out;
  }

  // ----------------------------------------------------------------------------------------------------------
  // Writing, with backpressure

  /**
   * Writes, and when `last` (Envoy will send nothing more that needs an answer) ends the call with OK. Left open,
   * Envoy resets the stream when its HTTP exchange ends, and Node's HTTP/2 rapid-reset guard closes the whole
   * connection after a burst of such resets, refusing every stream on it: docs/design/ext-proc-protocol.md
   * "Who ends the stream".
   */
  #answerLast(messages: ProcessingResponse[], last: boolean): Promise<void> | undefined {
    const pending = this.#writeAll(messages);
    if (!last) return pending;
    if (pending === undefined) {
      this.#complete();
      return undefined;
    }
    return pending.then(() => this.#complete());
  }

  #complete(): void {
    if (this.#state === State.Closed) return;
    this.#finish("completed");
    this.#endCall();
  }

  /** Writes in order; when grpc-js buffers too much, waits for 'drain' before the next message (and item). */
  #writeAll(messages: ProcessingResponse[]): Promise<void> | undefined {
    if (this.#observing) return undefined;
    for (let i = 0; i < messages.length; i++) {
      if (this.#state === State.Closed) return undefined;
      if (!this.#call.write(messages[i]!)) {
        return this.#waitDrain().then(() => this.#writeAll(messages.slice(i + 1)));
      }
    }
    return undefined;
  }

  /** The 'drain' listener is attached only when a write actually backs up: one listener less per stream. */
  #waitDrain(): Promise<void> {
    return new Promise((resolve) => {
      this.#drainWaiter = resolve;
      this.#call.once("drain", () => this.#releaseDrain());
    });
  }

  #releaseDrain(): void {
    const waiter = this.#drainWaiter;
    this.#drainWaiter = undefined;
    waiter?.();
  }

  // ----------------------------------------------------------------------------------------------------------
  // Endings

  #onHalfClose(): undefined {
    // Envoy half-closes once the HTTP exchange is over; before the request was answered it means the request is gone.
    const completed = this.#state >= State.Routed && this.#state !== State.Closed;
    this.#finish(completed ? "completed" : "cancelled");
    this.#endCall();
    return undefined;
  }

  #fail(err: unknown): void {
    if (this.#state === State.Closed) return;
    const { error, response } = immediateResponseFor(err);
    if (error.code === "SY_INTERNAL") {
      this.#logger.error({ err, requestId: this.#requestId }, "ext_proc stream failed");
    } else if (this.#logger.isLevelEnabled("debug")) {
      this.#logger.debug({ code: error.code, requestId: this.#requestId, msg: error.message }, "immediate response");
    }
    if (!this.#observing) {
      try {
        this.#call.write(response);
      } catch (writeErr) {
        this.#logger.debug({ err: writeErr }, "ext_proc write failed");
      }
    }
    this.#finish("error");
    this.#endCall();
  }

  #endCall(): void {
    try {
      this.#call.end();
    } catch (err) {
      this.#logger.debug({ err }, "ext_proc end failed");
    }
  }

  #finish(outcome: "completed" | "cancelled" | "error"): void {
    if (this.#state === State.Closed) return;
    this.#state = State.Closed;
    this.#queue = [];
    this.#chunks = [];
    this.#responseChunks = [];
    this.#headers = undefined;
    if (outcome !== "completed")
      this.#cancel?.abort(new SwitchyardError("SY_CLIENT_DISCONNECTED", `stream ${outcome}`));
    this.#releaseDrain();
    try {
      this.#lifecycle.done(outcome);
    } catch (err) {
      this.#logger.error({ err, requestId: this.#requestId }, "lifecycle.done() threw");
    }
    this.#onClose?.();
  }
}

const NOOP_LIFECYCLE: RequestLifecycle = {
  route() {
    throw new SwitchyardError("SY_INTERNAL", "no request lifecycle");
  },
  responseHeaders() {
    return {};
  },
  responseBody(chunk) {
    return chunk;
  },
  done() {},
};
