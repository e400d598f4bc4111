/**
 * The scrape path's HTTP transport: one keep-alive connection per origin, one GET at a time, the body collected as
 * text (docs/design/model-servers.md §9, "The scrape transport").
 *
 * Plain `http` origins get Http1GetClient, an HTTP/1.1 client of our own over node:net. Why not undici, which did
 * this job before: at fleet scale (1,000 pods scraped 20 times a second is 20,000 GETs a second in one worker
 * thread) undici's general machinery — its request and response objects, header arrays, llhttp callbacks, per
 * request timers — cost about as much CPU as the kernel's loopback round trip, and the scrape budget per endpoint is
 * what decides whether the configured interval is achieved at all (bench/README.md, "A leaner scrape transport").
 * A scrape needs none of it: one request shape, answers of a few KB, no redirects, no pipelining, no upgrades.
 * `https` origins keep undici (UndiciGetClient): TLS costs far more than the parsing saved, and undici's TLS
 * handling is not ours to rewrite.
 *
 * Both clients bound everything they read: the status line and headers (MAX_HEADER_BYTES), each chunk-size line,
 * the body (per call), and an error body drained for reuse (ERROR_BODY_LIMIT; past it the connection is dropped
 * and the status still reported). A response that does not follow HTTP/1.1 fails the call with code
 * `SY_HTTP_PROTOCOL` and its connection is never reused; no input makes a call hang past its caller's deadline,
 * which the caller enforces with abort().
 */
import { connect, type Socket } from "node:net";
import { Client, type Dispatcher } from "undici";
import { hostPort } from "../common/address.js";

/** What a completed GET returns. `text` is empty for a non-200 answer (its body is drained, not kept). */
export interface GetOutcome {
  readonly statusCode: number;
  readonly text: string;
}

/** One GET in flight or queued. */
export interface GetCall {
  readonly done: Promise<GetOutcome>;
  /** The reason given to abort(), if it was aborted. */
  readonly reason: Error | undefined;
  /** Still waiting for a connection: a deadline now means the origin could not be reached, not a slow answer. */
  readonly connecting: boolean;
  /** Fails the call with `reason` (once); an in-flight call's connection is closed, since its answer is unread. */
  abort(reason: Error): void;
}

export interface GetClient {
  /**
   * Queues a GET of `path` (origin-form, already validated) with this `accept` header. A 200 body larger than
   * `maxBodyBytes` fails the call with code `SY_HTTP_BODY_TOO_LARGE`.
   */
  get(path: string, accept: string, maxBodyBytes: number): GetCall;
  /** Fails every queued and in-flight call and closes the connection; resolves once the socket is closed. */
  destroy(): Promise<void>;
}

export interface GetClientOptions {
  readonly scheme: "http" | "https";
  readonly host: string;
  readonly port: number;
  /** An idle connection is closed after this long (well past the scrape interval, so consecutive scrapes reuse it). */
  readonly keepAliveTimeoutMs: number;
  /** https only: a connect that takes longer fails (http: the caller's deadline covers the connect). */
  readonly connectTimeoutMs: number;
  /** https only. */
  readonly rejectUnauthorized: boolean;
}

/** Status line plus headers: the size Node's own HTTP parser accepts by default. */
export const MAX_HEADER_BYTES = 16 * 1024;
/** A non-200 body is drained up to this size so the connection is reused; a larger one closes it. */
export const ERROR_BODY_LIMIT = 128 * 1024;
/** A chunk-size line (hex size plus extensions) longer than this is not HTTP. */
const MAX_CHUNK_LINE_BYTES = 1024;

export type GetErrorCode =
  /** The answer does not follow HTTP/1.1 (bad status line, header, framing, or bytes nobody asked for). */
  | "SY_HTTP_PROTOCOL"
  /** A 200 body past the call's limit. */
  | "SY_HTTP_BODY_TOO_LARGE"
  /** The connection closed (or failed) after the request was sent and before the answer was complete. */
  | "SY_HTTP_CLOSED"
  /** destroy() was called. */
  | "SY_HTTP_DESTROYED";

