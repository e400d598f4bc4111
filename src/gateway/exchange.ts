/**
 * One HTTP request through the gateway, playing Envoy's ext_proc filter in FULL_DUPLEX_STREAMED mode both ways
 * (or, without an EPP, a plain proxy for the round-robin / least-request baselines).
 *
 * Request path: headers and every client body chunk go to the EPP as they arrive, without waiting for answers;
 * the EPP's headers response (mutations + destination) starts the upstream request, and its streamed body chunks
 * become the upstream body. Response path: upstream headers and chunks go to the EPP, and each echoed chunk is
 * written to the client at once. Failures follow Envoy (docs/design/ext-proc-protocol.md §4.2, §5.12).
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Readable } from "node:stream";
import type { Dispatcher } from "undici";
import {
  DESTINATION_ENDPOINT_HEADER,
  DESTINATION_ENDPOINT_SERVED_KEY,
  DESTINATION_METADATA_NAMESPACE,
  SUBSET_HINT_NAMESPACE,
} from "../common/constants.js";
import type { Logger } from "../observability/logger.js";
import { BodyFeed } from "./body-feed.js";
import { type Balancer, type InFlight, parseEndpointList } from "./endpoints.js";
import {
  type EppClient,
  FULL_DUPLEX_STREAMED,
  type ImmediateResponseMsg,
  type MetadataMsg,
  type ProcessCall,
  type ProcessingRequestMsg,
  type ProcessingResponseMsg,
  type StructMsg,
  stringStruct,
  structString,
} from "./epp-client.js";
import { GATEWAY_ERROR_HEADER, GatewayError } from "./errors.js";
import {
  applyHeaderMutation,
  clientResponseHeaders,
  getHeader,
  type HeaderList,
  type HeaderMutationMsg,
  removeHeader,
  requestHead,
  responseHeaderList,
  toHeaderMap,
  upstreamRequestHeaders,
} from "./headers.js";
import type { StatsRecorder } from "./stats.js";
import type { Upstream } from "./upstream.js";

/** Shared, per-gateway state every exchange uses. */
export interface GatewayContext {
  readonly upstream: Upstream;
  readonly stats: StatsRecorder;
  readonly inFlight: InFlight;
  /** Baseline policy (round-robin or least-request). */
  readonly balancer: Balancer;
  /** Fail-open routing is round-robin over the static list, whatever the baseline. */
  readonly failOpenBalancer: Balancer;
  readonly endpoints: () => readonly string[];
  readonly epp: EppClient | undefined;
  readonly failOpen: boolean;
  readonly eppTimeoutMs: number;
  /**
   * Plays an earlier filter (basic auth) in front of the EPP's: a request without this header is answered 401 by
   * the gateway itself, and that local reply is encoded through the EPP's stream as Envoy does. Undefined = off.
   */
  readonly requireHeader: string | undefined;
  /** Close finished ext_proc streams like Envoy's default: half-close and reset at once (options.ts ExtProcClose). */
  readonly extProcReset: boolean;
  /** `envoy.lb.subset_hint` namespace value, prebuilt once. */
  readonly subsetHint: StructMsg | undefined;
  readonly logger: Logger;
}

export const SERVED_ENDPOINT_HEADER = DESTINATION_ENDPOINT_SERVED_KEY;

const EMPTY = Buffer.alloc(0);
const SUBSET_NAMESPACE = SUBSET_HINT_NAMESPACE;

// Pause reasons: a source resumes only when every reason it was paused for has cleared.
const P_FEED = 1; // our own BodyFeed reader is full (upstream request body backpressure)
const P_EPP = 2; // the gRPC stream's write side is full
const P_CLIENT = 4; // the client response socket is full

interface Pausable {
  pause(): unknown;
  resume(): unknown;
}

