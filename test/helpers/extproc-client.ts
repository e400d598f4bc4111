/**
 * A "fake Envoy": a grpc-js client for `/envoy.service.ext_proc.v3.ExternalProcessor/Process` that sends the
 * messages Envoy sends and awaits the replies. Used by integration tests and the benchmark.
 *
 *   const client = connect(`127.0.0.1:${port}`);
 *   const r = await client.roundTrip({ headers: { ":path": "/v1/completions" }, body: '{"model":"m"}' });
 *   r.status === "routed" && r.destination === "10.0.0.1:8000";
 *   client.close();
 *
 * Each client owns its own HTTP/2 connection (`grpc.use_local_subchannel_pool`), as separate Envoy workers do.
 */
import * as grpc from "@grpc/grpc-js";
import {
  DESTINATION_ENDPOINT_HEADER,
  DESTINATION_ENDPOINT_SERVED_KEY,
  DESTINATION_METADATA_NAMESPACE,
  SUBSET_HINT_KEY,
  SUBSET_HINT_NAMESPACE,
} from "../../src/common/constants.js";
import {
  BodySendMode,
  type HeaderMutation,
  type HeaderValue,
  jsonToStruct,
  type Metadata,
  type ProcessingRequest,
  type ProcessingResponse,
  type ProtocolConfiguration,
  type ProtoStruct,
  structToJson,
} from "../../src/extproc/messages.js";
import { extProcService } from "../../src/extproc/proto.js";

export type HeaderInput = Readonly<Record<string, string>> | readonly (readonly [string, string])[];
export type BodyMode = "full-duplex" | "buffered";

export interface MessageOptions {
  /** Subset hint: a list becomes a ListValue of strings, a string is sent as a plain string Value. */
  subsetHint?: readonly string[] | string;
  /** Served endpoint reported on the response path (`envoy.lb` / x-gateway-destination-endpoint-served). */
  servedEndpoint?: string;
  /** Extra metadata_context namespaces (JSON values), merged with the two above. */
  metadata?: Readonly<Record<string, Readonly<Record<string, unknown>>>>;
  observabilityMode?: boolean;
  /** protocol_config; only meaningful on the first message. */
  protocolConfig?: { requestBodyMode?: BodyMode | number; responseBodyMode?: BodyMode | number };
}

export interface HeadersOptions extends MessageOptions {
  endOfStream?: boolean;
}

export interface CallStatus {
  code: number;
  details: string;
}

const DEFAULT_TIMEOUT_MS = 5000;

function modeNumber(mode: BodyMode | number | undefined): number | undefined {
  if (mode === undefined || typeof mode === "number") return mode;
  return mode === "buffered" ? BodySendMode.BUFFERED : BodySendMode.FULL_DUPLEX_STREAMED;
}

function headerList(headers: HeaderInput): HeaderValue[] {
  const pairs = Array.isArray(headers)
    ? (headers as readonly (readonly [string, string])[])
    : Object.entries(headers as Record<string, string>);
  return pairs.map(([key, value]) => ({ key, raw_value: Buffer.from(value, "utf8") }));
}

function toBuffer(body: Buffer | string): Buffer {
  return typeof body === "string" ? Buffer.from(body, "utf8") : body;
}

/** `set_headers` as a Map (lower-cased keys; raw_value preferred, as Envoy reads it). */
export function mutationMap(mutation: HeaderMutation | undefined): Map<string, string> {
  const out = new Map<string, string>();
  for (const option of mutation?.set_headers ?? []) {
    const header = option.header;
    if (header?.key === undefined) continue;
    const raw = header.raw_value;
    out.set(
      header.key.toLowerCase(),
      raw !== undefined && raw.length > 0 ? raw.toString("utf8") : (header.value ?? ""),
    );
  }
  return out;
}