/** A failure of our own transport; a connect failure is Node's own error instead (code ECONNREFUSED, …). */
export class GetError extends Error {
  override readonly name = "GetError";
  constructor(
    readonly code: GetErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
  }
}

export function createGetClient(options: GetClientOptions): GetClient {
  return options.scheme === "https" ? new UndiciGetClient(options) : new Http1GetClient(options);
}

// ---------------------------------------------------------------------------------------------------------------
// Plain HTTP/1.1 over node:net

const CR = 13;
const LF = 10;
const CRLFCRLF = Buffer.from("\r\n\r\n", "latin1");
const CRLF = Buffer.from("\r\n", "latin1");
const EMPTY = Buffer.alloc(0);
/**
 * Every connection of this thread reads into this one buffer (net's `onread`): no Buffer allocated per read and no
 * Readable stream between the socket and the parser. Safe because each read is parsed synchronously; whatever the
 * answer still needs after the callback returns (a partial head or body) is copied out first (#keepBorrowed).
 */
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);

/** Where the parser of the current answer stands. */
enum Phase {
  Head,
  /** Body framed by content-length: `remaining` bytes to go. */
  Length,
  /** A chunk-size line is expected. */
  ChunkSize,
  /** Inside a chunk: `remaining` bytes of data, then CRLF. */
  ChunkData,
  ChunkDataEnd,
  /** After the last chunk: trailer lines until an empty one. */
  Trailers,
  /** No framing: the body runs until the server closes. */
  UntilClose,
}

class Http1Call implements GetCall {
  readonly done: Promise<GetOutcome>;
  #resolve!: (v: GetOutcome) => void;
  #reject!: (err: Error) => void;
  #reason: Error | undefined;
  settled = false;
  /** Waiting for a connection (not yet written): a deadline then is a connect failure, not a slow answer. */
  connecting = false;
  /** Set by the client while this call owns the connection; abort() asks it to drop the connection. */
  onAbort: ((call: Http1Call) => void) | undefined;

