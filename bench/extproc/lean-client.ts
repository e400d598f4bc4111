/**
 * A lean "Envoy" for the ext_proc benchmark: raw `node:http2` gRPC, no grpc-js and no protobufjs on the client.
 *
 * Why: at 220 KB bodies × 150 users, a grpc-js + protobufjs client spends more of the event loop on its own
 * encoding, decoding and stream bookkeeping than the no-op server spends answering, so the measured latency was
 * mostly the client's. Envoy is C++ and costs almost nothing per request; this client gets as close as Node can:
 * - every request message is pre-encoded once per scenario (headers frame with a fixed-width x-request-id patched
 *   per request; the body-chunk frames are one shared, never-mutated buffer);
 * - responses are not decoded: a protobuf walker follows only the path to `streamed_response.end_of_stream` (or
 *   spots an `immediate_response`) and skips everything else by wire type, without copying frames that arrive
 *   whole in one DATA chunk.
 *
 * Field numbers (verified against proto/envoy/service/ext_proc/v3/external_processor.proto and
 * proto/envoy/config/core/v3/base.proto):
 * - ProcessingRequest: request_headers = 2, request_body = 4, protocol_config = 11;
 * - ProtocolConfiguration: request_body_mode = 1, response_body_mode = 2;
 * - HttpHeaders: headers = 1 (HeaderMap), end_of_stream = 3; HeaderMap: headers = 1 (HeaderValue: key = 1, raw_value = 3);
 * - HttpBody: body = 1, end_of_stream = 2;
 * - ProcessingResponse: request_body = 3 (BodyResponse), immediate_response = 7;
 * - BodyResponse.response = 1 (CommonResponse); CommonResponse.body_mutation = 3; BodyMutation.streamed_response = 3;
 *   StreamedBodyResponse.end_of_stream = 2.
 */
import * as http2 from "node:http2";

export const PROCESS_PATH = "/envoy.service.ext_proc.v3.ExternalProcessor/Process";
/** `BodySendMode.FULL_DUPLEX_STREAMED`, what every GIE data plane configures. */
export const FULL_DUPLEX_STREAMED = 4;
/** Envoy's chunking of request bodies towards ext_proc in FULL_DUPLEX_STREAMED (one DATA-frame-ish slice). */
export const DEFAULT_CHUNK_BYTES = 32 * 1024;
/** Responses larger than this are a broken server, not a benchmark result: refuse rather than buffer. */
export const MAX_RESPONSE_MESSAGE_BYTES = 64 * 1024 * 1024;

export class LeanClientError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = "LeanClientError";
    this.code = code;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Encoding (once per scenario; not on the per-request path except the id patch)

const WT_VARINT = 0;
const WT_I64 = 1;
const WT_LEN = 2;
const WT_I32 = 5;

function varint(n: number): Buffer {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`varint out of range: ${n}`);
  const bytes: number[] = [];
  while (n >= 0x80) {
    bytes.push((n % 0x80) | 0x80);
    n = Math.floor(n / 0x80);
  }
  bytes.push(n);
  return Buffer.from(bytes);
}

function tag(field: number, wireType: number): Buffer {
  return varint(field * 8 + wireType);
}

function lenField(field: number, payload: Buffer): Buffer {
  return Buffer.concat([tag(field, WT_LEN), varint(payload.length), payload]);
}

function varintField(field: number, value: number): Buffer {
  return Buffer.concat([tag(field, WT_VARINT), varint(value)]);
}

export interface HeadersRequestOptions {
  /** ProtocolConfiguration, sent on the first message of a stream only (Envoy does the same). Omitted if undefined. */
  readonly protocolConfig?: { readonly requestBodyMode: number; readonly responseBodyMode: number };
  /** HttpHeaders.end_of_stream: true means no body follows. Default false. */
  readonly endOfStream?: boolean;
}