/** `set_headers` as ordered [key, value] pairs, for order assertions. */
export function mutationPairs(mutation: HeaderMutation | undefined): [string, string][] {
  return (mutation?.set_headers ?? []).map((o) => [o.header?.key ?? "", o.header?.raw_value?.toString("utf8") ?? ""]);
}

export function metadataJson(struct: ProtoStruct | undefined): Record<string, Record<string, unknown>> {
  return structToJson(struct) as Record<string, Record<string, unknown>>;
}

/** A short label for a ProcessingResponse, for error messages. */
export function describe(msg: ProcessingResponse): string {
  return msg.response ?? Object.keys(msg).join("+");
}

export class FakeEnvoyStream {
  readonly #call: grpc.ClientDuplexStream<ProcessingRequest, ProcessingResponse>;
  readonly #inbox: ProcessingResponse[] = [];
  #waiter: ((msg: ProcessingResponse | undefined) => void) | undefined;
  #ended = false;
  #status: CallStatus | undefined;
  readonly #statusWaiters: ((s: CallStatus) => void)[] = [];
  /** Every message received so far, in order. */
  readonly received: ProcessingResponse[] = [];
  /** Every message sent so far, in order. */
  readonly sent: ProcessingRequest[] = [];

  constructor(call: grpc.ClientDuplexStream<ProcessingRequest, ProcessingResponse>) {
    this.#call = call;
    call.on("data", (msg: ProcessingResponse) => {
      this.received.push(msg);
      const waiter = this.#waiter;
      if (waiter !== undefined) {
        this.#waiter = undefined;
        waiter(msg);
      } else this.#inbox.push(msg);
    });
    call.on("status", (status: grpc.StatusObject) => this.#setStatus({ code: status.code, details: status.details }));
    call.on("error", (err: grpc.ServiceError) => this.#setStatus({ code: err.code ?? 2, details: err.details ?? "" }));
    call.on("end", () => {
      this.#ended = true;
      const waiter = this.#waiter;
      this.#waiter = undefined;
      waiter?.(undefined);
    });
  }

  #setStatus(status: CallStatus): void {
    if (this.#status !== undefined) return;
    this.#status = status;
    for (const w of this.#statusWaiters.splice(0)) w(status);
    if (!this.#ended) {
      this.#ended = true;
      const waiter = this.#waiter;
      this.#waiter = undefined;
      waiter?.(undefined);
    }
  }

  /** Sends a raw ProcessingRequest. */
  send(msg: ProcessingRequest): this {
    this.sent.push(msg);
    this.#call.write(msg);
    return this;
  }

  #common(msg: ProcessingRequest, options: MessageOptions | undefined): ProcessingRequest {
    if (options === undefined) return msg;
    const metadata: Record<string, ProtoStruct> = {};
    for (const [ns, values] of Object.entries(options.metadata ?? {})) metadata[ns] = jsonToStruct(values);
    if (options.subsetHint !== undefined) {
      const hint = options.subsetHint;
      metadata[SUBSET_HINT_NAMESPACE] = jsonToStruct({
        ...structToJson(metadata[SUBSET_HINT_NAMESPACE]),
        [SUBSET_HINT_KEY]: typeof hint === "string" ? hint : [...hint],
      });
    }
    if (options.servedEndpoint !== undefined) {
      metadata[DESTINATION_METADATA_NAMESPACE] = jsonToStruct({
        ...structToJson(metadata[DESTINATION_METADATA_NAMESPACE]),
        [DESTINATION_ENDPOINT_SERVED_KEY]: options.servedEndpoint,
      });
    }
    if (Object.keys(metadata).length > 0) msg.metadata_context = { filter_metadata: metadata } satisfies Metadata;
    if (options.observabilityMode === true) msg.observability_mode = true;
    if (options.protocolConfig !== undefined) {
      const config: ProtocolConfiguration = {};
      const req = modeNumber(options.protocolConfig.requestBodyMode);
      const res = modeNumber(options.protocolConfig.responseBodyMode);
      if (req !== undefined) config.request_body_mode = req;
      if (res !== undefined) config.response_body_mode = res;
      msg.protocol_config = config;
    }
    return msg;
  }

  sendRequestHeaders(headers: HeaderInput, options?: HeadersOptions): this {
    const msg: ProcessingRequest = {
      request_headers: { headers: { headers: headerList(headers) }, end_of_stream: options?.endOfStream === true },
    };
    return this.send(this.#common(msg, options));
  }

  sendRequestBody(chunk: Buffer | string, endOfStream = false, options?: MessageOptions): this {
    return this.send(this.#common({ request_body: { body: toBuffer(chunk), end_of_stream: endOfStream } }, options));
  }

  sendRequestTrailers(trailers: HeaderInput = {}, options?: MessageOptions): this {
    return this.send(this.#common({ request_trailers: { trailers: { headers: headerList(trailers) } } }, options));
  }

  sendResponseHeaders(headers: HeaderInput, options?: HeadersOptions): this {
    const msg: ProcessingRequest = {
      response_headers: { headers: { headers: headerList(headers) }, end_of_stream: options?.endOfStream === true },
    };
    return this.send(this.#common(msg, options));
  }

  sendResponseBody(chunk: Buffer | string, endOfStream = false, options?: MessageOptions): this {
    return this.send(this.#common({ response_body: { body: toBuffer(chunk), end_of_stream: endOfStream } }, options));
  }

  sendResponseTrailers(trailers: HeaderInput = {}, options?: MessageOptions): this {
    return this.send(this.#common({ response_trailers: { trailers: { headers: headerList(trailers) } } }, options));
  }

  /**
   * The next ProcessingResponse. Rejects with a clear message when none arrives within `timeoutMs` or the server
   * ends the call first (the message names the status it ended with).
   */
  next(timeoutMs = DEFAULT_TIMEOUT_MS, what = "the next ProcessingResponse"): Promise<ProcessingResponse> {
    const queued = this.#inbox.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    if (this.#ended) return Promise.reject(new Error(`ext_proc stream ended (${this.#statusText()}) before ${what}`));
    if (this.#waiter !== undefined) return Promise.reject(new Error("next() is already waiting"));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiter = undefined;
        reject(
          new Error(
            `no ProcessingResponse within ${timeoutMs} ms while waiting for ${what} (got ${this.received.length} so far)`,
          ),
        );
      }, timeoutMs);
      this.#waiter = (msg) => {
        clearTimeout(timer);
        if (msg !== undefined) resolve(msg);
        else reject(new Error(`ext_proc stream ended (${this.#statusText()}) before ${what}`));
      };
    });
  }

  /** Like next() but asserts the oneof member, e.g. `expect("request_headers")`. */
  async expect(kind: NonNullable<ProcessingResponse["response"]>, timeoutMs = DEFAULT_TIMEOUT_MS) {
    const msg = await this.next(timeoutMs, `a ${kind} response`);
    if (msg.response !== kind) {
      const extra =
        msg.response === "immediate_response" ? `: ${msg.immediate_response?.body?.toString("utf8") ?? ""}` : "";
      throw new Error(`expected a ${kind} response, got ${describe(msg)}${extra}`);
    }
    return msg;
  }

  #statusText(): string {
    return this.#status === undefined ? "no status yet" : `status ${this.#status.code} ${this.#status.details}`;
  }

  /** Half-closes (what Envoy does once the HTTP exchange is over). */
  end(): this {
    this.#call.end();
    return this;
  }

  /** Resets the stream (what Envoy does when the downstream client goes away). */
  cancel(): void {
    this.#call.cancel();
  }

  /** Resolves with the call's final gRPC status; rejects after `timeoutMs`. */
  status(timeoutMs = DEFAULT_TIMEOUT_MS): Promise<CallStatus> {
    if (this.#status !== undefined) return Promise.resolve(this.#status);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`ext_proc call did not finish within ${timeoutMs} ms`)),
        timeoutMs,
      );
      this.#statusWaiters.push((s) => {
        clearTimeout(timer);
        resolve(s);
      });
    });
  }

  /** Messages received and not yet taken by next(). */
  get pending(): number {
    return this.#inbox.length;
  }
}