  constructor(
    readonly request: Buffer,
    readonly maxBodyBytes: number,
  ) {
    this.done = new Promise((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    // A failure nobody awaited (a call dropped by destroy()) must not become an unhandled rejection, which ends
    // the process; the caller still sees it through `done`.
    this.done.catch(() => {});
  }

  get reason(): Error | undefined {
    return this.#reason;
  }

  abort(reason: Error): void {
    if (this.settled || this.#reason !== undefined) return;
    this.#reason = reason;
    this.fail(reason);
    this.onAbort?.(this);
  }

  succeed(outcome: GetOutcome): void {
    if (this.settled) return;
    this.settled = true;
    this.#resolve(outcome);
  }

  fail(err: Error): void {
    if (this.settled) return;
    this.settled = true;
    this.#reject(err);
  }
}

/**
 * One keep-alive HTTP/1.1 connection to one origin, GETs sent one at a time in call order. A request written on a
 * reused connection that the server closed before answering a single byte (its idle close racing our write) is
 * sent once more on a fresh connection: a GET is safe to repeat, and otherwise every keep-alive timeout on the
 * server's side would read as a failed scrape.
 */
export class Http1GetClient implements GetClient {
  readonly #host: string;
  readonly #port: number;
  readonly #hostHeader: string;
  readonly #keepAliveMs: number;
  /** Request bytes per (path, accept): built once, written as-is every scrape; the last one is checked first. */
  readonly #requests = new Map<string, Buffer>();
  #lastPath = "";
  #lastAccept = "";
  #lastRequest: Buffer | undefined;
  readonly #queue: Http1Call[] = [];
  #socket: Socket | undefined;
  #connected = false;
  /** The socket has carried a complete exchange (so a close before any answer byte may be the server's idle close). */
  #reused = false;
  /**
   * Closes the connection once it has been idle for the keep-alive time. One timer per connection that re-arms
   * itself for what is left, not one created and cleared per GET (20 a second per endpoint).
   */
  #idleTimer: NodeJS.Timeout | undefined;
  /** performance.now() when the connection last became idle. */
  #idleSince = 0;
  #destroyed = false;

  // The answer being read for #current.
  #current: Http1Call | undefined;
  #retried = false;
  #phase: Phase = Phase.Head;
  /** The partial status line and headers, or chunk-size or trailer line, read so far (at most one buffer). */
  #head: Buffer | undefined;
  #statusCode = 0;
  #keepAlive = true;
  #remaining = 0;
  #body: Buffer[] = [];
  #bodyBytes = 0;
  /** The answer's bytes are counted but not kept (a non-200, drained for reuse). */
  #discard = false;
  /** Any byte of the answer arrived. */
  #answered = false;

  constructor(options: Pick<GetClientOptions, "host" | "port" | "keepAliveTimeoutMs">) {
    this.#host = options.host;
    this.#port = options.port;
    this.#hostHeader = hostPort(options.host, options.port);
    this.#keepAliveMs = options.keepAliveTimeoutMs;
  }

  get(path: string, accept: string, maxBodyBytes: number): GetCall {
    let request = this.#lastRequest;
    if (request === undefined || path !== this.#lastPath || accept !== this.#lastAccept) {
      const key = `${path}\n${accept}`;
      request = this.#requests.get(key);
      if (request === undefined) {
        request = Buffer.from(
          `GET ${path} HTTP/1.1\r\nhost: ${this.#hostHeader}\r\naccept: ${accept}\r\nuser-agent: switchyard\r\n\r\n`,
          "latin1",
        );
        this.#requests.set(key, request);
      }
      this.#lastPath = path;
      this.#lastAccept = accept;
      this.#lastRequest = request;
    }
    const call = new Http1Call(request, maxBodyBytes);
    if (this.#destroyed) {
      call.fail(new GetError("SY_HTTP_DESTROYED", "client destroyed"));
      return call;
    }
    call.onAbort = (c) => this.#aborted(c);
    this.#queue.push(call);
    this.#pump();
    return call;
  }

  destroy(): Promise<void> {
    this.#destroyed = true;
    const err = new GetError("SY_HTTP_DESTROYED", "client destroyed");
    const current = this.#current;
    this.#current = undefined;
    current?.fail(err);
    for (const call of this.#queue.splice(0)) call.fail(err);
    return this.#drop();
  }

  #aborted(call: Http1Call): void {
    if (call === this.#current) {
      // Its answer is still on the wire: the connection cannot carry another request.
      this.#current = undefined;
      void this.#drop();
      this.#pump();
      return;
    }
    const i = this.#queue.indexOf(call);
    if (i !== -1) this.#queue.splice(i, 1);
  }

  /** Closes the connection (if any); resolves when it is closed. */
  #drop(): Promise<void> {
    this.#clearIdle();
    const socket = this.#socket;
    this.#socket = undefined;
    this.#connected = false;
    this.#reused = false;
    if (socket === undefined || socket.closed) return Promise.resolve();
    return new Promise((resolve) => {
      socket.once("close", () => resolve());
      socket.destroy();
    });
  }

  #armIdle(ms: number): void {
    this.#idleTimer = setTimeout(() => {
      this.#idleTimer = undefined;
      if (this.#socket === undefined) return;
      const idle = this.#current === undefined ? performance.now() - this.#idleSince : 0;
      if (idle >= this.#keepAliveMs) void this.#drop();
      else this.#armIdle(this.#keepAliveMs - idle);
    }, ms);
    this.#idleTimer.unref();
  }

  #clearIdle(): void {
    if (this.#idleTimer !== undefined) {
      clearTimeout(this.#idleTimer);
      this.#idleTimer = undefined;
    }
  }

  #pump(): void {
    if (this.#current !== undefined || this.#destroyed) return;
    const call = this.#queue.shift();
    if (call === undefined) {
      this.#idleSince = performance.now();
      if (this.#socket !== undefined && this.#idleTimer === undefined) this.#armIdle(this.#keepAliveMs);
      return;
    }
    this.#current = call;
    this.#retried = false;
    this.#send(call);
  }

  #send(call: Http1Call): void {
    this.#resetAnswer();
    const socket = this.#socket;
    if (socket !== undefined && this.#connected) {
      call.connecting = false;
      socket.write(call.request);
      return;
    }
    call.connecting = true;
    if (socket === undefined) this.#open();
    // Otherwise still connecting: the connect handler writes it.
  }

  #open(): void {
    const socket = connect({
      host: this.#host,
      port: this.#port,
      noDelay: true,
      onread: {
        buffer: READ_BUFFER,
        callback: (nread: number, buf: Uint8Array) => {
          if (this.#socket === socket)
            this.#onData(buf === READ_BUFFER ? READ_BUFFER.subarray(0, nread) : Buffer.from(buf.subarray(0, nread)));
          return true;
        },
      },
    });
    this.#socket = socket;
    this.#connected = false;
    this.#reused = false;
    socket.on("connect", () => {
      if (this.#socket !== socket) return;
      this.#connected = true;
      const call = this.#current;
      if (call === undefined) return;
      call.connecting = false;
      socket.write(call.request);
    });
    socket.on("error", (err) => {
      if (this.#socket === socket) this.#onClose(err);
    });
    socket.on("close", () => {
      if (this.#socket === socket) this.#onClose(undefined);
    });
  }

  #resetAnswer(): void {
    this.#phase = Phase.Head;
    this.#head = undefined;
    this.#statusCode = 0;
    this.#keepAlive = true;
    this.#remaining = 0;
    this.#body.length = 0;
    this.#bodyBytes = 0;
    this.#discard = false;
    this.#answered = false;
  }

  #onClose(err: Error | undefined): void {
    const wasConnected = this.#connected;
    const reused = this.#reused;
    this.#socket = undefined;
    this.#connected = false;
    this.#reused = false;
    this.#clearIdle();
    const call = this.#current;
    if (call === undefined) return; // an idle connection closed by the server: the next call opens another
    if (this.#phase === Phase.UntilClose && err === undefined) {
      this.#finish();
      this.#pump();
      return;
    }
    if (!this.#answered && reused && !this.#retried) {
      this.#retried = true;
      this.#send(call);
      return;
    }
    this.#current = undefined;
    if (!wasConnected && err !== undefined) {
      // Node's own connect error (ECONNREFUSED, EHOSTUNREACH, …): the caller classifies it by its code.
      call.fail(err);
    } else {
      call.fail(
        new GetError(
          "SY_HTTP_CLOSED",
          `connection closed ${this.#answered ? "mid-answer" : "before an answer"}${err === undefined ? "" : ` (${errCode(err)})`}`,
          { cause: err },
        ),
      );
    }
    this.#pump();
  }

  #protocolError(message: string): void {
    const call = this.#current;
    this.#current = undefined;
    void this.#drop();
    call?.fail(new GetError("SY_HTTP_PROTOCOL", message));
  }

  #onData(chunk: Buffer): void {
    if (this.#current === undefined) {
      // Bytes with no request outstanding: the server is out of step with us, so the connection is not reusable.
      void this.#drop();
      return;
    }
    this.#answered = true;
    const data = this.#parse(chunk);
    if (this.#current !== undefined) this.#keepBorrowed();
    // Bytes past the end of a complete answer: nobody asked for them, so the connection is out of step and
    // is not reused (the answer itself was complete and well-framed, so it stands).
    if (data.length > 0) void this.#drop();
    this.#pump();
  }

  /** Copies the partial head or body that still points into READ_BUFFER, which the next read overwrites. */
  #keepBorrowed(): void {
    if (this.#head?.buffer === READ_BUFFER.buffer) this.#head = Buffer.from(this.#head);
    const body = this.#body;
    for (let i = 0; i < body.length; i++) {
      if (body[i]!.buffer === READ_BUFFER.buffer) body[i] = Buffer.from(body[i]!);
    }
  }

  /** Feeds `chunk` to the answer's parser; returns what is left once the call has ended (normally nothing). */
  #parse(chunk: Buffer): Buffer {
    let data = chunk;
    while (data.length > 0 && this.#current !== undefined) {
      const rest = this.#step(data);
      if (rest === undefined) return EMPTY;
      data = rest;
    }
    return data;
  }