class Valve {
  #mask = 0;
  constructor(readonly target: Pausable) {}
  hold(bit: number): void {
    if (this.#mask === 0) this.target.pause();
    this.#mask |= bit;
  }
  release(bit: number): void {
    if ((this.#mask & bit) === 0) return;
    this.#mask &= ~bit;
    if (this.#mask === 0) this.target.resume();
  }
}

export class Exchange {
  readonly #ctx: GatewayContext;
  readonly #req: IncomingMessage;
  readonly #res: ServerResponse;
  /** The request header map as Envoy would hand it to ext_proc (pseudo-headers first). */
  readonly #headers: HeaderList;
  readonly #headerOnly: boolean;
  /** The client's body, kept for fail-open until the EPP has produced the upstream body. */
  readonly #clientFeed: BodyFeed;
  readonly #clientValve: Valve;
  #finished = false;
  #resetByUs = false;
  #clientHeadersSent = false;

  // ---- upstream ----
  #upstreamAbort: AbortController | undefined;
  /** Bumped whenever an upstream attempt is superseded (fail-open takeover) so a late result is discarded. */
  #generation = 0;
  #inFlightEndpoint: string | undefined;
  #servedEndpoint = "";
  #upstreamBody: Readable | undefined;
  #upstreamValve: Valve | undefined;
  #upstreamEnded = false;
  #upstreamTrailers: Record<string, string> | undefined;

  // ---- EPP stream ----
  #call: ProcessCall | undefined;
  #callValve: Valve | undefined;
  /** The processor is still in the loop (not failed, not closed). */
  #eppActive = false;
  #callOpen = false;
  #eppDrainPending = false;
  #timer: NodeJS.Timeout | undefined;
  #metadata: MetadataMsg | undefined;
  #reqFinalSent = false;
  #reqHeadersDone = false;
  #reqDone = false;
  #echoFeed: BodyFeed | undefined;
  #respList: HeaderList | undefined;
  #respEos = false;
  #respHeadersSent = false;
  #respHeadersDone = false;
  #respFinalSent = false;
  #respDone = false;
  /** Raw upstream chunks sent to the EPP while nothing echoed has reached the client (fail-open continuation). */
  #respRaw: Buffer[] | undefined;

  constructor(ctx: GatewayContext, req: IncomingMessage, res: ServerResponse) {
    this.#ctx = ctx;
    this.#req = req;
    this.#res = res;
    const head = requestHead(req);
    this.#headers = head.list;
    this.#headerOnly = head.headerOnly;
    this.#clientValve = new Valve(req);
    this.#clientFeed = new BodyFeed((paused) =>
      paused ? this.#clientValve.hold(P_FEED) : this.#clientValve.release(P_FEED),
    );
  }

  start(): void {
    const ctx = this.#ctx;
    ctx.stats.requests++;
    this.#res.on("close", () => this.#onClientClose());
    this.#res.on("finish", () => {
      if (!this.#resetByUs) ctx.stats.completed++;
    });
    const required = ctx.requireHeader;
    if (ctx.epp !== undefined && required !== undefined && getHeader(this.#headers, required) === undefined) {
      this.#localReply(ctx.epp);
      return;
    }
    if (ctx.epp !== undefined) this.#startEpp(ctx.epp);
    if (this.#headerOnly) {
      this.#clientFeed.end();
      // Node still needs the (empty) request consumed for keep-alive.
      this.#req.resume();
    } else {
      this.#req.on("data", (chunk: Buffer) => this.#onClientData(chunk));
      this.#req.on("end", () => this.#onClientEnd());
      this.#req.on("error", (err) => this.#clientFeed.fail(err));
    }
    if (ctx.epp === undefined) void this.#direct(ctx.balancer.order(ctx.endpoints()));
  }

  // ================= client request body =================

  #onClientData(chunk: Buffer): void {
    this.#clientFeed.push(chunk);
    if (this.#eppActive && !this.#reqFinalSent) this.#send({ request_body: { body: chunk, end_of_stream: false } });
  }

  #onClientEnd(): void {
    this.#clientFeed.end();
    if (!this.#eppActive || this.#reqFinalSent) return;
    this.#reqFinalSent = true;
    const trailers = this.#req.rawTrailers;
    // With trailers, the trailers message (not end_of_stream) tells the processor the body is complete (§4.3).
    if (trailers.length > 0) this.#send({ request_trailers: { trailers: toHeaderMap(lowerRaw(trailers)) } });
    else this.#send({ request_body: { body: EMPTY, end_of_stream: true } });
    this.#armTimer(false);
  }

  // ================= EPP stream =================

  /**
   * Envoy runs a local reply of an earlier filter through the EPP's filter on the way out: the stream opens with
   * response_headers, no request ever announced (docs/design/ext-proc-protocol.md "A response without a request").
   */
  #localReply(epp: EppClient): void {
    this.#req.resume();
    this.#clientFeed.end();
    const body = Buffer.from("User authentication failed. Missing username and password.");
    this.#reqHeadersDone = true;
    this.#reqFinalSent = true;
    this.#reqDone = true;
    this.#respList = [
      ":status",
      "401",
      "www-authenticate",
      'Basic realm="http://switchyard.local"',
      "content-type",
      "text/plain",
      "content-length",
      String(body.length),
    ];
    this.#respRaw = [];
    if (!this.#openEpp(epp)) return;
    this.#respHeadersSent = true;
    this.#respFinalSent = true;
    this.#send({
      response_headers: { headers: toHeaderMap(this.#respList), end_of_stream: false },
      protocol_config: { request_body_mode: FULL_DUPLEX_STREAMED, response_body_mode: FULL_DUPLEX_STREAMED },
    });
    this.#send({ response_body: { body, end_of_stream: true } });
    this.#armTimer(false);
  }

  #startEpp(epp: EppClient): void {
    if (!this.#openEpp(epp)) return;
    const first: ProcessingRequestMsg = {
      request_headers: { headers: toHeaderMap(this.#headers), end_of_stream: this.#headerOnly },
      protocol_config: { request_body_mode: FULL_DUPLEX_STREAMED, response_body_mode: FULL_DUPLEX_STREAMED },
    };
    this.#send(first);
    if (this.#headerOnly) {
      this.#reqFinalSent = true;
      this.#armTimer(false);
    }
  }

  /** Opens the ext_proc stream and wires its events; false when it could not even be opened (already handled). */
  #openEpp(epp: EppClient): boolean {
    let call: ProcessCall;
    try {
      call = epp.open();
    } catch (err) {
      this.#eppActive = true;
      this.#eppFailure(`cannot open ext_proc stream: ${(err as Error).message}`, false);
      return false;
    }
    this.#call = call;
    this.#callOpen = true;
    this.#eppActive = true;
    this.#callValve = new Valve(call);
    const subset = this.#ctx.subsetHint;
    if (subset !== undefined) this.#metadata = { filter_metadata: { [SUBSET_NAMESPACE]: subset } };
    call.on("data", (msg: ProcessingResponseMsg) => this.#onEppMessage(msg));
    call.on("error", (err: Error & { code?: number; details?: string }) => {
      this.#callOpen = false;
      if (this.#eppActive)
        this.#eppFailure(`ext_proc stream error: ${err.code ?? ""} ${err.details ?? err.message}`, false);
    });
    call.on("status", (status: { code: number }) => {
      this.#callOpen = false;
      this.#clearTimer();
      // A clean close while we still expect answers: Envoy continues without the processor (§4.2).
      if (status.code === 0 && this.#eppActive && !this.#finished && this.#eppOwesAnswers())
        this.#eppFailure("ext_proc stream closed by the EPP", true);
    });
    return true;
  }

  #send(msg: ProcessingRequestMsg): void {
    const call = this.#call;
    if (call === undefined || !this.#callOpen) return;
    if (this.#metadata !== undefined) msg.metadata_context = this.#metadata;
    if (!call.write(msg) && !this.#eppDrainPending) {
      this.#eppDrainPending = true;
      this.#clientValve.hold(P_EPP);
      this.#upstreamValve?.hold(P_EPP);
      call.once("drain", () => {
        this.#eppDrainPending = false;
        this.#clientValve.release(P_EPP);
        this.#upstreamValve?.release(P_EPP);
      });
    }
  }

  /** True while the processor still has to answer something we sent (or will send). */
  #eppOwesAnswers(): boolean {
    return !this.#reqDone || !this.#respDone;
  }

  #awaitingEpp(): boolean {
    return (
      this.#eppActive &&
      ((this.#reqFinalSent && !this.#reqDone) ||
        (this.#respHeadersSent && !this.#respHeadersDone) ||
        (this.#respFinalSent && !this.#respDone))
    );
  }

  /**
   * Envoy's message_timeout: runs while we wait on the EPP for something it owes (the end of a phase we finished
   * sending); any message from the EPP restarts it.
   */
  #armTimer(progress: boolean): void {
    if (!this.#awaitingEpp()) {
      this.#clearTimer();
      return;
    }
    if (this.#timer === undefined) {
      this.#timer = setTimeout(
        () => this.#eppFailure(`EPP did not answer within ${this.#ctx.eppTimeoutMs}ms`, false),
        this.#ctx.eppTimeoutMs,
      );
    } else if (progress) this.#timer.refresh();
  }

  #clearTimer(): void {
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
  }

  #onEppMessage(msg: ProcessingResponseMsg): void {
    if (this.#finished || !this.#eppActive) return;
    switch (msg.response) {
      case "immediate_response":
        this.#immediate(msg.immediate_response ?? {});
        return;
      case "request_headers":
        if (this.#reqHeadersDone) {
          this.#spurious("request_headers");
          return;
        }
        this.#onRequestHeadersResponse(msg);
        break;
      case "request_body":
        if (!this.#reqHeadersDone || this.#reqDone) {
          this.#spurious("request_body");
          return;
        }
        this.#onRequestBodyResponse(msg.request_body?.response);
        break;
      case "request_trailers":
        // Only meaningful before the body is complete; the body mutation is what we forward.
        break;
      case "response_headers":
        if (!this.#respHeadersSent || this.#respHeadersDone) {
          this.#spurious("response_headers");
          return;
        }
        this.#onResponseHeadersResponse(msg.response_headers?.response);
        break;
      case "response_body":
        if (!this.#respHeadersDone || this.#respDone) {
          this.#spurious("response_body");
          return;
        }
        this.#onResponseBodyResponse(msg.response_body?.response);
        break;
      case "response_trailers":
        if (!this.#respHeadersDone || this.#respDone || this.#upstreamTrailers === undefined) {
          this.#spurious("response_trailers");
          return;
        }
        this.#onResponseTrailersResponse(msg.response_trailers?.header_mutation);
        break;
      default: {
        this.#spurious("empty");
        return;
      }
    }
    if (!this.#finished) this.#armTimer(true);
  }

  /** Envoy: a response for the wrong phase closes the stream and the request continues without the processor. */
  #spurious(what: string): void {
    this.#ctx.stats.eppErrors++;
    this.#eppFailure(`spurious ${what} response on the ext_proc stream`, true);
  }

  #onRequestHeadersResponse(msg: ProcessingResponseMsg): void {
    this.#reqHeadersDone = true;
    const common = msg.request_headers?.response;
    const list = this.#headers.slice();
    // FULL_DUPLEX_STREAMED may change the body, so Envoy drops content-length; the EPP sets it back if it knows it.
    removeHeader(list, "content-length");
    const problem = applyHeaderMutation(list, common?.header_mutation, "request");
    if (problem !== undefined) {
      this.#fail(new GatewayError("GW_EPP_PROTOCOL", `EPP header mutation: ${problem}`));
      return;
    }
    const contentLength = getHeader(list, "content-length");
    if (contentLength !== undefined && !/^\d+$/.test(contentLength)) {
      this.#fail(new GatewayError("GW_EPP_PROTOCOL", `EPP set an invalid content-length "${contentLength}"`));
      return;
    }

    const fromHeader = getHeader(list, DESTINATION_ENDPOINT_HEADER);
    const fromMetadata = structString(
      msg.dynamic_metadata,
      DESTINATION_METADATA_NAMESPACE,
      DESTINATION_ENDPOINT_HEADER,
    );
    if (fromHeader !== undefined && fromMetadata !== undefined && fromHeader !== fromMetadata)
      this.#ctx.stats.destinationMismatch++;
    const order = parseEndpointList(fromHeader ?? fromMetadata);
    if (order.length === 0) {
      this.#fail(
        new GatewayError(
          "GW_NO_DESTINATION",
          `the EPP chose no valid destination (${JSON.stringify(fromHeader ?? fromMetadata ?? "")})`,
        ),
      );
      return;
    }

    let feed: BodyFeed | undefined;
    if (this.#headerOnly) this.#requestPathDone();
    else {
      feed = new BodyFeed((paused) => (paused ? this.#callValve?.hold(P_FEED) : this.#callValve?.release(P_FEED)));
      this.#echoFeed = feed;
    }
    void this.#forward(order, list, feed);
  }

  #onRequestBodyResponse(common: ProcessingResponseMsgCommon): void {
    const feed = this.#echoFeed!;
    const mutation = common?.body_mutation;
    switch (mutation?.mutation) {
      case "streamed_response": {
        const chunk = mutation.streamed_response;
        if (chunk?.body !== undefined && chunk.body.length > 0) feed.push(chunk.body);
        if (chunk?.end_of_stream === true) {
          feed.end();
          this.#requestPathDone();
        }
        break;
      }
      case "body":
        if (mutation.body !== undefined) feed.push(mutation.body);
        feed.end();
        this.#requestPathDone();
        break;
      case "clear_body":
        feed.end();
        this.#requestPathDone();
        break;
      default:
      // No mutation: nothing to forward for this message (in this mode only streamed chunks carry the body).
    }
  }

  #requestPathDone(): void {
    this.#reqDone = true;
    // The upstream body is now fully defined by the EPP: the client's copy is no longer needed for fail-open.
    this.#clientFeed.stopRetaining();
  }

  // ================= upstream =================

  /** Sends the request upstream over `order`; while the EPP is active its response goes through the processor. */
  async #forward(order: readonly string[], list: HeaderList, feed: BodyFeed | undefined): Promise<void> {
    const generation = ++this.#generation;
    const abort = new AbortController();
    this.#upstreamAbort = abort;
    const ctx = this.#ctx;
    let result: { endpoint: string; response: Dispatcher.ResponseData };
    try {
      result = await ctx.upstream.send(
        order,
        {
          method: getHeader(list, ":method") ?? "GET",
          path: getHeader(list, ":path") ?? "/",
          headers: upstreamRequestHeaders(list),
          body: feed,
          signal: abort.signal,
        },
        {
          attempt: (endpoint) => {
            ctx.inFlight.acquire(endpoint);
            this.#inFlightEndpoint = endpoint;
          },
          failed: (endpoint, retrying) => {
            this.#releaseInFlight(endpoint);
            if (retrying) ctx.stats.retries++;
          },
        },
      );
    } catch (err) {
      if (this.#finished || generation !== this.#generation || abort.signal.aborted) return;
      this.#fail(err instanceof GatewayError ? err : new GatewayError("GW_UPSTREAM_ERROR", String(err)));
      return;
    }
    const body = result.response.body;
    if (this.#finished || generation !== this.#generation) {
      body.destroy();
      this.#releaseInFlight(result.endpoint);
      return;
    }
    feed?.stopRetaining();
    this.#servedEndpoint = result.endpoint;
    ctx.stats.route(result.endpoint);
    this.#upstreamBody = body;
    this.#upstreamValve = new Valve(body);
    body.on("data", (chunk: Buffer) => this.#onUpstreamData(chunk));
    body.on("end", () => this.#onUpstreamEnd(result.response));
    body.on("error", (err) => this.#onUpstreamError(err));
    if (this.#eppActive) this.#startResponsePath(result.response);
    else this.#writeDirectHead(result.response.statusCode, result.response.headers);
  }

  /** Baseline / fail-open: the client's own request over the static list. */
  async #direct(order: readonly string[]): Promise<void> {
    if (order.length === 0) {
      this.#fail(new GatewayError("GW_NO_ENDPOINTS", "no static endpoints to route to (--endpoints)"));
      return;
    }
    if (!this.#headerOnly && !this.#clientFeed.canReplay) {
      this.#fail(new GatewayError("GW_EPP_UNAVAILABLE", "the request body was already consumed by the EPP"));
      return;
    }
    await this.#forward(order, this.#headers, this.#headerOnly ? undefined : this.#clientFeed);
  }

  #releaseInFlight(endpoint: string): void {
    if (this.#inFlightEndpoint === endpoint) {
      this.#inFlightEndpoint = undefined;
      this.#ctx.inFlight.release(endpoint);
    }
  }

  #onUpstreamData(chunk: Buffer): void {
    if (this.#finished) return;
    if (this.#eppActive) {
      if (this.#respEos) return;
      this.#respRaw?.push(chunk);
      this.#send({ response_body: { body: chunk, end_of_stream: false } });
    } else this.#writeClient(chunk, this.#upstreamValve);
  }

  #onUpstreamEnd(response: Dispatcher.ResponseData): void {
    this.#upstreamEnded = true;
    this.#releaseInFlight(this.#servedEndpoint);
    if (this.#finished) return;
    const trailers = response.trailers as Record<string, string | string[] | undefined>;
    if (this.#eppActive) {
      if (this.#respEos || this.#respFinalSent) return;
      this.#respFinalSent = true;
      const list = trailerList(trailers);
      if (list.length > 0) {
        this.#upstreamTrailers = {};
        for (let i = 0; i < list.length; i += 2) this.#upstreamTrailers[list[i]!] = list[i + 1]!;
        this.#send({ response_trailers: { trailers: toHeaderMap(list) } });
      } else this.#send({ response_body: { body: EMPTY, end_of_stream: true } });
      this.#armTimer(false);
    } else {
      const list = trailerList(trailers);
      if (list.length > 0) this.#res.addTrailers(pairsToRecord(list));
      this.#res.end();
      this.#finish("completed");
    }
  }

  #onUpstreamError(err: Error): void {
    this.#releaseInFlight(this.#servedEndpoint);
    if (this.#finished) return;
    this.#ctx.logger.debug({ err: err.message, endpoint: this.#servedEndpoint }, "upstream body failed");
    // Mid-body failure: Envoy resets the downstream stream rather than pretend the response is complete.
    if (this.#clientHeadersSent) this.#reset();
    else this.#fail(new GatewayError("GW_UPSTREAM_ERROR", `upstream response failed: ${err.message}`));
  }

  // ================= response path via the EPP =================

  #startResponsePath(response: Dispatcher.ResponseData): void {
    const status = response.statusCode;
    const list = responseHeaderList(status, response.headers);
    const cl = getHeader(list, "content-length");
    this.#respEos =
      getHeader(this.#headers, ":method") === "HEAD" ||
      status === 204 ||
      status === 304 ||
      (status >= 100 && status < 200) ||
      cl === "0";
    this.#respList = list;
    this.#respRaw = [];
    this.#metadata = {
      filter_metadata: {
        ...this.#metadata?.filter_metadata,
        [DESTINATION_METADATA_NAMESPACE]: stringStruct({ [DESTINATION_ENDPOINT_SERVED_KEY]: this.#servedEndpoint }),
      },
    };
    this.#respHeadersSent = true;
    if (this.#respEos) this.#respFinalSent = true;
    this.#send({ response_headers: { headers: toHeaderMap(list), end_of_stream: this.#respEos } });
    this.#armTimer(false);
  }

  #onResponseHeadersResponse(common: ProcessingResponseMsgCommon): void {
    this.#respHeadersDone = true;
    const list = this.#respList!.slice();
    if (!this.#respEos) removeHeader(list, "content-length");
    const problem = applyHeaderMutation(list, common?.header_mutation, "response");
    if (problem !== undefined) {
      this.#fail(new GatewayError("GW_EPP_PROTOCOL", `EPP header mutation: ${problem}`));
      return;
    }
    if (!this.#writeHead(Number(getHeader(list, ":status") ?? 200), clientResponseHeaders(list))) return;
    if (this.#respEos) {
      this.#respDone = true;
      this.#res.end();
      this.#finish("completed");
    }
  }

  #onResponseBodyResponse(common: ProcessingResponseMsgCommon): void {
    const mutation = common?.body_mutation;
    let chunk: Buffer | undefined;
    let end = false;
    switch (mutation?.mutation) {
      case "streamed_response":
        chunk = mutation.streamed_response?.body;
        end = mutation.streamed_response?.end_of_stream === true;
        break;
      case "body":
        chunk = mutation.body;
        end = true;
        break;
      case "clear_body":
        end = true;
        break;
      default:
        return;
    }
    if (chunk !== undefined && chunk.length > 0) {
      // From here the client has processed bytes: a later EPP failure cannot fall back to the raw body.
      this.#respRaw = undefined;
      this.#writeClient(chunk, this.#callValve);
    }
    if (end) {
      this.#respDone = true;
      this.#res.end();
      this.#finish("completed");
    }
  }

  #onResponseTrailersResponse(mutation: HeaderMutationMsg | undefined): void {
    const list: HeaderList = [];
    for (const [k, v] of Object.entries(this.#upstreamTrailers ?? {})) list.push(k, v);
    const problem = applyHeaderMutation(list, mutation, "trailers");
    if (problem !== undefined) {
      this.#reset();
      return;
    }
    this.#respDone = true;
    if (list.length > 0) this.#res.addTrailers(pairsToRecord(list));
    this.#res.end();
    this.#finish("completed");
  }

  #immediate(ir: ImmediateResponseMsg): void {
    this.#ctx.stats.immediateResponses++;
    this.#clearTimer();
    this.#abortUpstream();
    if (this.#clientHeadersSent) {
      this.#reset();
      return;
    }
    const code = ir.status?.code ?? 0;
    // Envoy validates the HttpStatus enum; anything outside the HTTP range would be rejected → local 500.
    const status = Number.isInteger(code) && code >= 200 && code <= 599 ? code : 500;
    const list: HeaderList = [];
    const problem = applyHeaderMutation(list, ir.headers, "trailers");
    if (problem !== undefined) {
      this.#fail(new GatewayError("GW_EPP_PROTOCOL", `EPP immediate response: ${problem}`));
      return;
    }
    const body = ir.body ?? EMPTY;
    // Envoy's local replies carry a content-type when they have a body.
    if (body.length > 0 && getHeader(list, "content-type") === undefined) list.push("content-type", "text/plain");
    removeHeader(list, "content-length");
    if (!this.#writeHead(status, list, false)) return;
    this.#res.end(body);
    this.#finish("completed");
  }

  // ================= failures =================

  /**
   * The EPP failed (`clean` = it closed the stream OK, or broke the protocol — Envoy then continues without the
   * processor whatever the failure mode). Otherwise FailOpen continues and FailClose answers 503.
   */
  #eppFailure(reason: string, clean: boolean): void {
    if (this.#finished || !this.#eppActive) return;
    this.#eppActive = false;
    this.#clearTimer();
    if (!clean) this.#ctx.stats.eppErrors++;
    this.#cancelCall();
    this.#callValve?.release(P_FEED | P_CLIENT);
    this.#clientValve.release(P_EPP);
    this.#upstreamValve?.release(P_EPP);
    const proceed = clean || this.#ctx.failOpen;
    this.#ctx.logger.debug({ reason, proceed }, "ext_proc failure");

    if (!this.#reqDone) {
      // The upstream body (if any) is incomplete: restart from the client's own request.
      this.#echoFeed?.fail(new Error(reason));
      this.#abortUpstream();
      if (proceed && (this.#headerOnly || this.#clientFeed.canReplay)) {
        this.#ctx.stats.failOpen++;
        void this.#direct(this.#ctx.failOpenBalancer.order(this.#ctx.endpoints()));
      } else this.#fail(new GatewayError("GW_EPP_UNAVAILABLE", `endpoint picker unavailable: ${reason}`));
      return;
    }
    if (!this.#respHeadersSent) {
      // Upstream request under way; its response will be relayed directly, or dropped under FailClose.
      if (!proceed) {
        this.#abortUpstream();
        this.#fail(new GatewayError("GW_EPP_UNAVAILABLE", `endpoint picker unavailable: ${reason}`));
      }
      return;
    }
    if (proceed && this.#respRaw !== undefined) {
      if (!this.#clientHeadersSent) {
        const list = this.#respList!;
        if (!this.#writeHead(Number(getHeader(list, ":status")), clientResponseHeaders(list))) return;
      }
      for (const chunk of this.#respRaw) this.#writeClient(chunk, this.#upstreamValve);
      this.#respRaw = undefined;
      if (this.#upstreamEnded || this.#respEos) {
        this.#res.end();
        this.#finish("completed");
      }
      return;
    }
    if (this.#clientHeadersSent) this.#reset();
    else {
      this.#abortUpstream();
      this.#fail(new GatewayError("GW_EPP_UNAVAILABLE", `endpoint picker failed mid-response: ${reason}`));
    }
  }

  /** A gateway-generated error response (Envoy's local reply). */
  #fail(err: GatewayError): void {
    if (this.#finished) return;
    this.#ctx.stats.errors++;
    this.#eppActive = false;
    this.#abortUpstream();
    if (this.#clientHeadersSent) {
      this.#reset();
      return;
    }
    this.#ctx.logger.debug({ code: err.code, err: err.message }, "gateway error");
    const ok = this.#writeHead(
      err.status,
      ["content-type", "text/plain; charset=utf-8", GATEWAY_ERROR_HEADER, err.code],
      false,
    );
    if (ok) this.#res.end(`switchyard gateway: ${err.message}\n`);
    this.#finish("error");
  }

  #reset(): void {
    if (this.#finished) return;
    this.#ctx.stats.errors++;
    this.#resetByUs = true;
    this.#res.destroy();
    this.#finish("error");
  }

  #onClientClose(): void {
    if (this.#res.writableFinished || this.#resetByUs) return;
    if (!this.#finished) this.#ctx.stats.clientAborts++;
    this.#finish("cancelled");
  }

  // ================= client response =================

  #writeDirectHead(status: number, headers: Readonly<Record<string, string | string[] | undefined>>): void {
    this.#writeHead(status, clientResponseHeaders(responseHeaderList(status, headers)));
  }

  /** Writes the client's response head plus the served-endpoint header; false when node rejected it. */
  #writeHead(status: number, list: HeaderList, served = true): boolean {
    if (served && this.#servedEndpoint !== "") list.push(SERVED_ENDPOINT_HEADER, this.#servedEndpoint);
    try {
      this.#res.writeHead(status, list);
    } catch (err) {
      this.#ctx.stats.errors++;
      this.#ctx.logger.debug({ err: (err as Error).message }, "invalid response head");
      this.#res.destroy();
      this.#resetByUs = true;
      this.#finish("error");
      return false;
    }
    this.#clientHeadersSent = true;
    // SSE clients want the head now, not with the first token.
    const type = getHeader(list, "content-type");
    if (type?.startsWith("text/event-stream")) this.#res.flushHeaders();
    return true;
  }

  #writeClient(chunk: Buffer, source: Valve | undefined): void {
    if (!this.#res.write(chunk) && source !== undefined) {
      source.hold(P_CLIENT);
      this.#res.once("drain", () => source.release(P_CLIENT));
    }
  }

  // ================= teardown =================

  #abortUpstream(): void {
    this.#generation++;
    this.#upstreamAbort?.abort();
    this.#upstreamAbort = undefined;
    const body = this.#upstreamBody;
    if (body !== undefined && !this.#upstreamEnded) body.destroy();
    if (this.#inFlightEndpoint !== undefined) this.#releaseInFlight(this.#inFlightEndpoint);
  }

  #cancelCall(): void {
    const call = this.#call;
    if (call === undefined) return;
    if (this.#callOpen) {
      this.#callOpen = false;
      this.#ctx.stats.eppCancels++;
      call.cancel();
    }
  }

  #finish(outcome: "completed" | "cancelled" | "error"): void {
    if (this.#finished) return;
    this.#finished = true;
    this.#clearTimer();
    this.#clientFeed.stopRetaining();
    // Never leave the client socket paused: node must drain the rest of the request for keep-alive.
    this.#clientValve.release(P_FEED | P_EPP);
    if (outcome !== "completed" || !this.#upstreamEnded) this.#abortUpstream();
    const call = this.#call;
    if (call !== undefined && this.#callOpen) {
      if (outcome === "completed" && this.#eppActive && this.#ctx.extProcReset) {
        // Envoy's default: the filter is destroyed while it handles the last answer, before the EPP's status can
        // arrive, so every stream the EPP did not end already is half-closed and reset (docs/envoy.md).
        call.end();
        this.#cancelCall();
      } else if (outcome === "completed" && this.#eppActive) {
        // Half-close and let the EPP end the stream with OK; cancel if it never does.
        call.end();
        const grace = setTimeout(() => this.#cancelCall(), this.#ctx.eppTimeoutMs);
        grace.unref();
        call.once("status", () => clearTimeout(grace));
      } else this.#cancelCall();
    }
    this.#eppActive = false;
  }
}

type ProcessingResponseMsgCommon = NonNullable<ProcessingResponseMsg["request_body"]>["response"];

function lowerRaw(raw: readonly string[]): HeaderList {
  const out: HeaderList = [];
  for (let i = 0; i + 1 < raw.length; i += 2) out.push(raw[i]!.toLowerCase(), raw[i + 1]!);
  return out;
}

function trailerList(trailers: Readonly<Record<string, string | string[] | undefined>> | undefined): HeaderList {
  const out: HeaderList = [];
  if (trailers === undefined) return out;
  for (const name in trailers) {
    const v = trailers[name];
    if (v === undefined) continue;
    if (typeof v === "string") out.push(name, v);
    else for (const item of v) out.push(name, item);
  }
  return out;
}

function pairsToRecord(list: HeaderList): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i < list.length; i += 2) {
    const k = list[i]!;
    out[k] = out[k] === undefined ? list[i + 1]! : `${out[k]}, ${list[i + 1]}`;
  }
  return out;
}