/** Protobuf bytes (unframed) of a ProcessingRequest{request_headers}; header values go in `raw_value` like Envoy's. */
export function encodeHeadersRequest(
  headers: readonly (readonly [string, string | Buffer])[],
  options: HeadersRequestOptions = {},
): Buffer {
  const values = headers.map(([key, value]) =>
    lenField(
      1,
      Buffer.concat([
        lenField(1, Buffer.from(key)),
        lenField(3, typeof value === "string" ? Buffer.from(value) : value),
      ]),
    ),
  );
  const httpHeaders = [lenField(1, Buffer.concat(values))];
  if (options.endOfStream === true) httpHeaders.push(varintField(3, 1));
  const parts = [lenField(2, Buffer.concat(httpHeaders))];
  const pc = options.protocolConfig;
  if (pc !== undefined) {
    const config: Buffer[] = [];
    // proto3 omits zero values; NONE (0) is the default either way.
    if (pc.requestBodyMode !== 0) config.push(varintField(1, pc.requestBodyMode));
    if (pc.responseBodyMode !== 0) config.push(varintField(2, pc.responseBodyMode));
    parts.push(lenField(11, Buffer.concat(config)));
  }
  return Buffer.concat(parts);
}

/** Protobuf bytes (unframed) of a ProcessingRequest{request_body: HttpBody{body, end_of_stream}}. */
export function encodeBodyRequest(chunk: Buffer, endOfStream: boolean): Buffer {
  const body = [lenField(1, chunk)];
  if (endOfStream) body.push(varintField(2, 1));
  return lenField(4, Buffer.concat(body));
}

/** gRPC length-prefixed message: flag 0 (uncompressed), uint32 big-endian length, bytes. */
export function grpcFrame(message: Buffer): Buffer {
  const out = Buffer.allocUnsafe(5 + message.length);
  out[0] = 0;
  out.writeUInt32BE(message.length, 1);
  message.copy(out, 5);
  return out;
}

export interface TemplateOptions {
  /** Body slice per request_body message. Default 32 KiB (DEFAULT_CHUNK_BYTES). */
  readonly chunkBytes?: number;
  /** Header whose value carries the per-request id. Default "x-request-id". */
  readonly idHeader?: string;
  /** Fixed prefix of the id value. Default "req-". */
  readonly idPrefix?: string;
  /** Decimal digits of the id (zero-padded, wraps modulo 10^digits). Default 10. */
  readonly idDigits?: number;
}

/**
 * One scenario's pre-encoded request stream. Only the x-request-id differs between requests, and it is fixed-width,
 * so every request's headers frame is the template with a few digits patched in; the body frames are shared.
 */
export class RequestTemplate {
  /** The request_body frames, one per chunk, the last with end_of_stream (read-only; shared by all requests). */
  readonly bodyFrames: readonly Buffer[];
  /** `bodyFrames` concatenated, written with one call per request. */
  readonly bodyBytes: Buffer;
  readonly #headers: Buffer;
  readonly #idOffset: number;
  readonly #digits: number;
  readonly #modulus: number;

