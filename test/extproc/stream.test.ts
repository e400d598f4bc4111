/**
 * The ext_proc stream state machine against a real grpc-js server on loopback, driven by the fake Envoy client.
 * Assertions are on message order and content only, never on timing.
 */
import { EventEmitter } from "node:events";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { generate } from "selfsigned";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { Cancellation } from "../../src/common/cancellation.js";
import { ConfigError, SwitchyardError } from "../../src/common/errors.js";
import type { ProcessingResponseWire } from "../../src/extproc/codec.js";
import { createHealthServer, HealthState } from "../../src/extproc/health.js";
import { BodySendMode, type ProcessingRequest, type ProcessingResponse } from "../../src/extproc/messages.js";
import { healthService } from "../../src/extproc/proto.js";
import { createExtProcServer, type ExtProcServer, type ExtProcServerOptions } from "../../src/extproc/server.js";
import { ExtProcStream, type ProcessCall } from "../../src/extproc/stream.js";
import type {
  IncomingRequest,
  LifecycleFactory,
  RequestLifecycle,
  ResponseHeadersInfo,
  RoutingDecision,
} from "../../src/request/lifecycle.js";
import { connect, type FakeEnvoyClient, metadataJson, mutationMap, mutationPairs } from "../helpers/extproc-client.js";

const DEST = "10.0.0.1:8000";
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

type Outcome = "completed" | "cancelled" | "error";

interface Recorder {
  routes: IncomingRequest[];
  cancels: Cancellation[];
  responseHeaders: ResponseHeadersInfo[];
  responseBodies: { chunk: string; eos: boolean }[];
  done: Outcome[];
}

type Handlers = Partial<Omit<RequestLifecycle, "done">>;

/** A LifecycleFactory whose behaviour each test swaps in, recording every call. */
function fakeFactory(): { factory: LifecycleFactory; rec: Recorder; use(h: Handlers): void } {
  let handlers: Handlers = {};
  const rec: Recorder = { routes: [], cancels: [], responseHeaders: [], responseBodies: [], done: [] };
  const factory: LifecycleFactory = {
    begin() {
      const h = handlers;
      return {
        route(req, cancel) {
          rec.routes.push(req);
          rec.cancels.push(cancel);
          return h.route ? h.route(req, cancel) : { endpoints: [DEST], body: req.body };
        },
        responseHeaders(info) {
          rec.responseHeaders.push(info);
          return h.responseHeaders ? h.responseHeaders(info) : {};
        },
        responseBody(chunk, eos) {
          rec.responseBodies.push({ chunk: chunk.toString(), eos });
          return h.responseBody ? h.responseBody(chunk, eos) : chunk;
        },
        done(outcome) {
          rec.done.push(outcome);
        },
      };
    },
  };
  return {
    factory,
    rec,
    use(h) {
      handlers = h;
    },
  };
}

function reset(rec: Recorder): void {
  rec.routes.length = 0;
  rec.cancels.length = 0;
  rec.responseHeaders.length = 0;
  rec.responseBodies.length = 0;
  rec.done.length = 0;
}