export interface RoundTripOptions {
  headers: HeaderInput;
  /** Omitted → header-only request (request_headers with end_of_stream). */
  body?: Buffer | string;
  /** Split the body into chunks of this many bytes (FULL_DUPLEX only). Default: one chunk. */
  chunkSize?: number;
  /** End the request with (empty or given) trailers instead of end_of_stream on the last chunk. */
  trailers?: boolean | HeaderInput;
  subsetHint?: readonly string[] | string;
  /** Default "full-duplex". */
  mode?: BodyMode;
  /** Announce the mode in protocol_config on the first message (newer Envoy). Default true. */
  sendProtocolConfig?: boolean;
  /** Also play the response path once routed. */
  response?: {
    headers: HeaderInput;
    /** Chunks of the upstream response body; omitted → response headers carry end_of_stream. */
    body?: readonly (Buffer | string)[];
    trailers?: boolean;
    servedEndpoint?: string;
  };
  timeoutMs?: number;
}

export interface RoundTripResult {
  status: "routed" | "immediate";
  /** `x-gateway-destination-endpoint` from set_headers. */
  destination: string | undefined;
  /** The same key from dynamic_metadata["envoy.lb"]. */
  metadataDestination: string | undefined;
  setHeaders: Map<string, string>;
  /** The request body as it would reach the upstream (reassembled chunks / mutated or original body). */
  body: Buffer;
  /** dynamic_metadata of the routing response as JSON. */
  metadata: Record<string, Record<string, unknown>>;
  clearRouteCache: boolean;
  immediate?: { status: number; body: string; headers: Map<string, string>; details: string };
  response?: { setHeaders: Map<string, string>; body: Buffer; trailers: boolean };
  /** Every message received, in order. */
  messages: ProcessingResponse[];
  grpcStatus: CallStatus;
}