  constructor(headers: readonly (readonly [string, string])[], body: Buffer, options: TemplateOptions = {}) {
    const chunkBytes = options.chunkBytes ?? DEFAULT_CHUNK_BYTES;
    const idHeader = options.idHeader ?? "x-request-id";
    const prefix = options.idPrefix ?? "req-";
    const digits = options.idDigits ?? 10;
    if (!Number.isInteger(chunkBytes) || chunkBytes < 1) throw new RangeError(`chunkBytes must be ≥ 1: ${chunkBytes}`);
    if (!Number.isInteger(digits) || digits < 1 || digits > 15)
      throw new RangeError(`idDigits must be 1..15: ${digits}`);
    // An empty body would need a different completion rule (no body chunk comes back); the bench never sends one.
    if (body.length === 0) throw new RangeError("RequestTemplate needs a non-empty body");
    const placeholder = `${prefix}${"\u0001".repeat(digits)}`;
    const withId = headers.filter(([k]) => k !== idHeader).map(([k, v]) => [k, v] as const);
    withId.push([idHeader, placeholder]);
    this.#headers = grpcFrame(
      encodeHeadersRequest(withId, {
        protocolConfig: { requestBodyMode: FULL_DUPLEX_STREAMED, responseBodyMode: FULL_DUPLEX_STREAMED },
      }),
    );
    const marker = this.#headers.indexOf(Buffer.from(placeholder));
    if (marker < 0) throw new Error("id placeholder not found in the encoded headers");
    this.#idOffset = marker + Buffer.byteLength(prefix);
    this.#digits = digits;
    this.#modulus = 10 ** digits;
    const frames: Buffer[] = [];
    for (let i = 0; i < body.length; i += chunkBytes)
      frames.push(grpcFrame(encodeBodyRequest(body.subarray(i, i + chunkBytes), i + chunkBytes >= body.length)));
    this.bodyFrames = frames;
    this.bodyBytes = Buffer.concat(frames);
  }

  /**
   * A fresh headers frame for request `id`. A copy, not the template patched in place: http2 keeps a reference to
   * a written buffer until it is flushed, so a shared buffer would be overwritten under queued writes.
   */
  headersFrame(id: number): Buffer {
    const out = Buffer.allocUnsafe(this.#headers.length);
    this.#headers.copy(out);
    let n = Math.abs(Math.trunc(id)) % this.#modulus;
    for (let i = this.#idOffset + this.#digits - 1; i >= this.#idOffset; i--) {
      out[i] = 0x30 + (n % 10);
      n = Math.floor(n / 10);
    }
    return out;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Decoding: a walker that looks only for the two answers that end a request

/** Nothing decisive in this message (headers response, intermediate body chunk, metadata…). */
export const OUTCOME_NONE = 0;
/** request_body.response.body_mutation.streamed_response.end_of_stream = true: the request is done. */
export const OUTCOME_DONE = 1;
/** immediate_response: the server refused the request. */
export const OUTCOME_IMMEDIATE = 2;
export type Outcome = typeof OUTCOME_NONE | typeof OUTCOME_DONE | typeof OUTCOME_IMMEDIATE;

/** StreamedBodyResponse.end_of_stream: field 2, wire type varint. */
const EOS_KEY = (2 << 3) | WT_VARINT;

// Walker cursor, module-level so the walk allocates nothing; the walker is synchronous and not re-entrant.
let pos = 0;
let subEnd = 0;

function readVarint(buf: Buffer, end: number): number {
  let result = 0;
  let scale = 1;
  for (let i = 0; i < 10; i++) {
    if (pos >= end) throw new LeanClientError("PROTOBUF_TRUNCATED", "truncated varint");
    const b = buf[pos++]!;
    result += (b & 0x7f) * scale;
    if (b < 0x80) return result;
    scale *= 0x80;
  }
  throw new LeanClientError("PROTOBUF_MALFORMED", "varint longer than 10 bytes");
}

function skip(buf: Buffer, end: number, wireType: number): void {
  switch (wireType) {
    case WT_VARINT:
      readVarint(buf, end);
      return;
    case WT_I64:
      pos += 8;
      break;
    case WT_LEN: {
      // Not `pos += readVarint(…)`: that would add the length to pos as it was before the varint was read.
      const len = readVarint(buf, end);
      pos += len;
      break;
    }
    case WT_I32:
      pos += 4;
      break;
    default:
      // Groups (3, 4) are proto2-only and absent from ext_proc; anything else is not protobuf.
      throw new LeanClientError("PROTOBUF_MALFORMED", `unsupported wire type ${wireType}`);
  }
  if (pos > end) throw new LeanClientError("PROTOBUF_TRUNCATED", "field runs past its message");
}

/**
 * Finds length-delimited field `field` in the message spanning [start, end): returns its value's start and sets
 * `subEnd`, or returns -1. The first occurrence wins (a server never repeats these singular fields).
 */
function findLen(buf: Buffer, start: number, end: number, field: number): number {
  pos = start;
  while (pos < end) {
    const key = readVarint(buf, end);
    const wireType = key & 7;
    if (key >>> 3 === field && wireType === WT_LEN) {
      const len = readVarint(buf, end);
      const valueStart = pos;
      subEnd = valueStart + len;
      if (subEnd > end) throw new LeanClientError("PROTOBUF_TRUNCATED", "field runs past its message");
      return valueStart;
    }
    skip(buf, end, wireType);
  }
  return -1;
}

/** Classifies one ProcessingResponse (protobuf bytes buf[start, end)). Throws LeanClientError on malformed input. */
export function classifyResponse(buf: Buffer, start: number, end: number): Outcome {
  // Top level: immediate_response (7) or request_body (3); a oneof, so at most one is set.
  pos = start;
  let bodyStart = -1;
  let bodyEnd = 0;
  while (pos < end) {
    const key = readVarint(buf, end);
    const field = key >>> 3;
    const wireType = key & 7;
    if (wireType === WT_LEN && (field === 7 || field === 3)) {
      const len = readVarint(buf, end);
      if (pos + len > end) throw new LeanClientError("PROTOBUF_TRUNCATED", "field runs past its message");
      if (field === 7) return OUTCOME_IMMEDIATE;
      bodyStart = pos;
      bodyEnd = pos + len;
      pos = bodyEnd;
      continue;
    }
    skip(buf, end, wireType);
  }
  if (bodyStart < 0) return OUTCOME_NONE;
  // BodyResponse.response (1) → CommonResponse.body_mutation (3) → BodyMutation.streamed_response (3).
  let s = findLen(buf, bodyStart, bodyEnd, 1);
  if (s < 0) return OUTCOME_NONE;
  s = findLen(buf, s, subEnd, 3);
  if (s < 0) return OUTCOME_NONE;
  s = findLen(buf, s, subEnd, 3);
  if (s < 0) return OUTCOME_NONE;
  // StreamedBodyResponse.end_of_stream (2, varint); the last value wins for a scalar.
  const e = subEnd;
  pos = s;
  let eos = false;
  while (pos < e) {
    const key = readVarint(buf, e);
    if (key === EOS_KEY) eos = readVarint(buf, e) !== 0;
    else skip(buf, e, key & 7);
  }
  return eos ? OUTCOME_DONE : OUTCOME_NONE;
}

/**
 * Reassembles gRPC length-prefixed messages from HTTP/2 DATA chunks (a message may span chunks; a chunk may hold
 * several) and classifies each. Messages that arrive whole inside one chunk are walked in place, without a copy.
 */
export class ResponseDecoder {
  readonly #prefix = Buffer.alloc(5);
  #prefixLen = 0;
  #message: Buffer | undefined;
  #filled = 0;

  /** Feeds one chunk; returns the first decisive outcome in it (later bytes are ignored after one). */
  push(chunk: Buffer): Outcome {
    let off = 0;
    const n = chunk.length;
    while (off < n) {
      if (this.#message !== undefined) {
        const take = Math.min(this.#message.length - this.#filled, n - off);
        chunk.copy(this.#message, this.#filled, off, off + take);
        this.#filled += take;
        off += take;
        if (this.#filled < this.#message.length) return OUTCOME_NONE;
        const message = this.#message;
        this.#message = undefined;
        const outcome = classifyResponse(message, 0, message.length);
        if (outcome !== OUTCOME_NONE) return outcome;
        continue;
      }
      if (this.#prefixLen === 0 && n - off >= 5) {
        // Fast path: prefix (and maybe the whole message) inside this chunk.
        const len = this.#checkPrefix(chunk[off]!, chunk.readUInt32BE(off + 1));
        off += 5;
        if (n - off >= len) {
          const outcome = classifyResponse(chunk, off, off + len);
          off += len;
          if (outcome !== OUTCOME_NONE) return outcome;
        } else {
          this.#message = Buffer.allocUnsafe(len);
          this.#filled = 0;
        }
        continue;
      }
      // Slow path: a prefix split across chunks.
      const take = Math.min(5 - this.#prefixLen, n - off);
      chunk.copy(this.#prefix, this.#prefixLen, off, off + take);
      this.#prefixLen += take;
      off += take;
      if (this.#prefixLen < 5) return OUTCOME_NONE;
      this.#prefixLen = 0;
      const len = this.#checkPrefix(this.#prefix[0]!, this.#prefix.readUInt32BE(1));
      if (len === 0) {
        const outcome = classifyResponse(this.#prefix, 0, 0);
        if (outcome !== OUTCOME_NONE) return outcome;
      } else {
        this.#message = Buffer.allocUnsafe(len);
        this.#filled = 0;
      }
    }
    return OUTCOME_NONE;
  }

  #checkPrefix(flag: number, len: number): number {
    // The client never offers grpc-accept-encoding, so a compressed message is a server bug.
    if (flag !== 0) throw new LeanClientError("GRPC_COMPRESSED", `unexpected gRPC message flag ${flag}`);
    if (len > MAX_RESPONSE_MESSAGE_BYTES)
      throw new LeanClientError("GRPC_MESSAGE_TOO_LARGE", `gRPC message of ${len} bytes exceeds the limit`);
    return len;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// The client

export interface LeanClientOptions {
  readonly port: number;
  /** Default "127.0.0.1". */
  readonly host?: string;
  /** HTTP/2 sessions, like Envoy worker threads each holding one connection. Default 4. */
  readonly connections?: number;
  /** A request not finished after this long is reset and rejected (keeps the client bounded). Default 30000 ms. */
  readonly requestTimeoutMs?: number;
}

// Envoy's defaults for HTTP/2 upstreams (initial stream and connection windows of 256 MiB), so flow control never
// paces the echoed bodies and the measurement is the server's latency, not window-update round trips.
const WINDOW_BYTES = 256 * 1024 * 1024;

interface Pending {
  readonly stream: http2.ClientHttp2Stream;
  readonly start: number;
  readonly resolve: (ms: number) => void;
  readonly reject: (err: Error) => void;
  settled: boolean;
}

export class LeanExtProcClient {
  readonly #authority: string;
  readonly #sessions: (http2.ClientHttp2Session | undefined)[];
  readonly #timeoutMs: number;
  readonly #inflight = new Set<Pending>();
  readonly #sweeper: NodeJS.Timeout;
  #closed = false;

  constructor(options: LeanClientOptions) {
    const connections = options.connections ?? 4;
    const timeoutMs = options.requestTimeoutMs ?? 30_000;
    if (!Number.isInteger(options.port) || options.port < 1 || options.port > 65535)
      throw new RangeError(`port must be 1..65535: ${options.port}`);
    if (!Number.isInteger(connections) || connections < 1) throw new RangeError(`connections must be ≥ 1`);
    if (!(timeoutMs > 0)) throw new RangeError(`requestTimeoutMs must be > 0: ${timeoutMs}`);
    const host = options.host ?? "127.0.0.1";
    this.#authority = `http://${host.includes(":") ? `[${host}]` : host}:${options.port}`;
    this.#sessions = Array.from({ length: connections }, () => undefined);
    this.#timeoutMs = timeoutMs;
    // One coarse sweep instead of a timer per request: the timeout is a safety bound, not a measurement.
    this.#sweeper = setInterval(() => this.#sweep(), Math.min(1000, timeoutMs));
    this.#sweeper.unref();
    for (let i = 0; i < connections; i++) this.#session(i);
  }

  get connections(): number {
    return this.#sessions.length;
  }

  get inflight(): number {
    return this.#inflight.size;
  }

  /**
   * Plays one request on connection `connection % connections`: headers (with protocol_config) and all body chunks,
   * written back to back like Envoy forwarding a fast client. Resolves with the milliseconds from just before the
   * first write to the decoding of the final echoed body chunk; rejects on an immediate_response, a non-OK
   * grpc-status, a reset or a stream that ends first, malformed bytes, or the request timeout.
   */
  process(connection: number, template: RequestTemplate, id: number): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      // Synchronous failures are delivered on a later turn: a caller retrying in a loop must not starve the event
      // loop with a microtask-only cycle (its stop timer would never fire).
      if (this.#closed) {
        setImmediate(reject, new LeanClientError("CLIENT_CLOSED", "client is closed"));
        return;
      }
      const session = this.#session(connection % this.#sessions.length);
      const headersFrame = template.headersFrame(id);
      const start = performance.now();
      let stream: http2.ClientHttp2Stream;
      try {
        stream = session.request(
          { ":method": "POST", ":path": PROCESS_PATH, "content-type": "application/grpc", te: "trailers" },
          { endStream: false },
        );
      } catch (err) {
        setImmediate(reject, err as Error);
        return;
      }
      const pending: Pending = { stream, start, resolve, reject, settled: false };
      this.#inflight.add(pending);
      const decoder = new ResponseDecoder();
      const fail = (err: Error) => {
        if (pending.settled) return;
        pending.settled = true;
        this.#inflight.delete(pending);
        if (!stream.destroyed) stream.close(http2.constants.NGHTTP2_CANCEL);
        reject(err);
      };
      stream.on("response", (headers) => {
        const status = headers[":status"];
        if (status !== 200) fail(new LeanClientError("HTTP_STATUS", `HTTP status ${status}`));
        // Trailers-Only: an error status arrives in the response headers with END_STREAM.
        else checkGrpcStatus(headers, fail);
      });
      stream.on("data", (chunk: Buffer) => {
        if (pending.settled) return;
        let outcome: Outcome;
        try {
          outcome = decoder.push(chunk);
        } catch (err) {
          fail(err as Error);
          return;
        }
        if (outcome === OUTCOME_DONE) {
          const elapsed = performance.now() - start;
          pending.settled = true;
          this.#inflight.delete(pending);
          // Half-close like Envoy once the request body is done; the server then ends with OK trailers.
          stream.end();
          resolve(elapsed);
        } else if (outcome === OUTCOME_IMMEDIATE) {
          fail(new LeanClientError("IMMEDIATE_RESPONSE", "server answered with an immediate_response"));
        }
      });
      stream.on("trailers", (trailers) => checkGrpcStatus(trailers, fail));
      stream.on("error", (err) => fail(err));
      // The server finished its side (OK trailers included) without the last chunk: our half stays open, so
      // "close" would never come on its own.
      stream.on("end", () => {
        if (!pending.settled)
          fail(new LeanClientError("STREAM_CLOSED", "server ended the stream before the last body chunk"));
      });
      stream.on("close", () => {
        if (!pending.settled)
          fail(
            new LeanClientError("STREAM_CLOSED", `stream closed before the last body chunk (rst ${stream.rstCode})`),
          );
      });
      stream.write(headersFrame);
      stream.write(template.bodyBytes);
    });
  }

  /**
   * Closes every session gracefully (in-flight streams finish), destroying them after `graceMs` if a server does not
   * let go. Requests still pending after the grace are rejected.
   */
  async close(graceMs = 5000): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#sweeper);
    const sessions = this.#sessions.filter((s): s is http2.ClientHttp2Session => s !== undefined && !s.destroyed);
    await Promise.all(
      sessions.map(
        (s) =>
          new Promise<void>((resolve) => {
            const timer = setTimeout(() => s.destroy(), graceMs);
            s.close(() => {
              clearTimeout(timer);
              resolve();
            });
            s.once("close", () => {
              clearTimeout(timer);
              resolve();
            });
          }),
      ),
    );
    for (const p of this.#inflight) {
      p.settled = true;
      p.reject(new LeanClientError("CLIENT_CLOSED", "client closed before the request finished"));
    }
    this.#inflight.clear();
  }

  #session(i: number): http2.ClientHttp2Session {
    const existing = this.#sessions[i];
    if (existing !== undefined && !existing.closed && !existing.destroyed) return existing;
    // A lost connection is re-dialled on next use, as Envoy would; its streams have already failed individually.
    const session = http2.connect(this.#authority, {
      settings: { initialWindowSize: WINDOW_BYTES, enablePush: false },
      // Node refuses new streams once a session buffers more than this (default 10 MB): 150 users × 220 KB in
      // flight on 4 connections can exceed that, and the refusal would be the client's limit, not the server's.
      maxSessionMemory: 256,
    });
    session.on("connect", () => session.setLocalWindowSize(WINDOW_BYTES));
    // Session errors surface on each stream; without a listener they would crash the process.
    session.on("error", () => {});
    this.#sessions[i] = session;
    return session;
  }

  #sweep(): void {
    const deadline = performance.now() - this.#timeoutMs;
    for (const p of this.#inflight) {
      if (p.start > deadline) continue;
      p.settled = true;
      this.#inflight.delete(p);
      if (!p.stream.destroyed) p.stream.close(http2.constants.NGHTTP2_CANCEL);
      p.reject(new LeanClientError("TIMEOUT", `request not finished within ${this.#timeoutMs} ms`));
    }
  }
}

function checkGrpcStatus(headers: http2.IncomingHttpHeaders, fail: (err: Error) => void): void {
  const status = headers["grpc-status"];
  if (status === undefined || status === "0") return;
  const message = headers["grpc-message"];
  fail(
    new LeanClientError(
      "GRPC_STATUS",
      `grpc-status ${status}${typeof message === "string" ? `: ${percentDecode(message)}` : ""}`,
    ),
  );
}

/** grpc-message is percent-encoded; a server that encodes it wrongly must not turn an error report into a throw. */
function percentDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}