/** Bounded wait for a condition driven by the server (never asserts on how long it took). */
async function until(cond: () => boolean, what: string, limitMs = 5000): Promise<void> {
  const deadline = Date.now() + limitMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

function deferred<T>(): { promise: Promise<T>; resolve(v: T): void; reject(e: unknown): void } {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

const cleanups: (() => Promise<void> | void)[] = [];

async function startServer(
  options: Omit<ExtProcServerOptions, "host" | "port">,
): Promise<{ server: ExtProcServer; client: FakeEnvoyClient; port: number }> {
  const server = createExtProcServer({ host: "127.0.0.1", port: 0, ...options });
  const { port } = await server.start();
  const client = connect(`127.0.0.1:${port}`, options.tls ? { tls: true } : {});
  cleanups.push(
    () => client.close(),
    () => server.stop(100),
  );
  return { server, client, port };
}

afterAll(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const CHAT_HEADERS = {
  ":method": "POST",
  ":path": "/v1/chat/completions",
  "content-type": "application/json",
};

describe("ext_proc stream (FULL_DUPLEX_STREAMED)", () => {
  const fake = fakeFactory();
  let client: FakeEnvoyClient;
  let server: ExtProcServer;

  beforeAll(async () => {
    ({ client, server } = await startServer({ factory: fake.factory, maxBodyBytes: 256 * 1024 }));
  });
  afterEach(() => {
    reset(fake.rec);
    fake.use({});
  });

  it("stays silent on request_headers, then answers headers → body in order and completes", async () => {
    const stream = client.open();
    stream.sendRequestHeaders({ ...CHAT_HEADERS, "X-Custom": "a" });
    const body = '{"model":"m","messages":[]}';
    stream.sendRequestBody(body, true);
    // The first reply already carries the destination: nothing was sent for request_headers alone.
    const first = await stream.expect("request_headers");
    const common = first.request_headers!.response!;
    expect(common.clear_route_cache).toBe(true);
    const pairs = mutationPairs(common.header_mutation);
    expect(pairs.map(([k]) => k)).toEqual(["x-gateway-destination-endpoint", "content-length", "x-request-id"]);
    expect(pairs[0]![1]).toBe(DEST);
    expect(pairs[1]![1]).toBe(String(Buffer.byteLength(body)));
    expect(pairs[2]![1]).toMatch(UUID);
    for (const o of common.header_mutation!.set_headers!) expect(o.header?.value ?? "").toBe("");
    expect(metadataJson(first.dynamic_metadata)).toEqual({ "envoy.lb": { "x-gateway-destination-endpoint": DEST } });

    const chunk = await stream.expect("request_body");
    const streamed = chunk.request_body!.response!.body_mutation!.streamed_response!;
    expect(streamed.body!.toString()).toBe(body);
    expect(streamed.end_of_stream).toBe(true);

    const req = fake.rec.routes[0]!;
    expect(req.method).toBe("POST");
    expect(req.path).toBe("/v1/chat/completions");
    expect(req.headers.get("x-custom")).toBe("a");
    expect(req.headerOnly).toBe(false);
    expect(req.subsetHint).toBeUndefined();
    expect(req.requestId).toBe(pairs[2]![1]);
    expect(req.headers.get("x-request-id")).toBe(req.requestId);

    stream.end();
    expect((await stream.status()).code).toBe(grpc.status.OK);
    expect(fake.rec.done).toEqual(["completed"]);
    await until(() => server.activeStreams() === 0, "active streams to drop to 0");
  });

  it("ends the call itself with OK once the response has ended, without waiting for Envoy's half-close", async () => {
    const stream = client.open();
    stream.sendRequestHeaders(CHAT_HEADERS);
    stream.sendRequestBody('{"model":"m"}', true);
    await stream.expect("request_headers");
    await stream.expect("request_body");
    stream.sendResponseHeaders({ ":status": "200", "content-type": "application/json" });
    await stream.expect("response_headers");
    stream.sendResponseBody('{"ok":true}', true);
    const last = await stream.expect("response_body");
    expect(last.response_body!.response!.body_mutation!.streamed_response!.end_of_stream).toBe(true);
    // Envoy resets a stream it still holds open when its HTTP exchange ends; the server must not wait for it.
    expect((await stream.status()).code).toBe(grpc.status.OK);
    expect(fake.rec.done).toEqual(["completed"]);
    await until(() => server.activeStreams() === 0, "active streams to drop to 0");
  });

  it("reads x-request-id case-insensitively and does not set it again", async () => {
    const r = await client.roundTrip({ headers: { ...CHAT_HEADERS, "X-Request-Id": "abc-123" }, body: "{}" });
    expect(fake.rec.routes[0]!.requestId).toBe("abc-123");
    expect(r.setHeaders.has("x-request-id")).toBe(false);
    expect([...r.setHeaders.keys()]).toEqual(["x-gateway-destination-endpoint", "content-length"]);
  });

  it("exposes request headers lower-cased, repeated ones joined with commas, the same by lookup and by iteration", async () => {
    await client.roundTrip({
      headers: [...Object.entries(CHAT_HEADERS), ["X-Tenant", "a"], ["x-tenant", "b"], ["X-Only-Upper", "v"]],
      body: "{}",
    });
    const headers = fake.rec.routes[0]!.headers;
    expect(headers.get("x-tenant")).toBe("a,b");
    expect(headers.get("x-only-upper")).toBe("v");
    expect(headers.has("x-absent")).toBe(false);
    // A generated request id is visible both ways too.
    expect(headers.get("x-request-id")).toMatch(UUID);
    const all = new Map(headers);
    expect(all.get("x-tenant")).toBe("a,b");
    expect(all.get("x-request-id")).toBe(headers.get("x-request-id"));
    expect(headers.size).toBe(all.size);
    expect(headers.get("x-tenant")).toBe("a,b"); // still right after iteration built the map
  });

  it("joins a body split across chunks and forwards decision headers and metadata", async () => {
    fake.use({
      route: (req) => ({
        endpoints: ["10.0.0.2:8000", "10.0.0.3:8000"],
        body: req.body,
        setHeaders: [
          ["x-gateway-model", "m2"],
          ["content-length", "999"],
        ],
        metadata: { "envoy.lb": { extra: "1" }, "switchyard.io": { pool: "p" } },
      }),
    });
    const body = '{"model":"split-across-three-chunks","prompt":"hello"}';
    const r = await client.roundTrip({ headers: CHAT_HEADERS, body, chunkSize: 20 });
    expect(fake.rec.routes[0]!.body.toString()).toBe(body);
    expect(r.status).toBe("routed");
    expect(r.destination).toBe("10.0.0.2:8000,10.0.0.3:8000");
    expect(r.metadataDestination).toBe(r.destination);
    // A decision cannot contradict the content-length of the bytes actually streamed.
    expect(r.setHeaders.get("content-length")).toBe(String(body.length));
    expect([...r.setHeaders.keys()]).toEqual([
      "x-gateway-destination-endpoint",
      "content-length",
      "x-request-id",
      "x-gateway-model",
    ]);
    expect(r.metadata).toEqual({
      "envoy.lb": { "x-gateway-destination-endpoint": r.destination, extra: "1" },
      "switchyard.io": { pool: "p" },
    });
    expect(r.body.toString()).toBe(body);
    expect(r.grpcStatus.code).toBe(grpc.status.OK);
    expect(fake.rec.done).toEqual(["completed"]);
  });

  it("re-chunks a 220 KB body into ≤ 62000-byte pieces that reassemble byte for byte", async () => {
    const body = Buffer.alloc(220_000);
    for (let i = 0; i < body.length; i++) body[i] = (i * 31 + 7) & 0xff;
    const r = await client.roundTrip({ headers: CHAT_HEADERS, body, chunkSize: 16_384 });
    const chunks = r.messages.filter((m) => m.response === "request_body");
    expect(chunks.length).toBe(4);
    const sizes = chunks.map((m) => m.request_body!.response!.body_mutation!.streamed_response!.body!.length);
    expect(sizes).toEqual([62_000, 62_000, 62_000, 34_000]);
    const eos = chunks.map((m) => m.request_body!.response!.body_mutation!.streamed_response!.end_of_stream === true);
    expect(eos).toEqual([false, false, false, true]);
    expect(r.body.equals(body)).toBe(true);
    expect(r.setHeaders.get("content-length")).toBe("220000");
  });

  it("echoes a 6 MB body through write backpressure (drain) in order and intact", async () => {
    // ~100 chunks: far past grpc-js's writable high-water mark, so the stream must wait for 'drain' mid-body.
    const body = Buffer.alloc(6_000_000);
    for (let i = 0; i < body.length; i++) body[i] = (i * 13 + 5) & 0xff;
    const big = await startServer({ factory: fake.factory, maxBodyBytes: 16 << 20 });
    const r = await big.client.roundTrip({ headers: CHAT_HEADERS, body, chunkSize: 1_000_000 });
    const chunks = r.messages.filter((m) => m.response === "request_body");
    expect(chunks.length).toBe(Math.ceil(6_000_000 / 62_000));
    expect(r.body.equals(body)).toBe(true);
    expect(fake.rec.done).toEqual(["completed"]);
  });

  it("forwards a rewritten body and its new content-length", async () => {
    fake.use({ route: () => ({ endpoints: [DEST], body: Buffer.from('{"model":"rewritten"}') }) });
    const r = await client.roundTrip({ headers: CHAT_HEADERS, body: '{"model":"m"}' });
    expect(r.body.toString()).toBe('{"model":"rewritten"}');
    expect(r.setHeaders.get("content-length")).toBe("21");
  });

  it("sends one empty chunk with end_of_stream for an empty body, and no content-length", async () => {
    const r = await client.roundTrip({ headers: CHAT_HEADERS, body: "" });
    const chunks = r.messages.filter((m) => m.response === "request_body");
    expect(chunks.length).toBe(1);
    const streamed = chunks[0]!.request_body!.response!.body_mutation!.streamed_response!;
    expect(streamed.body?.length ?? 0).toBe(0);
    expect(streamed.end_of_stream).toBe(true);
    expect(r.setHeaders.has("content-length")).toBe(false);
  });

  it("routes a header-only GET at once with headerOnly and no content-length", async () => {
    const r = await client.roundTrip({ headers: { ":method": "GET", ":path": "/v1/models" } });
    expect(r.status).toBe("routed");
    expect(r.messages.map((m) => m.response)).toEqual(["request_headers"]);
    expect(r.destination).toBe(DEST);
    expect(r.clearRouteCache).toBe(true);
    expect(r.metadataDestination).toBe(DEST);
    expect(r.setHeaders.has("content-length")).toBe(false);
    const req = fake.rec.routes[0]!;
    expect(req.headerOnly).toBe(true);
    expect(req.body.length).toBe(0);
    expect(req.method).toBe("GET");
    expect(fake.rec.done).toEqual(["completed"]);
  });

  it("treats request_trailers as the end of the body and finishes with a TrailersResponse", async () => {
    const r = await client.roundTrip({ headers: CHAT_HEADERS, body: '{"model":"m"}', trailers: { "x-t": "1" } });
    expect(r.messages.map((m) => m.response)).toEqual(["request_headers", "request_body", "request_trailers"]);
    const streamed = r.messages[1]!.request_body!.response!.body_mutation!.streamed_response!;
    // Trailers end the direction, so the body itself must not carry end_of_stream.
    expect(streamed.end_of_stream ?? false).toBe(false);
    expect(r.messages[2]!.request_trailers).toEqual({});
    expect(r.body.toString()).toBe('{"model":"m"}');
    expect(fake.rec.routes.length).toBe(1);
    expect(fake.rec.done).toEqual(["completed"]);
  });

  it("keeps the last subset hint seen on any message", async () => {
    const stream = client.open();
    stream.sendRequestHeaders(CHAT_HEADERS, { subsetHint: ["10.0.0.5:8000", "10.0.0.6:8000"] });
    stream.sendRequestBody("{", false);
    stream.sendRequestBody("}", true, { metadata: { other: { k: "v" } } });
    await stream.expect("request_headers");
    expect(fake.rec.routes[0]!.subsetHint).toEqual(["10.0.0.5:8000", "10.0.0.6:8000"]);
    stream.cancel();
    await until(() => fake.rec.done.length === 1, "done()");

    // A later message's hint replaces the earlier one; a comma-joined string is accepted too.
    const s2 = client.open();
    s2.sendRequestHeaders(CHAT_HEADERS, { subsetHint: ["10.0.0.5:8000"] });
    s2.sendRequestBody("{}", true, { subsetHint: "10.0.0.7:8000, 10.0.0.8" });
    await s2.expect("request_headers");
    expect(fake.rec.routes[1]!.subsetHint).toEqual(["10.0.0.7:8000", "10.0.0.8"]);
    s2.cancel();

    // An explicit empty list means "nothing eligible", distinct from absent.
    const r = await client.roundTrip({ headers: CHAT_HEADERS, body: "{}", subsetHint: [] });
    expect(r.status).toBe("routed");
    expect(fake.rec.routes[2]!.subsetHint).toEqual([]);
  });

  it("answers 413 as soon as the body exceeds maxBodyBytes and drops it", async () => {
    const stream = client.open();
    stream.sendRequestHeaders(CHAT_HEADERS);
    stream.sendRequestBody(Buffer.alloc(200 * 1024), false);
    stream.sendRequestBody(Buffer.alloc(100 * 1024), false);
    const msg = await stream.expect("immediate_response");
    const imm = msg.immediate_response!;
    expect(imm.status?.code).toBe(413);
    expect(imm.body?.toString()).toMatch(
      /^inference error: PayloadTooLarge - request body exceeds the limit of 262144/,
    );
    expect(mutationMap(imm.headers).get("x-switchyard-error-code")).toBe("SY_BODY_TOO_LARGE");
    expect((await stream.status()).code).toBe(grpc.status.OK);
    expect(fake.rec.routes.length).toBe(0);
    expect(fake.rec.done).toEqual(["error"]);
  });

  it("turns a SwitchyardError from route() into an ImmediateResponse with its headers", async () => {
    fake.use({
      route: () => {
        throw new SwitchyardError("SY_NO_CANDIDATES", "failed to find endpoint candidates for serving the request", {
          headers: { "retry-after": "1" },
        });
      },
    });
    const r = await client.roundTrip({ headers: CHAT_HEADERS, body: "{}" });
    expect(r.status).toBe("immediate");
    expect(r.immediate!.status).toBe(503);
    expect(r.immediate!.body).toBe(
      "inference error: ServiceUnavailable - failed to find endpoint candidates for serving the request",
    );
    expect([...r.immediate!.headers]).toEqual([
      ["content-type", "text/plain; charset=utf-8"],
      ["x-switchyard-error-code", "SY_NO_CANDIDATES"],
      ["retry-after", "1"],
    ]);
    expect(r.immediate!.details).toBe("SY_NO_CANDIDATES");
    expect(r.grpcStatus.code).toBe(grpc.status.OK);
    expect(fake.rec.done).toEqual(["error"]);
  });

  it("maps an unexpected exception or rejection to 500 SY_INTERNAL", async () => {
    fake.use({
      route: () => {
        throw new RangeError("kaboom");
      },
    });
    const r = await client.roundTrip({ headers: CHAT_HEADERS, body: "{}" });
    expect(r.immediate!.status).toBe(500);
    expect(r.immediate!.body).toBe("inference error: Internal - kaboom");
    expect(r.immediate!.headers.get("x-switchyard-error-code")).toBe("SY_INTERNAL");

    fake.use({ route: () => Promise.reject(new SwitchyardError("SY_QUEUE_TIMEOUT", "request timed out in queue")) });
    const r2 = await client.roundTrip({ headers: CHAT_HEADERS, body: "{}" });
    expect(r2.immediate!.status).toBe(503);
    expect(r2.immediate!.body).toBe("inference error: ServiceUnavailable - request timed out in queue");

    fake.use({ route: () => ({ endpoints: [], body: Buffer.alloc(0) }) as RoutingDecision });
    const r3 = await client.roundTrip({ headers: CHAT_HEADERS, body: "{}" });
    expect(r3.immediate!.body).toBe("inference error: Internal - route() returned a decision without endpoints");
    expect(fake.rec.done).toEqual(["error", "error", "error"]);
  });

  it("rejects protocol violations with SY_PROTOCOL naming what was unexpected", async () => {
    const cases: [string, (s: ReturnType<FakeEnvoyClient["open"]>) => void, RegExp][] = [
      ["body first", (s) => s.sendRequestBody("{}", true), /request_body before request_headers/],
      [
        "second headers",
        (s) => s.sendRequestHeaders(CHAT_HEADERS).sendRequestHeaders(CHAT_HEADERS),
        /unexpected second request_headers/,
      ],
      [
        "body after header-only",
        (s) => s.sendRequestHeaders({ ":method": "GET" }, { endOfStream: true }).sendRequestBody("x", true),
        /request_body after request_headers with end_of_stream/,
      ],
      ["response body first", (s) => s.sendResponseBody("x", true), /response_body before response_headers/],
      ["empty message", (s) => s.send({}), /no request\/response member/],
    ];
    for (const [name, play, message] of cases) {
      reset(fake.rec);
      const stream = client.open();
      play(stream);
      let msg = await stream.next();
      // "body after header-only" legitimately routes first; the violation follows.
      if (msg.response === "request_headers") msg = await stream.next();
      expect(msg.response, name).toBe("immediate_response");
      expect(msg.immediate_response!.status?.code, name).toBe(500);
      expect(msg.immediate_response!.body?.toString(), name).toMatch(message);
      expect(msg.immediate_response!.details, name).toBe("SY_PROTOCOL");
      expect((await stream.status()).code, name).toBe(grpc.status.OK);
      expect(fake.rec.done, name).toEqual(["error"]);
    }
  });

  it("passes a local reply (response without a request) through unchanged and ends the call", async () => {
    fake.use({ responseBody: () => Buffer.from("rewritten") });
    // An earlier filter (basic auth) answered 401: Envoy encodes it through this filter, request never seen.
    const stream = client.open();
    stream.sendResponseHeaders({ ":status": "401", "www-authenticate": 'Basic realm="x"' });
    const headers = await stream.expect("response_headers");
    expect(headers.response_headers!.response ?? {}).toEqual({});
    stream.sendResponseBody("User authentication failed.", true);
    const body = await stream.expect("response_body");
    const streamed = body.response_body!.response!.body_mutation!.streamed_response!;
    expect(streamed.body!.toString()).toBe("User authentication failed.");
    expect(streamed.end_of_stream).toBe(true);
    expect((await stream.status()).code).toBe(grpc.status.OK);
    expect(fake.rec.routes).toHaveLength(0);
    expect(fake.rec.responseHeaders).toHaveLength(0);
    expect(fake.rec.responseBodies).toHaveLength(0);
    expect(fake.rec.done).toEqual(["completed"]);

    // Envoy's own 413 in the middle of a request body (a BUFFERED overflow), ending with the headers.
    reset(fake.rec);
    const mid = client.open();
    mid.sendRequestHeaders(CHAT_HEADERS).sendRequestBody('{"model":', false);
    mid.sendResponseHeaders({ ":status": "413" }, { endOfStream: true });
    await mid.expect("response_headers");
    expect((await mid.status()).code).toBe(grpc.status.OK);
    expect(fake.rec.routes).toHaveLength(0);
    expect(fake.rec.done).toEqual(["completed"]);
  });

  it("keeps replies in order while an async route() is pending", async () => {
    const pending = deferred<RoutingDecision>();
    fake.use({ route: () => pending.promise, responseHeaders: () => ({ setHeaders: [["x-served", "yes"]] }) });
    const stream = client.open();
    stream.sendRequestHeaders(CHAT_HEADERS);
    stream.sendRequestBody("{}", true);
    await until(() => fake.rec.routes.length === 1, "route()");
    // Arrives while route() is pending; must be answered only after the request-path replies.
    stream.sendResponseHeaders({ ":status": "200" }, { endOfStream: true });
    stream.end();
    pending.resolve({ endpoints: [DEST], body: Buffer.from("{}") });
    expect((await stream.next()).response).toBe("request_headers");
    expect((await stream.next()).response).toBe("request_body");
    const third = await stream.next();
    expect(third.response).toBe("response_headers");
    expect(mutationMap(third.response_headers!.response!.header_mutation).get("x-served")).toBe("yes");
    expect((await stream.status()).code).toBe(grpc.status.OK);
    expect(fake.rec.done).toEqual(["completed"]);
  });

  it("aborts route() and frees the stream on cancellation, calling done once", async () => {
    const pending = deferred<RoutingDecision>();
    fake.use({ route: () => pending.promise });
    const stream = client.open();
    stream.sendRequestHeaders(CHAT_HEADERS);
    stream.sendRequestBody("{}", true);
    await until(() => fake.rec.routes.length === 1, "route()");
    expect(server.activeStreams()).toBe(1);
    const signal = fake.rec.cancels[0]!.signal;
    expect(signal.aborted).toBe(false);
    stream.cancel();
    await until(() => fake.rec.done.length === 1, "done()");
    expect(fake.rec.done).toEqual(["cancelled"]);
    expect(signal.aborted).toBe(true);
    expect((signal.reason as SwitchyardError).code).toBe("SY_CLIENT_DISCONNECTED");
    expect(server.activeStreams()).toBe(0);
    // A late decision goes nowhere and changes nothing.
    pending.resolve({ endpoints: [DEST], body: Buffer.alloc(0) });
    await pending.promise;
    expect(fake.rec.done).toEqual(["cancelled"]);
    expect(stream.received.length).toBe(0);
  });

  it("treats a half-close before the request was answered as cancelled", async () => {
    const stream = client.open();
    stream.sendRequestHeaders(CHAT_HEADERS);
    stream.sendRequestBody("{", false);
    stream.end();
    expect((await stream.status()).code).toBe(grpc.status.OK);
    expect(fake.rec.done).toEqual(["cancelled"]);
    expect(fake.rec.routes.length).toBe(0);
  });

  it("never replies to observability_mode messages", async () => {
    const stream = client.open();
    stream.sendRequestHeaders(CHAT_HEADERS, { observabilityMode: true });
    stream.sendRequestBody("{}", true, { observabilityMode: true });
    await until(() => fake.rec.routes.length === 1, "route()");
    stream.sendResponseHeaders({ ":status": "200" }, { endOfStream: true });
    // The first (and only) reply is for the one message without observability_mode.
    expect((await stream.next()).response).toBe("response_headers");
    stream.end();
    await stream.status();
    expect(stream.received.map((m) => m.response)).toEqual(["response_headers"]);
    expect(fake.rec.done).toEqual(["completed"]);
  });

  it("passes SSE response chunks through one by one", async () => {
    fake.use({ responseBody: (chunk) => Buffer.from(chunk.toString().toUpperCase()) });
    const stream = client.open();
    stream.sendRequestHeaders(CHAT_HEADERS);
    stream.sendRequestBody("{}", true);
    await stream.expect("request_headers");
    await stream.expect("request_body");
    stream.sendResponseHeaders(
      { ":status": "200", "content-type": "text/event-stream; charset=utf-8" },
      { servedEndpoint: DEST },
    );
    const rh = await stream.expect("response_headers");
    expect(rh.response_headers!.response!.clear_route_cache ?? false).toBe(false);
    expect(fake.rec.responseHeaders[0]!.status).toBe(200);
    expect(fake.rec.responseHeaders[0]!.servedEndpoint).toBe(DEST);
    const events = ['data: {"a":1}\n\n', 'data: {"b":2}\n\n', "data: [DONE]\n\n"];
    for (let i = 0; i < events.length; i++) {
      const last = i === events.length - 1;
      stream.sendResponseBody(events[i]!, last);
      // Each chunk is answered before the next is sent: true pass-through, no buffering.
      const msg = await stream.expect("response_body");
      const streamed = msg.response_body!.response!.body_mutation!.streamed_response!;
      expect(streamed.body!.toString()).toBe(events[i]!.toUpperCase());
      expect(streamed.end_of_stream ?? false).toBe(last);
    }
    expect(fake.rec.responseBodies.map((b) => b.eos)).toEqual([false, false, true]);
    stream.end();
    expect((await stream.status()).code).toBe(grpc.status.OK);
    expect(fake.rec.done).toEqual(["completed"]);
  });

  it("buffers a JSON response to end_of_stream and hands it over once", async () => {
    fake.use({ responseBody: (chunk) => Buffer.from(chunk.toString().replace('"m2"', '"m"')) });
    const r = await client.roundTrip({
      headers: CHAT_HEADERS,
      body: "{}",
      response: {
        headers: { status: "503", "content-type": "application/json" },
        body: ['{"model":', '"m2","x":1}'],
      },
    });
    expect(fake.rec.responseHeaders[0]!.status).toBe(503);
    expect(fake.rec.responseBodies).toEqual([{ chunk: '{"model":"m2","x":1}', eos: true }]);
    const bodies = r.messages.filter((m) => m.response === "response_body");
    expect(bodies.length).toBe(1);
    expect(r.response!.body.toString()).toBe('{"model":"m","x":1}');
  });

  it("switches a response larger than maxBodyBytes to pass-through instead of buffering it all", async () => {
    const big = [Buffer.alloc(200 * 1024, 0x61), Buffer.alloc(100 * 1024, 0x62), Buffer.from("end")];
    const r = await client.roundTrip({
      headers: CHAT_HEADERS,
      body: "{}",
      response: { headers: { ":status": "200", "content-type": "application/json" }, body: big },
    });
    expect(r.response!.body.equals(Buffer.concat(big))).toBe(true);
    expect(fake.rec.responseBodies.map((b) => [b.chunk.length, b.eos])).toEqual([
      [300 * 1024, false],
      [3, true],
    ]);
    const chunks = r.messages.filter((m) => m.response === "response_body");
    for (const m of chunks)
      expect(m.response_body!.response!.body_mutation!.streamed_response!.body!.length).toBeLessThanOrEqual(62_000);
  });

  it("flushes a buffered response on response_trailers and answers them", async () => {
    const r = await client.roundTrip({
      headers: CHAT_HEADERS,
      body: "{}",
      response: {
        headers: { ":status": "200", "content-type": "application/grpc" },
        body: ["ab", "cd"],
        trailers: true,
      },
    });
    const kinds = r.messages.map((m) => m.response);
    expect(kinds.slice(2)).toEqual(["response_headers", "response_body", "response_trailers"]);
    const streamed = r.messages[3]!.response_body!.response!.body_mutation!.streamed_response!;
    expect(streamed.body!.toString()).toBe("abcd");
    expect(streamed.end_of_stream ?? false).toBe(false);
    expect(fake.rec.responseBodies).toEqual([{ chunk: "abcd", eos: true }]);
    expect(r.response!.trailers).toBe(true);
    expect(fake.rec.done).toEqual(["completed"]);
  });
});

/**
 * A scripted call: the test decides exactly when each event reaches the state machine, so ordering under an
 * async route() is checked deterministically (over a socket the half-close could arrive after the decision).
 */
class ScriptedCall extends EventEmitter {
  readonly written: ProcessingResponse[] = [];
  ended = 0;
  write(msg: ProcessingResponse): boolean {
    this.written.push(msg);
    return true;
  }
  end(): void {
    this.ended++;
  }
  data(msg: ProcessingRequest): void {
    this.emit("data", msg);
  }
}

describe("ext_proc stream ordering (scripted call)", () => {
  const headers = { headers: [{ key: ":path", raw_value: Buffer.from("/v1/completions") }] };

  it("queues messages and the half-close behind a pending route()", async () => {
    const fake = fakeFactory();
    const pending = deferred<RoutingDecision>();
    fake.use({ route: () => pending.promise });
    const call = new ScriptedCall();
    new ExtProcStream(call as unknown as ProcessCall, fake.factory);
    call.data({ request: "request_headers", request_headers: { headers } });
    call.data({ request: "request_body", request_body: { body: Buffer.from("{}"), end_of_stream: true } });
    call.data({
      request: "response_headers",
      response_headers: {
        headers: { headers: [{ key: ":status", raw_value: Buffer.from("200") }] },
        end_of_stream: true,
      },
    });
    call.emit("end");
    expect(call.written).toEqual([]);
    expect(fake.rec.responseHeaders).toEqual([]);
    expect(fake.rec.done).toEqual([]);
    pending.resolve({ endpoints: [DEST], body: Buffer.from("{}") });
    await until(() => call.ended > 0, "the call to end");
    expect(call.written.map((m) => m.response ?? Object.keys(m)[0])).toEqual([
      "request_headers",
      "request_body",
      "response_headers",
    ]);
    expect(fake.rec.responseHeaders[0]!.status).toBe(200);
    expect(fake.rec.done).toEqual(["completed"]);
    expect(call.ended).toBe(1);
  });

  it("calls done once when cancelled and then errored while route() is pending", async () => {
    const fake = fakeFactory();
    const pending = deferred<RoutingDecision>();
    fake.use({ route: () => pending.promise });
    const call = new ScriptedCall();
    let closed = 0;
    new ExtProcStream(call as unknown as ProcessCall, fake.factory, {}, () => closed++);
    call.data({ request: "request_headers", request_headers: { headers, end_of_stream: true } });
    call.emit("cancelled");
    call.emit("error", new Error("reset"));
    call.emit("end");
    pending.reject(new Error("late"));
    await pending.promise.catch(() => {});
    await new Promise((r) => setImmediate(r));
    expect(fake.rec.done).toEqual(["cancelled"]);
    // Read only after the cancellation: the lazily created signal must be born aborted.
    expect(fake.rec.cancels[0]!.signal.aborted).toBe(true);
    expect(call.written).toEqual([]);
    expect(closed).toBe(1);
  });
});

describe("ext_proc stream (BUFFERED)", () => {
  const fake = fakeFactory();
  let viaConfig: FakeEnvoyClient;
  let viaDefault: FakeEnvoyClient;

  beforeAll(async () => {
    ({ client: viaConfig } = await startServer({ factory: fake.factory }));
    ({ client: viaDefault } = await startServer({ factory: fake.factory, defaultRequestBodyMode: "buffered" }));
  });
  afterEach(() => {
    reset(fake.rec);
    fake.use({});
  });

  for (const [name, getClient, sendProtocolConfig] of [
    ["protocol_config", () => viaConfig, true],
    ["the default option", () => viaDefault, false],
  ] as const) {
    it(`answers headers at once and routes on the body message (mode from ${name})`, async () => {
      const r = await getClient().roundTrip({
        headers: CHAT_HEADERS,
        body: '{"model":"m"}',
        mode: "buffered",
        sendProtocolConfig,
      });
      expect(r.messages.map((m) => m.response)).toEqual(["request_headers", "request_body"]);
      // The headers answer is an empty CommonResponse.
      expect(r.messages[0]!.request_headers!.response).toEqual({});
      const common = r.messages[1]!.request_body!.response!;
      expect(common.clear_route_cache).toBe(true);
      expect(common.body_mutation).toBeUndefined();
      expect(r.destination).toBe(DEST);
      expect(r.metadataDestination).toBe(DEST);
      // Unchanged body: Envoy's own content-length stays valid.
      expect(r.setHeaders.has("content-length")).toBe(false);
      expect(r.body.toString()).toBe('{"model":"m"}');
      expect(fake.rec.done).toEqual(["completed"]);
    });
  }

  it("replaces a rewritten body with body_mutation.body and a matching content-length", async () => {
    fake.use({ route: () => ({ endpoints: [DEST], body: Buffer.from('{"model":"target"}') }) });
    const r = await viaConfig.roundTrip({ headers: CHAT_HEADERS, body: '{"model":"m"}', mode: "buffered" });
    expect(r.body.toString()).toBe('{"model":"target"}');
    expect(r.setHeaders.get("content-length")).toBe("18");
  });

  it("answers request trailers and replies to the buffered response body only when it changed", async () => {
    fake.use({ responseBody: (chunk) => (chunk.toString() === "same" ? chunk : Buffer.from("changed")) });
    const r = await viaConfig.roundTrip({
      headers: CHAT_HEADERS,
      body: "{}",
      mode: "buffered",
      trailers: true,
      response: { headers: { ":status": "200" }, body: ["orig"] },
    });
    expect(r.messages.map((m) => m.response)).toEqual([
      "request_headers",
      "request_body",
      "request_trailers",
      "response_headers",
      "response_body",
    ]);
    expect(r.response!.body.toString()).toBe("changed");
    expect(fake.rec.responseBodies).toEqual([{ chunk: "orig", eos: true }]);

    const r2 = await viaConfig.roundTrip({
      headers: CHAT_HEADERS,
      body: "{}",
      mode: "buffered",
      response: { headers: { ":status": "200" }, body: ["same"] },
    });
    expect(r2.messages.at(-1)!.response_body!.response).toEqual({});
  });
});

describe("ext_proc stream (STREAMED / BUFFERED_PARTIAL requests, BUFFERED / NONE responses)", () => {
  const fake = fakeFactory();
  let client: FakeEnvoyClient;

  beforeAll(async () => {
    ({ client } = await startServer({ factory: fake.factory }));
  });
  afterEach(() => {
    reset(fake.rec);
    fake.use({});
  });

  for (const [name, mode] of [
    ["STREAMED", BodySendMode.STREAMED],
    ["BUFFERED_PARTIAL", BodySendMode.BUFFERED_PARTIAL],
  ] as const) {
    it(`answers ${name} request_headers at once with an override to BUFFERED, then routes on the body`, async () => {
      const stream = client.open();
      stream.sendRequestHeaders(CHAT_HEADERS, {
        protocolConfig: { requestBodyMode: mode, responseBodyMode: BodySendMode.FULL_DUPLEX_STREAMED },
      });
      // Envoy sends no body in these modes until request_headers is answered: silence here would hang.
      const first = (await stream.expect("request_headers")) as ProcessingResponseWire;
      expect(first.request_headers!.response ?? {}).toEqual({});
      expect(first.mode_override).toMatchObject({
        request_body_mode: BodySendMode.BUFFERED,
        response_body_mode: BodySendMode.FULL_DUPLEX_STREAMED,
        request_header_mode: 1,
        response_header_mode: 1,
      });
      stream.sendRequestBody('{"model":"m"}', true);
      const routed = await stream.expect("request_body");
      expect(mutationMap(routed.request_body!.response!.header_mutation).get("x-gateway-destination-endpoint")).toBe(
        DEST,
      );
      expect(fake.rec.routes[0]!.body.toString()).toBe('{"model":"m"}');
      stream.cancel();
    });
  }

  it("routes a STREAMED request with trailers once the override is honoured (whole body, then trailers)", async () => {
    const stream = client.open();
    // HTTP/1.1 trailers come with chunked encoding: no content-length.
    stream.sendRequestHeaders(CHAT_HEADERS, { protocolConfig: { requestBodyMode: BodySendMode.STREAMED } });
    await stream.expect("request_headers");
    // BUFFERED (the override): the whole body in one message, end_of_stream false because trailers follow, and
    // Envoy waits for this answer before it sends them.
    stream.sendRequestBody('{"model":"m"}', false);
    const routed = await stream.expect("request_body");
    expect(mutationMap(routed.request_body!.response!.header_mutation).get("x-gateway-destination-endpoint")).toBe(
      DEST,
    );
    expect(fake.rec.routes[0]!.body.toString()).toBe('{"model":"m"}');
    stream.sendRequestTrailers({ "x-t": "1" });
    expect((await stream.expect("request_trailers")).request_trailers).toEqual({});
    stream.cancel();
  });

  it("refuses a STREAMED body that keeps coming in chunks (override not honoured) with a clear 500", async () => {
    const stream = client.open();
    stream.sendRequestHeaders(
      { ...CHAT_HEADERS, "content-length": "13" },
      { protocolConfig: { requestBodyMode: BodySendMode.STREAMED } },
    );
    await stream.expect("request_headers");
    stream.sendRequestBody('{"model":', false);
    const msg = await stream.expect("immediate_response");
    expect(msg.immediate_response!.status?.code).toBe(500);
    expect(msg.immediate_response!.body?.toString()).toMatch(/allow_mode_override: true/);
    expect(fake.rec.routes).toHaveLength(0);
    expect((await stream.status()).code).toBe(grpc.status.OK);
  });

  it("without a content-length, refuses the STREAMED chunk that follows the one it routed on (override not honoured)", async () => {
    const stream = client.open();
    stream.sendRequestHeaders(CHAT_HEADERS, { protocolConfig: { requestBodyMode: BodySendMode.STREAMED } });
    await stream.expect("request_headers");
    // Indistinguishable from a buffered body with trailers to follow until Envoy sends more body.
    stream.sendRequestBody('{"model":', false);
    await stream.expect("request_body");
    stream.sendRequestBody('"m"}', true);
    const msg = await stream.expect("immediate_response");
    expect(msg.immediate_response!.status?.code).toBe(500);
    expect(msg.immediate_response!.body?.toString()).toMatch(/allow_mode_override: true/);
  });

  it("sets content-length beside a rewritten BUFFERED response body (Envoy refuses a mismatch)", async () => {
    fake.use({ responseBody: () => Buffer.from('{"model":"alias-name"}') });
    const r = await client.roundTrip({
      headers: CHAT_HEADERS,
      body: '{"model":"m"}',
      mode: "buffered",
      response: { headers: { ":status": "200", "content-length": "13" }, body: ['{"model":"m"}'] },
    });
    const answer = r.messages.at(-1)!.response_body!.response!;
    expect(answer.body_mutation!.body!.toString()).toBe('{"model":"alias-name"}');
    expect(mutationMap(answer.header_mutation).get("content-length")).toBe("22");
    expect(r.grpcStatus.code).toBe(grpc.status.OK);
  });

  it("ends the call after response_headers when the response body mode is NONE", async () => {
    const stream = client.open();
    stream.sendRequestHeaders(
      { ":method": "GET", ":path": "/v1/models" },
      { endOfStream: true, protocolConfig: { requestBodyMode: "full-duplex", responseBodyMode: BodySendMode.NONE } },
    );
    await stream.expect("request_headers");
    stream.sendResponseHeaders({ ":status": "200" });
    await stream.expect("response_headers");
    expect((await stream.status()).code).toBe(grpc.status.OK);
    expect(fake.rec.done).toEqual(["completed"]);
  });
});

describe("ext_proc server options", () => {
  const fake = fakeFactory();
  afterEach(() => reset(fake.rec));

  it("echoes non-system request headers only when echoRequestHeaders is set", async () => {
    const { client } = await startServer({ factory: fake.factory, echoRequestHeaders: true });
    const r = await client.roundTrip({
      headers: { ...CHAT_HEADERS, "x-gateway-inference-objective": "o", "x-user": "u", "content-length": "2" },
      body: "{}",
    });
    expect(r.setHeaders.get("x-user")).toBe("u");
    expect(r.setHeaders.get(":path")).toBe("/v1/chat/completions");
    expect(r.setHeaders.has("x-gateway-inference-objective")).toBe(false);
    expect(r.setHeaders.get("content-length")).toBe("2");
    expect(mutationPairs(r.messages[0]!.request_headers!.response!.header_mutation)[0]![0]).toBe(
      "x-gateway-destination-endpoint",
    );
  });

  it("validates options with specific errors", () => {
    expect(() => createExtProcServer({ factory: {} as LifecycleFactory })).toThrow(ConfigError);
    expect(() => createExtProcServer({ factory: fake.factory, maxBodyBytes: -1 })).toThrow(/maxBodyBytes/);
    expect(() => createExtProcServer({ factory: fake.factory, port: 70000 })).toThrow(/port/);
    expect(() =>
      createExtProcServer({ factory: fake.factory, defaultRequestBodyMode: "streamed" as "buffered" }),
    ).toThrow(/defaultRequestBodyMode/);
  });

  it("answers a factory that throws with 500 instead of crashing", async () => {
    const { client } = await startServer({
      factory: {
        begin() {
          throw new Error("no lifecycle today");
        },
      },
    });
    const r = await client.roundTrip({ headers: CHAT_HEADERS, body: "{}" });
    expect(r.immediate!.status).toBe(500);
    expect(r.immediate!.body).toBe("inference error: Internal - no lifecycle today");
  });

  it("serves TLS with a self-signed certificate and with a mounted cert directory", async () => {
    const selfSigned = await startServer({ factory: fake.factory, tls: {} });
    expect((await selfSigned.client.roundTrip({ headers: CHAT_HEADERS, body: "{}" })).destination).toBe(DEST);

    const dir = await mkdtemp(join(tmpdir(), "switchyard-tls-"));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const pems = await generate([{ name: "commonName", value: "test" }], { keySize: 2048, algorithm: "sha256" });
    await writeFile(join(dir, "tls.crt"), pems.cert);
    await writeFile(join(dir, "tls.key"), pems.private);
    const mounted = await startServer({ factory: fake.factory, tls: { certPath: dir } });
    expect((await mounted.client.roundTrip({ headers: CHAT_HEADERS, body: "{}" })).destination).toBe(DEST);

    const missing = createExtProcServer({
      factory: fake.factory,
      host: "127.0.0.1",
      port: 0,
      tls: { certPath: "/nonexistent" },
    });
    await expect(missing.start()).rejects.toThrow(/cannot read TLS material/);
  });

  it("drains: new streams get UNAVAILABLE, in-flight streams finish", async () => {
    const pending = deferred<RoutingDecision>();
    const { server, client, port } = await startServer({
      factory: {
        begin: () => ({
          route: () => pending.promise,
          responseHeaders: () => ({}),
          responseBody: (c) => c,
          done: (o) => fake.rec.done.push(o),
        }),
      },
    });
    const inflight = client.open();
    inflight.sendRequestHeaders(CHAT_HEADERS);
    inflight.sendRequestBody("{}", true);
    await until(() => server.activeStreams() === 1, "the stream to open");
    const stopped = server.stop(10_000);
    expect(server.draining).toBe(true);
    const late = connect(`127.0.0.1:${port}`);
    cleanups.push(() => late.close());
    const lateStream = late.open();
    lateStream.sendRequestHeaders(CHAT_HEADERS, { endOfStream: true });
    expect((await lateStream.status()).code).toBe(grpc.status.UNAVAILABLE);

    pending.resolve({ endpoints: [DEST], body: Buffer.from("{}") });
    expect((await inflight.next()).response).toBe("request_headers");
    inflight.end();
    expect((await inflight.status()).code).toBe(grpc.status.OK);
    await stopped;
    expect(server.activeStreams()).toBe(0);
    expect(fake.rec.done).toEqual(["completed"]);
  });
});

describe("gRPC health", () => {
  type Check = (service: string) => Promise<number>;
  function checker(port: number): { check: Check; watch(): Promise<number>; close(): void } {
    const Client = healthService();
    const client = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), {
      "grpc.use_local_subchannel_pool": 1,
    }) as unknown as grpc.Client & {
      Check(req: { service: string }, cb: (err: grpc.ServiceError | null, res?: { status?: number }) => void): void;
      Watch(req: { service: string }): grpc.ClientReadableStream<unknown>;
    };
    return {
      check: (service) =>
        new Promise((resolve, reject) =>
          client.Check({ service }, (err, res) => (err ? reject(err) : resolve(res?.status ?? 0))),
        ),
      watch: () =>
        new Promise((resolve) => {
          const call = client.Watch({ service: "" });
          call.on("data", () => {});
          call.on("error", (err: grpc.ServiceError) => resolve(err.code));
        }),
      close: () => client.close(),
    };
  }

  it("reports liveness always, readiness on sync (no leader election)", async () => {
    const health = createHealthServer({ host: "127.0.0.1", port: 0 });
    const { port } = await health.start();
    const c = checker(port);
    cleanups.push(
      () => c.close(),
      () => health.stop(),
    );
    expect(await c.check("liveness")).toBe(1);
    expect(await c.check("readiness")).toBe(2);
    expect(await c.check("envoy.service.ext_proc.v3.ExternalProcessor")).toBe(2);
    health.setSynced(true);
    expect(await c.check("readiness")).toBe(1);
    expect(await c.check("")).toBe(1);
    // GIE's single-replica chart probes this name; without leader election every name follows sync.
    expect(await c.check("inference-extension")).toBe(1);
    expect(await c.watch()).toBe(grpc.status.UNIMPLEMENTED);
  });

  it("gates readiness on leadership with leader election and rejects unknown names", async () => {
    const health = createHealthServer({ host: "127.0.0.1", port: 0, leaderElection: true });
    const { port } = await health.start();
    const c = checker(port);
    cleanups.push(
      () => c.close(),
      () => health.stop(),
    );
    health.setSynced(true);
    expect(await c.check("liveness")).toBe(1);
    expect(await c.check("readiness")).toBe(2);
    health.setLeader(true);
    expect(await c.check("readiness")).toBe(1);
    expect(await c.check("envoy.service.ext_proc.v3.ExternalProcessor")).toBe(1);
    expect(await c.check("")).toBe(1);
    expect(await c.check("something-else")).toBe(3);
    health.setLeader(false);
    expect(await c.check("")).toBe(2);
  });

  it("can be served on the ext_proc port", async () => {
    const fake = fakeFactory();
    const state = new HealthState();
    const { port } = await startServer({ factory: fake.factory, healthOnSamePort: state });
    const c = checker(port);
    cleanups.push(() => c.close());
    expect(await c.check("envoy.service.ext_proc.v3.ExternalProcessor")).toBe(2);
    state.setSynced(true);
    expect(await c.check("envoy.service.ext_proc.v3.ExternalProcessor")).toBe(1);
  });
});