function immediateOf(msg: ProcessingResponse): RoundTripResult["immediate"] {
  const imm = msg.immediate_response ?? {};
  return {
    status: imm.status?.code ?? 0,
    body: imm.body?.toString("utf8") ?? "",
    headers: mutationMap(imm.headers),
    details: imm.details ?? "",
  };
}

function chunksOf(body: Buffer, size: number | undefined): Buffer[] {
  if (size === undefined || size <= 0 || body.length <= size) return [body];
  const out: Buffer[] = [];
  for (let i = 0; i < body.length; i += size) out.push(body.subarray(i, i + size));
  return out;
}

export class FakeEnvoyClient {
  readonly #client: grpc.Client;

  constructor(client: grpc.Client) {
    this.#client = client;
  }

  open(metadata?: Readonly<Record<string, string>>): FakeEnvoyStream {
    const md = new grpc.Metadata();
    for (const [k, v] of Object.entries(metadata ?? {})) md.set(k, v);
    const call = (
      this.#client as unknown as {
        Process(md: grpc.Metadata): grpc.ClientDuplexStream<ProcessingRequest, ProcessingResponse>;
      }
    ).Process(md);
    return new FakeEnvoyStream(call);
  }

  /** Plays Envoy for one whole request (and optionally its response). Never leaves the stream open. */
  async roundTrip(options: RoundTripOptions): Promise<RoundTripResult> {
    const stream = this.open();
    try {
      return await this.#play(stream, options);
    } catch (err) {
      stream.cancel();
      throw err;
    }
  }

  async #play(stream: FakeEnvoyStream, o: RoundTripOptions): Promise<RoundTripResult> {
    const timeout = o.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const mode = o.mode ?? "full-duplex";
    const headerOnly = o.body === undefined;
    const body = o.body === undefined ? Buffer.alloc(0) : toBuffer(o.body);
    const trailers =
      o.trailers === undefined || o.trailers === false ? undefined : o.trailers === true ? {} : o.trailers;
    const config = o.sendProtocolConfig === false ? undefined : { requestBodyMode: mode, responseBodyMode: mode };
    const result: RoundTripResult = {
      status: "routed",
      destination: undefined,
      metadataDestination: undefined,
      setHeaders: new Map(),
      body,
      metadata: {},
      clearRouteCache: false,
      messages: stream.received,
      grpcStatus: { code: -1, details: "" },
    };
    const finish = async (): Promise<RoundTripResult> => {
      stream.end();
      result.grpcStatus = await stream.status(timeout);
      return result;
    };
    const immediate = async (msg: ProcessingResponse): Promise<RoundTripResult> => {
      result.status = "immediate";
      result.immediate = immediateOf(msg);
      result.grpcStatus = await stream.status(timeout);
      return result;
    };
    const takeRouting = (msg: ProcessingResponse, common: ProcessingResponse["request_headers"]): void => {
      result.setHeaders = mutationMap(common?.response?.header_mutation);
      result.clearRouteCache = common?.response?.clear_route_cache === true;
      result.destination = result.setHeaders.get(DESTINATION_ENDPOINT_HEADER);
      result.metadata = metadataJson(msg.dynamic_metadata);
      const lb = result.metadata[DESTINATION_METADATA_NAMESPACE];
      const dest = lb?.[DESTINATION_ENDPOINT_HEADER];
      result.metadataDestination = typeof dest === "string" ? dest : undefined;
    };

    stream.sendRequestHeaders(o.headers, {
      endOfStream: headerOnly,
      ...(o.subsetHint === undefined ? {} : { subsetHint: o.subsetHint }),
      ...(config === undefined ? {} : { protocolConfig: config }),
    });

    if (headerOnly) {
      const msg = await stream.next(timeout, "the header-only routing response");
      if (msg.response === "immediate_response") return immediate(msg);
      if (msg.response !== "request_headers") throw new Error(`expected request_headers, got ${describe(msg)}`);
      takeRouting(msg, msg.request_headers);
      result.body = Buffer.alloc(0);
    } else if (mode === "buffered") {
      const first = await stream.next(timeout, "the BUFFERED request_headers answer");
      if (first.response === "immediate_response") return immediate(first);
      if (first.response !== "request_headers") throw new Error(`expected request_headers, got ${describe(first)}`);
      stream.sendRequestBody(body, trailers === undefined);
      const msg = await stream.next(timeout, "the BUFFERED request_body answer");
      if (msg.response === "immediate_response") return immediate(msg);
      if (msg.response !== "request_body") throw new Error(`expected request_body, got ${describe(msg)}`);
      takeRouting(msg, msg.request_body);
      const mutation = msg.request_body?.response?.body_mutation;
      if (mutation?.body !== undefined) result.body = mutation.body;
      if (trailers !== undefined) {
        stream.sendRequestTrailers(trailers);
        await stream.expect("request_trailers", timeout);
      }
    } else {
      const chunks = chunksOf(body, o.chunkSize);
      chunks.forEach((chunk, i) => {
        stream.sendRequestBody(chunk, trailers === undefined && i === chunks.length - 1);
      });
      if (trailers !== undefined) stream.sendRequestTrailers(trailers);
      const msg = await stream.next(timeout, "the routing response");
      if (msg.response === "immediate_response") return immediate(msg);
      if (msg.response !== "request_headers") throw new Error(`expected request_headers, got ${describe(msg)}`);
      takeRouting(msg, msg.request_headers);
      const parts: Buffer[] = [];
      let sawTrailers = false;
      for (;;) {
        const chunk = await stream.next(timeout, "a request_body chunk");
        if (chunk.response === "immediate_response") return immediate(chunk);
        // With trailers the body ends without end_of_stream; the trailers answer follows the last chunk.
        if (chunk.response === "request_trailers" && trailers !== undefined) {
          sawTrailers = true;
          break;
        }
        if (chunk.response !== "request_body") throw new Error(`expected request_body, got ${describe(chunk)}`);
        const streamed = chunk.request_body?.response?.body_mutation?.streamed_response;
        if (streamed === undefined) throw new Error("request_body answer without streamed_response in FULL_DUPLEX");
        parts.push(streamed.body ?? Buffer.alloc(0));
        if (streamed.end_of_stream === true) break;
      }
      result.body = Buffer.concat(parts);
      if (trailers !== undefined && !sawTrailers) await stream.expect("request_trailers", timeout);
    }

    if (o.response !== undefined) {
      const r = o.response;
      const noBody = r.body === undefined;
      stream.sendResponseHeaders(r.headers, {
        endOfStream: noBody && r.trailers !== true,
        ...(r.servedEndpoint === undefined ? {} : { servedEndpoint: r.servedEndpoint }),
      });
      const headersMsg = await stream.next(timeout, "the response_headers answer");
      if (headersMsg.response === "immediate_response") return immediate(headersMsg);
      if (headersMsg.response !== "response_headers") {
        throw new Error(`expected response_headers, got ${describe(headersMsg)}`);
      }
      const response = {
        setHeaders: mutationMap(headersMsg.response_headers?.response?.header_mutation),
        body: Buffer.alloc(0),
        trailers: false,
      };
      result.response = response;
      const parts: Buffer[] = [];
      const bodies = (r.body ?? []).map(toBuffer);
      bodies.forEach((chunk, i) => {
        stream.sendResponseBody(chunk, r.trailers !== true && i === bodies.length - 1);
      });
      if (r.trailers === true) stream.sendResponseTrailers({});
      if (bodies.length > 0 || r.trailers === true) {
        if (mode === "buffered") {
          for (const chunk of bodies) {
            const msg = await stream.expect("response_body", timeout);
            parts.push(msg.response_body?.response?.body_mutation?.body ?? chunk);
          }
        } else {
          for (;;) {
            const msg = await stream.next(timeout, "a response_body chunk or response_trailers");
            if (msg.response === "response_trailers") {
              response.trailers = true;
              break;
            }
            if (msg.response === "immediate_response") return immediate(msg);
            if (msg.response !== "response_body") throw new Error(`expected response_body, got ${describe(msg)}`);
            const streamed = msg.response_body?.response?.body_mutation?.streamed_response;
            parts.push(streamed?.body ?? Buffer.alloc(0));
            if (streamed?.end_of_stream === true) break;
          }
        }
        if (r.trailers === true && !response.trailers) {
          await stream.expect("response_trailers", timeout);
          response.trailers = true;
        }
      }
      response.body = Buffer.concat(parts);
    }
    return finish();
  }

  close(): void {
    this.#client.close();
  }
}

export interface ConnectOptions {
  /** Speak TLS without verifying the server certificate, as Envoy's EPP clusters do. Default false. */
  tls?: boolean;
  /** Extra channel options. */
  channelOptions?: grpc.ChannelOptions;
}

export function connect(address: string, options: ConnectOptions = {}): FakeEnvoyClient {
  const Client = extProcService();
  const credentials =
    options.tls === true
      ? grpc.credentials.createSsl(null, null, null, {
          rejectUnauthorized: false,
          checkServerIdentity: () => undefined,
        })
      : grpc.credentials.createInsecure();
  const client = new Client(address, credentials, {
    // Separate clients get separate HTTP/2 connections, like separate Envoy workers.
    "grpc.use_local_subchannel_pool": 1,
    "grpc.max_receive_message_length": 64 * 1024 * 1024,
    "grpc.max_send_message_length": 64 * 1024 * 1024,
    // SNI may not carry an IP address (RFC 6066); the name is irrelevant since the certificate is not verified.
    ...(options.tls === true ? { "grpc.ssl_target_name_override": "localhost" } : {}),
    ...options.channelOptions,
  });
  return new FakeEnvoyClient(client);
}