  /**
   * Reads what the current phase can from `data`; returns the bytes after it, or undefined when it needs more (or
   * the call ended on an error).
   */
  #step(data: Buffer): Buffer | undefined {
    switch (this.#phase) {
      case Phase.Head:
        return this.#readHead(data);
      case Phase.Length: {
        const rest = this.#takeRun(data);
        if (rest !== undefined && this.#remaining === 0) this.#finish();
        return rest;
      }
      case Phase.ChunkSize:
        return this.#readChunkSize(data);
      case Phase.ChunkData: {
        const rest = this.#takeRun(data);
        if (rest !== undefined && this.#remaining === 0) {
          this.#phase = Phase.ChunkDataEnd;
          this.#remaining = 2;
        }
        return rest;
      }
      case Phase.ChunkDataEnd: {
        // The CRLF after chunk data, possibly split across reads.
        let rest = data;
        while (this.#remaining > 0 && rest.length > 0) {
          if (rest[0] !== (this.#remaining === 2 ? CR : LF)) {
            this.#protocolError("chunk data not followed by CRLF");
            return undefined;
          }
          this.#remaining--;
          rest = rest.subarray(1);
        }
        if (this.#remaining === 0) this.#phase = Phase.ChunkSize;
        return rest;
      }
      case Phase.Trailers:
        return this.#readTrailers(data);
      case Phase.UntilClose:
        return this.#take(data) ? EMPTY : undefined;
    }
  }

  /**
   * Takes what is left of a framed run (a content-length body or one chunk's data) from `data`; returns the bytes
   * after it, or undefined when the call ended on a limit.
   */
  #takeRun(data: Buffer): Buffer | undefined {
    const n = Math.min(this.#remaining, data.length);
    if (!this.#take(data.subarray(0, n))) return undefined;
    this.#remaining -= n;
    return data.subarray(n);
  }

  /** Appends `data` to the partial head or line and returns all of it, kept as one buffer for the next read. */
  #pending(data: Buffer): Buffer {
    const head = this.#head;
    this.#head = head === undefined ? data : Buffer.concat([head, data]);
    return this.#head;
  }

  /** Buffers header bytes until the blank line; returns the bytes after it, or undefined to wait (or on error). */
  #readHead(data: Buffer): Buffer | undefined {
    // The blank line may straddle reads: search from 3 bytes before the new data.
    const from = Math.max(0, (this.#head?.length ?? 0) - 3);
    const all = this.#pending(data);
    const end = all.indexOf(CRLFCRLF, from);
    if (end === -1) {
      if (all.length > MAX_HEADER_BYTES)
        this.#protocolError(`status line and headers larger than ${MAX_HEADER_BYTES} bytes`);
      return undefined;
    }
    if (end + 4 > MAX_HEADER_BYTES) {
      this.#protocolError(`status line and headers larger than ${MAX_HEADER_BYTES} bytes`);
      return undefined;
    }
    this.#head = undefined;
    const problem = this.#parseHead(all.toString("latin1", 0, end));
    if (problem !== undefined) {
      this.#protocolError(problem);
      return undefined;
    }
    return all.subarray(end + 4);
  }

  /** Reads the status line and the framing headers; returns what is wrong, or undefined. */
  #parseHead(head: string): string | undefined {
    let eol = head.indexOf("\r\n");
    if (eol === -1) eol = head.length;
    const statusLine = head.slice(0, eol);
    const status = /^HTTP\/1\.([01]) (\d{3})(?: |$)/.exec(statusLine);
    if (status === null) return `not an HTTP/1.x status line: ${JSON.stringify(statusLine.slice(0, 64))}`;
    const code = Number(status[2]);
    if (code >= 100 && code < 200) {
      // 100 Continue and 103 Early Hints precede the real answer; 101 would switch protocols we never asked for.
      if (code === 101) return "101 Switching Protocols to a GET that asked for no upgrade";
      this.#phase = Phase.Head;
      return undefined;
    }
    let length: number | undefined;
    let chunked = false;
    let keepAlive = status[1] === "1";
    // Line by line without splitting: only three header names matter, told apart by length before any lowercasing.
    for (let pos = eol + 2; pos < head.length; ) {
      let end = head.indexOf("\r\n", pos);
      if (end === -1) end = head.length;
      const colon = head.indexOf(":", pos);
      const nameLength = colon - pos;
      if (
        colon === -1 ||
        colon >= end ||
        nameLength === 0 ||
        isBlankCode(head.charCodeAt(pos)) ||
        isBlankCode(head.charCodeAt(colon - 1))
      )
        return `malformed header line: ${JSON.stringify(head.slice(pos, Math.min(end, pos + 64)))}`;
      if (nameLength === 14 || nameLength === 17 || nameLength === 10) {
        const name = head.slice(pos, colon).toLowerCase();
        const value = head.slice(colon + 1, end).trim();
        if (name === "content-length") {
          if (!/^\d{1,15}$/.test(value)) return `invalid content-length ${JSON.stringify(value.slice(0, 32))}`;
          const n = Number(value);
          if (length !== undefined && length !== n) return "two different content-length headers";
          length = n;
        } else if (name === "transfer-encoding") {
          // Chunked as the only coding; anything else (gzip, …) is a body we cannot read as text.
          if (value.toLowerCase() !== "chunked" || chunked)
            return `unsupported transfer-encoding ${JSON.stringify(value.slice(0, 32))}`;
          chunked = true;
        } else if (name === "connection") {
          const tokens = value.toLowerCase();
          if (/(?:^|[\s,])close(?:$|[\s,])/.test(tokens)) keepAlive = false;
          else if (/(?:^|[\s,])keep-alive(?:$|[\s,])/.test(tokens)) keepAlive = true;
        }
      }
      pos = end + 2;
    }
    // RFC 9112 §6.3: with both, transfer-encoding wins and the message is suspect; refusing it is the safe reading.
    if (chunked && length !== undefined) return "both transfer-encoding and content-length";
    const call = this.#current!;
    this.#statusCode = code;
    this.#keepAlive = keepAlive;
    this.#discard = code !== 200;
    // 204 and 304 never have a body, whatever the headers say.
    if (code === 204 || code === 304 || (length === 0 && !chunked)) {
      this.#finish();
      return undefined;
    }
    if (chunked) {
      this.#phase = Phase.ChunkSize;
    } else if (length !== undefined) {
      if (this.#overLimit(length, call)) return undefined;
      this.#phase = Phase.Length;
      this.#remaining = length;
    } else {
      this.#phase = Phase.UntilClose;
      this.#keepAlive = false;
    }
    return undefined;
  }

  /** Fails (or, for a drained error body, finishes without reuse) when `bytes` passes the limit; true if it did. */
  #overLimit(bytes: number, call: Http1Call): boolean {
    if (this.#discard) {
      if (bytes <= ERROR_BODY_LIMIT) return false;
      // Not worth draining: report the status and drop the connection.
      this.#keepAlive = false;
      this.#finish();
      return true;
    }
    if (bytes <= call.maxBodyBytes) return false;
    const current = this.#current;
    this.#current = undefined;
    void this.#drop();
    current?.fail(new GetError("SY_HTTP_BODY_TOO_LARGE", `body larger than the limit of ${call.maxBodyBytes} bytes`));
    return true;
  }

  /** Keeps (or counts) body bytes; false when the call ended on a limit. */
  #take(bytes: Buffer): boolean {
    this.#bodyBytes += bytes.length;
    if (this.#overLimit(this.#bodyBytes, this.#current!)) return false;
    if (!this.#discard && bytes.length > 0) this.#body.push(bytes);
    return true;
  }

  #readChunkSize(data: Buffer): Buffer | undefined {
    const line = this.#line(data);
    if (line === undefined) return undefined;
    const [text, rest] = line;
    const semi = text.indexOf(";");
    const hex = (semi === -1 ? text : text.slice(0, semi)).trim();
    if (!/^[0-9a-fA-F]{1,12}$/.test(hex)) {
      this.#protocolError(`invalid chunk size ${JSON.stringify(hex.slice(0, 32))}`);
      return undefined;
    }
    const size = Number.parseInt(hex, 16);
    if (size === 0) {
      this.#phase = Phase.Trailers;
      return rest;
    }
    if (this.#overLimit(this.#bodyBytes + size, this.#current!)) return undefined;
    this.#phase = Phase.ChunkData;
    this.#remaining = size;
    return rest;
  }

  #readTrailers(data: Buffer): Buffer | undefined {
    let rest = data;
    for (;;) {
      const line = this.#line(rest);
      if (line === undefined) return undefined;
      rest = line[1];
      if (line[0] === "") {
        this.#finish();
        return rest;
      }
      // Trailer fields are read and ignored; they count against the header bound.
    }
  }

  /**
   * One CRLF-terminated line from the buffered partial line plus `data`: [its text, the bytes after it], or
   * undefined when it is not complete yet (or too long, which fails the call).
   */
  #line(data: Buffer): [string, Buffer] | undefined {
    const all = this.#pending(data);
    const end = all.indexOf(CRLF);
    if (end === -1 || end > MAX_CHUNK_LINE_BYTES) {
      if (end > MAX_CHUNK_LINE_BYTES || all.length > MAX_CHUNK_LINE_BYTES)
        this.#protocolError(`chunk-size or trailer line longer than ${MAX_CHUNK_LINE_BYTES} bytes`);
      return undefined;
    }
    this.#head = undefined;
    return [all.toString("latin1", 0, end), all.subarray(end + 2)];
  }

  #finish(): void {
    const call = this.#current;
    if (call === undefined) return;
    this.#current = undefined;
    let text = "";
    if (!this.#discard) {
      const body = this.#body;
      text =
        body.length === 0
          ? ""
          : body.length === 1
            ? body[0]!.toString("utf8")
            : Buffer.concat(body, this.#bodyBytes).toString("utf8");
    }
    const statusCode = this.#statusCode;
    this.#body.length = 0;
    if (this.#keepAlive && this.#socket !== undefined) this.#reused = true;
    else void this.#drop();
    call.succeed({ statusCode, text });
  }
}

function isBlankCode(c: number): boolean {
  return c === 32 || c === 9;
}

function errCode(err: Error): string {
  const code = (err as { code?: unknown }).code;
  return typeof code === "string" ? code : err.message;
}

// ---------------------------------------------------------------------------------------------------------------
// https: undici

/**
 * One GET through undici's dispatch API. Why not `client.request()`: that wraps every response in a Readable stream
 * and an AbortSignal with listeners, a visible share of a scrape's CPU at fleet scale.
 */
class UndiciCall implements GetCall, Dispatcher.DispatchHandler {
  readonly done: Promise<GetOutcome>;
  #resolve!: (v: GetOutcome) => void;
  #reject!: (err: Error) => void;
  #controller: Dispatcher.DispatchController | undefined;
  #reason: Error | undefined;
  #statusCode = 0;
  readonly #chunks: Buffer[] = [];
  #bytes = 0;
  readonly #maxBodyBytes: number;
  /** undici connects on its own schedule and enforces its own connect timeout (classified as a connect failure). */
  readonly connecting = false;

  constructor(client: Client, path: string, accept: string, maxBodyBytes: number) {
    this.#maxBodyBytes = maxBodyBytes;
    this.done = new Promise((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    // A failure nobody awaited (a call dropped by destroy()) must not become an unhandled rejection, which ends
    // the process; the caller still sees it through `done`.
    this.done.catch(() => {});
    client.dispatch({ method: "GET", path, headers: { accept } }, this);
  }

  get reason(): Error | undefined {
    return this.#reason;
  }

  abort(reason: Error): void {
    if (this.#reason !== undefined) return;
    this.#reason = reason;
    if (this.#controller !== undefined) this.#controller.abort(reason);
    else this.#reject(reason);
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#controller = controller;
    if (this.#reason !== undefined) controller.abort(this.#reason);
  }

  onResponseStart(_controller: Dispatcher.DispatchController, statusCode: number): void {
    this.#statusCode = statusCode;
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.#bytes += chunk.length;
    if (this.#statusCode !== 200) {
      // Not kept; past the limit the connection is not worth draining.
      if (this.#bytes > ERROR_BODY_LIMIT) controller.abort(new GetError("SY_HTTP_CLOSED", "error body too large"));
      return;
    }
    if (this.#bytes > this.#maxBodyBytes) {
      controller.abort(
        new GetError("SY_HTTP_BODY_TOO_LARGE", `body larger than the limit of ${this.#maxBodyBytes} bytes`),
      );
      return;
    }
    this.#chunks.push(chunk);
  }

  onResponseEnd(): void {
    const chunks = this.#chunks;
    const text =
      this.#statusCode !== 200
        ? ""
        : chunks.length === 1
          ? chunks[0]!.toString("utf8")
          : Buffer.concat(chunks, this.#bytes).toString("utf8");
    this.#chunks.length = 0;
    this.#resolve({ statusCode: this.#statusCode, text });
  }

  onResponseError(_controller: Dispatcher.DispatchController, err: Error): void {
    this.#chunks.length = 0;
    // A non-200 answer whose body was too large to drain is still that status.
    if (this.#statusCode !== 0 && this.#statusCode !== 200 && this.#reason === undefined) {
      this.#resolve({ statusCode: this.#statusCode, text: "" });
      return;
    }
    this.#reject(err);
  }
}

export class UndiciGetClient implements GetClient {
  readonly #client: Client;

  constructor(options: GetClientOptions) {
    this.#client = new Client(`${options.scheme}://${hostPort(options.host, options.port)}`, {
      pipelining: 1,
      connectTimeout: options.connectTimeoutMs,
      // Backstops only: the caller's deadline (abort()) is the real one.
      headersTimeout: options.connectTimeoutMs + 1_000,
      bodyTimeout: options.connectTimeoutMs + 1_000,
      keepAliveTimeout: options.keepAliveTimeoutMs,
      keepAliveMaxTimeout: Math.max(600_000, options.keepAliveTimeoutMs),
      ...(options.scheme === "https" ? { connect: { rejectUnauthorized: options.rejectUnauthorized } } : {}),
    });
  }

  get(path: string, accept: string, maxBodyBytes: number): GetCall {
    return new UndiciCall(this.#client, path, accept, maxBodyBytes);
  }

  destroy(): Promise<void> {
    return this.#client.destroy().catch(() => {});
  }
}
