/**
 * The ext_proc benchmark's raw-http2 "Envoy": its hand-encoded requests must decode with the real protobufjs types,
 * its response walker must agree with protobufjs-encoded responses, and against real loopback servers (grpc-js and
 * raw node:http2) it must time completions, count every failure mode as an error, and shut down cleanly.
 */
import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import * as grpc from "@grpc/grpc-js";
import { afterEach, describe, expect, it } from "vitest";
import {
  classifyResponse,
  encodeBodyRequest,
  encodeHeadersRequest,
  grpcFrame,
  LeanClientError,
  LeanExtProcClient,
  OUTCOME_DONE,
  OUTCOME_IMMEDIATE,
  OUTCOME_NONE,
  PROCESS_PATH,
  RequestTemplate,
  ResponseDecoder,
} from "../../bench/extproc/lean-client.js";
import {
  destinationMetadata,
  headersResponse,
  immediateResponse,
  type ProcessingRequest,
  type ProcessingResponse,
  streamedChunk,
} from "../../src/extproc/messages.js";
import { extProcService } from "../../src/extproc/proto.js";

const method = extProcService().service.Process!;
const decodeRequest = (bytes: Buffer) => method.requestDeserialize(bytes) as ProcessingRequest;
const encodeResponse = (msg: ProcessingResponse) => method.responseSerialize(msg) as Buffer;

const HEADERS = [
  [":method", "POST"],
  [":path", "/v1/chat/completions"],
  ["content-type", "application/json"],
] as const;

function headerMap(req: ProcessingRequest): Record<string, string> {
  const out: Record<string, string> = {};
  for (const h of req.request_headers?.headers?.headers ?? []) out[h.key!] = Buffer.from(h.raw_value!).toString();
  return out;
}

/** Unframes one gRPC message, checking the 5-byte prefix. */
function unframe(frame: Buffer): Buffer {
  expect(frame[0]).toBe(0);
  expect(frame.readUInt32BE(1)).toBe(frame.length - 5);
  return frame.subarray(5);
}

function body(bytes: number): Buffer {
  const out = Buffer.allocUnsafe(bytes);
  for (let i = 0; i < bytes; i++) out[i] = 0x61 + (i % 26);
  return out;
}

/** Deterministic PRNG so split patterns are reproducible. */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

describe("request encoding (checked with protobufjs)", () => {
  it("encodes request_headers with raw_value headers and protocol_config", () => {
    const bytes = encodeHeadersRequest([...HEADERS, ["x-bin", Buffer.from([0, 255, 1])]], {
      protocolConfig: { requestBodyMode: 4, responseBodyMode: 4 },
    });
    const req = decodeRequest(bytes);
    expect(req.request).toBe("request_headers");
    expect(req.protocol_config).toEqual({ request_body_mode: 4, response_body_mode: 4 });
    expect(req.request_headers?.end_of_stream).toBeFalsy();
    const values = req.request_headers!.headers!.headers!;
    expect(values.map((h) => h.key)).toEqual([":method", ":path", "content-type", "x-bin"]);
    for (const h of values) expect(h.value).toBeUndefined();
    expect(Buffer.from(values[3]!.raw_value!)).toEqual(Buffer.from([0, 255, 1]));
    expect(headerMap(req)[":path"]).toBe("/v1/chat/completions");
  });

  it("encodes end_of_stream and omits protocol_config when not asked", () => {
    const req = decodeRequest(encodeHeadersRequest(HEADERS, { endOfStream: true }));
    expect(req.request_headers?.end_of_stream).toBe(true);
    expect(req.protocol_config).toBeUndefined();
  });

  it("encodes request_body chunks, with multi-byte length varints", () => {
    const big = body(300_000);
    const req = decodeRequest(encodeBodyRequest(big, true));
    expect(req.request).toBe("request_body");
    expect(Buffer.from(req.request_body!.body!).equals(big)).toBe(true);
    expect(req.request_body!.end_of_stream).toBe(true);
    const mid = decodeRequest(encodeBodyRequest(Buffer.from("x"), false));
    expect(mid.request_body!.end_of_stream).toBeFalsy();
  });

  it("frames messages with the gRPC 5-byte prefix", () => {
    const frame = grpcFrame(Buffer.from([1, 2, 3]));
    expect([...frame]).toEqual([0, 0, 0, 0, 3, 1, 2, 3]);
  });
});

describe("RequestTemplate", () => {
  it("patches a fixed-width x-request-id into fresh copies of the headers frame", () => {
    const t = new RequestTemplate(HEADERS, body(100));
    const a = t.headersFrame(12345);
    const b = t.headersFrame(7);
    expect(a).not.toBe(b);
    const ra = decodeRequest(unframe(a));
    expect(headerMap(ra)["x-request-id"]).toBe("req-0000012345");
    expect(headerMap(decodeRequest(unframe(b)))["x-request-id"]).toBe("req-0000000007");
    // The first frame is untouched by the second patch (no shared buffer under queued writes).
    expect(headerMap(decodeRequest(unframe(a)))["x-request-id"]).toBe("req-0000012345");
    expect(ra.protocol_config).toEqual({ request_body_mode: 4, response_body_mode: 4 });
    expect(headerMap(ra)[":method"]).toBe("POST");
    // Ids past the width wrap instead of growing the frame.
    expect(t.headersFrame(10 ** 10 + 3).length).toBe(a.length);
    expect(headerMap(decodeRequest(unframe(t.headersFrame(10 ** 10 + 3))))["x-request-id"]).toBe("req-0000000003");
  });

  it("replaces a caller-supplied id header rather than sending two", () => {
    const t = new RequestTemplate([...HEADERS, ["x-request-id", "fixed"]], body(10), { idPrefix: "r", idDigits: 3 });
    const req = decodeRequest(unframe(t.headersFrame(42)));
    const ids = req.request_headers!.headers!.headers!.filter((h) => h.key === "x-request-id");
    expect(ids.map((h) => Buffer.from(h.raw_value!).toString())).toEqual(["r042"]);
  });

  it("splits the body into chunk frames, end_of_stream on the last only", () => {
    const b = body(220 * 1024 + 17);
    const t = new RequestTemplate(HEADERS, b, { chunkBytes: 32 * 1024 });
    expect(t.bodyFrames).toHaveLength(7);
    const reqs = t.bodyFrames.map((f) => decodeRequest(unframe(f)));
    expect(reqs.map((r) => r.request_body!.body!.length)).toEqual([...Array(6).fill(32 * 1024), 28 * 1024 + 17]);
    expect(reqs.map((r) => r.request_body!.end_of_stream === true)).toEqual([...Array(6).fill(false), true]);
    expect(Buffer.concat(reqs.map((r) => Buffer.from(r.request_body!.body!))).equals(b)).toBe(true);
    expect(t.bodyBytes.equals(Buffer.concat(t.bodyFrames))).toBe(true);
  });

  it("rejects an empty body and bad options", () => {
    expect(() => new RequestTemplate(HEADERS, Buffer.alloc(0))).toThrow(/non-empty body/);
    expect(() => new RequestTemplate(HEADERS, body(1), { chunkBytes: 0 })).toThrow(/chunkBytes/);
    expect(() => new RequestTemplate(HEADERS, body(1), { idDigits: 0 })).toThrow(/idDigits/);
  });
});

describe("response walker (checked with protobufjs)", () => {
  const classify = (msg: ProcessingResponse) => {
    const bytes = encodeResponse(msg);
    return classifyResponse(bytes, 0, bytes.length);
  };

  it("recognises the final streamed request_body chunk", () => {
    expect(classify(streamedChunk("request_body", body(62_000), true))).toBe(OUTCOME_DONE);
    expect(classify(streamedChunk("request_body", Buffer.alloc(0), true))).toBe(OUTCOME_DONE);
  });

  it("ignores intermediate chunks, headers responses, metadata and the response phase", () => {
    expect(classify(streamedChunk("request_body", body(62_000), false))).toBe(OUTCOME_NONE);
    const headers = headersResponse(
      "request_headers",
      { clearRouteCache: true, setHeaders: [["x-gateway-destination-endpoint", "10.0.0.1:8000"]] },
      destinationMetadata("10.0.0.1:8000"),
    );
    expect(classify(headers)).toBe(OUTCOME_NONE);
    expect(classify(streamedChunk("response_body", body(10), true))).toBe(OUTCOME_NONE);
    expect(classify({})).toBe(OUTCOME_NONE);
  });

  it("recognises an immediate_response", () => {
    expect(classify(immediateResponse(429, Buffer.from("busy"), [["x-a", "b"]], "queue full"))).toBe(OUTCOME_IMMEDIATE);
  });

  it("skips unknown fields of every wire type", () => {
    const known = encodeResponse(streamedChunk("request_body", body(5), true));
    const unknown = Buffer.from([
      0x78,
      0x96,
      0x01, // field 15 varint 150
      0x81,
      0x01,
      1,
      2,
      3,
      4,
      5,
      6,
      7,
      8, // field 16 fixed64
      0x8d,
      0x01,
      1,
      2,
      3,
      4, // field 17 fixed32
      0x92,
      0x01,
      2,
      0xaa,
      0xbb, // field 18 length-delimited
    ]);
    const bytes = Buffer.concat([unknown, known, unknown]);
    expect(classifyResponse(bytes, 0, bytes.length)).toBe(OUTCOME_DONE);
    // And within a window of a larger buffer.
    const padded = Buffer.concat([Buffer.from([0xff, 0xff]), bytes, Buffer.from([0xff])]);
    expect(classifyResponse(padded, 2, 2 + bytes.length)).toBe(OUTCOME_DONE);
  });

  it("rejects truncated and malformed messages with a specific error", () => {
    const bytes = encodeResponse(streamedChunk("request_body", body(100), true));
    for (const cut of [1, 2, 10, bytes.length - 1]) {
      expect(() => classifyResponse(bytes, 0, cut)).toThrow(LeanClientError);
    }
    expect(() => classifyResponse(Buffer.from([0x0b]), 0, 1)).toThrow(/wire type 3/);
    expect(() => classifyResponse(Buffer.alloc(11, 0xff), 0, 11)).toThrow(/varint/);
  });
});

describe("ResponseDecoder (gRPC frame reassembly)", () => {
  function stream(bodyBytes: number, chunk: number): Buffer {
    const b = body(bodyBytes);
    const frames = [grpcFrame(encodeResponse(headersResponse("request_headers", { clearRouteCache: true })))];
    for (let i = 0; i < b.length; i += chunk)
      frames.push(
        grpcFrame(encodeResponse(streamedChunk("request_body", b.subarray(i, i + chunk), i + chunk >= b.length))),
      );
    return Buffer.concat(frames);
  }

  /** Feeds `bytes` cut at `cuts`; returns the index of the piece that produced DONE and all outcomes. */
  function feed(bytes: Buffer, cuts: number[]): number[] {
    const d = new ResponseDecoder();
    const outcomes: number[] = [];
    let prev = 0;
    for (const c of [...cuts, bytes.length]) {
      outcomes.push(d.push(bytes.subarray(prev, c)));
      prev = c;
    }
    return outcomes;
  }

  it("completes exactly at the last byte, for every single cut point", () => {
    const bytes = stream(300, 100);
    for (let cut = 0; cut <= bytes.length; cut++) {
      const outcomes = feed(bytes, [cut]);
      expect(outcomes).toEqual(cut < bytes.length ? [OUTCOME_NONE, OUTCOME_DONE] : [OUTCOME_DONE, OUTCOME_NONE]);
    }
  });

  it("completes when fed one byte at a time and when whole", () => {
    const bytes = stream(300, 64);
    const outcomes = feed(
      bytes,
      Array.from({ length: bytes.length - 1 }, (_, i) => i + 1),
    );
    expect(outcomes.slice(0, -1).every((o) => o === OUTCOME_NONE)).toBe(true);
    expect(outcomes.at(-1)).toBe(OUTCOME_DONE);
    expect(feed(bytes, [])).toEqual([OUTCOME_DONE]);
  });

  it("reassembles large messages across random DATA-sized chunks", () => {
    const bytes = stream(220 * 1024, 62_000);
    const rnd = prng(7);
    for (let trial = 0; trial < 20; trial++) {
      const cuts: number[] = [];
      let at = 0;
      while (true) {
        at += 1 + Math.floor(rnd() * 20_000);
        if (at >= bytes.length) break;
        cuts.push(at);
      }
      const outcomes = feed(bytes, cuts);
      expect(outcomes.slice(0, -1).every((o) => o === OUTCOME_NONE)).toBe(true);
      expect(outcomes.at(-1)).toBe(OUTCOME_DONE);
    }
  });

  it("reports an immediate_response split across chunks", () => {
    const bytes = grpcFrame(encodeResponse(immediateResponse(503, Buffer.from("no"), [], "none")));
    expect(feed(bytes, [3])).toEqual([OUTCOME_NONE, OUTCOME_IMMEDIATE]);
  });

  it("rejects compressed and oversized messages", () => {
    expect(() => new ResponseDecoder().push(Buffer.from([1, 0, 0, 0, 0]))).toThrow(/flag 1/);
    expect(() => new ResponseDecoder().push(Buffer.from([0, 0xff, 0xff, 0xff, 0xff]))).toThrow(/exceeds/);
    const split = new ResponseDecoder();
    split.push(Buffer.from([0, 0x7f]));
    expect(() => split.push(Buffer.from([0xff, 0xff, 0xff]))).toThrow(LeanClientError);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Against real loopback servers

type Call = grpc.ServerDuplexStream<ProcessingRequest, ProcessingResponse>;

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function grpcServer(handler: (call: Call) => void): Promise<number> {
  const server = new grpc.Server();
  server.addService(extProcService().service, { Process: handler });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  cleanups.push(() => new Promise<void>((r) => server.tryShutdown(() => r())));
  return port;
}

function client(port: number, options: { connections?: number; requestTimeoutMs?: number } = {}): LeanExtProcClient {
  const c = new LeanExtProcClient({ port, ...options });
  cleanups.push(() => c.close());
  return c;
}

interface Seen {
  readonly peer: string;
  readonly messages: ProcessingRequest[];
}

/** The no-op picker of bench/extproc/server.ts: buffer the body, answer headers, echo it in 62000-byte chunks. */
function echoHandler(seen: Seen[]): (call: Call) => void {
  return (call) => {
    const record: Seen = { peer: call.getPeer(), messages: [] };
    seen.push(record);
    const chunks: Buffer[] = [];
    call.on("data", (msg: ProcessingRequest) => {
      record.messages.push(msg);
      if (!msg.request_body) return;
      chunks.push(Buffer.from(msg.request_body.body ?? Buffer.alloc(0)));
      if (!msg.request_body.end_of_stream) return;
      const full = Buffer.concat(chunks);
      call.write(headersResponse("request_headers", { clearRouteCache: true }, destinationMetadata("10.0.0.1:8000")));
      for (let i = 0; i < full.length; i += 62_000)
        call.write(streamedChunk("request_body", full.subarray(i, i + 62_000), i + 62_000 >= full.length));
    });
    call.on("end", () => call.end());
    call.on("error", () => {});
  };
}

describe("LeanExtProcClient against a grpc-js ext_proc server", () => {
  it("sends Envoy's FULL_DUPLEX_STREAMED sequence and resolves on the final echoed chunk", async () => {
    const seen: Seen[] = [];
    const port = await grpcServer(echoHandler(seen));
    const b = body(220 * 1024);
    const c = client(port, { connections: 1 });
    const ms = await c.process(0, new RequestTemplate(HEADERS, b), 99);
    expect(ms).toBeGreaterThan(0);
    expect(c.inflight).toBe(0);
    expect(seen).toHaveLength(1);
    const [first, ...rest] = seen[0]!.messages;
    expect(first!.request).toBe("request_headers");
    expect(first!.protocol_config).toEqual({ request_body_mode: 4, response_body_mode: 4 });
    expect(headerMap(first!)["x-request-id"]).toBe("req-0000000099");
    expect(rest.every((m) => m.request === "request_body")).toBe(true);
    expect(rest.map((m) => m.request_body!.end_of_stream === true)).toEqual([...Array(6).fill(false), true]);
    expect(Buffer.concat(rest.map((m) => Buffer.from(m.request_body!.body!))).equals(b)).toBe(true);
  });

  it("spreads concurrent requests over its connections", async () => {
    const seen: Seen[] = [];
    const port = await grpcServer(echoHandler(seen));
    const c = client(port, { connections: 3 });
    const t = new RequestTemplate(HEADERS, body(40_000));
    const results = await Promise.all(Array.from({ length: 30 }, (_, i) => c.process(i, t, i)));
    expect(results).toHaveLength(30);
    expect(new Set(seen.map((s) => headerMap(s.messages[0]!)["x-request-id"])).size).toBe(30);
    expect(new Set(seen.map((s) => s.peer)).size).toBe(3);
  });

  it("rejects on an immediate_response", async () => {
    const port = await grpcServer((call) => {
      call.once("data", () => call.write(immediateResponse(429, Buffer.from("busy"), [], "queue full")));
      call.on("end", () => call.end());
      call.on("error", () => {});
    });
    await expect(client(port).process(0, new RequestTemplate(HEADERS, body(10)), 1)).rejects.toMatchObject({
      code: "IMMEDIATE_RESPONSE",
    });
  });

  it("rejects on a non-OK grpc-status", async () => {
    const port = await grpcServer((call) => {
      call.once("data", () => call.emit("error", { code: grpc.status.RESOURCE_EXHAUSTED, details: "full up" }));
      call.on("error", () => {});
    });
    await expect(client(port).process(0, new RequestTemplate(HEADERS, body(10)), 1)).rejects.toMatchObject({
      code: "GRPC_STATUS",
      message: "grpc-status 8: full up",
    });
  });

  it("rejects when the server ends the stream OK before the last body chunk", async () => {
    const port = await grpcServer((call) => {
      call.once("data", () => {
        call.write(headersResponse("request_headers"));
        call.end();
      });
      call.on("error", () => {});
    });
    await expect(client(port).process(0, new RequestTemplate(HEADERS, body(10)), 1)).rejects.toMatchObject({
      code: "STREAM_CLOSED",
    });
  });

  it("times out a stuck request and cancels its stream", async () => {
    let cancelled: () => void = () => {};
    const sawCancel = new Promise<void>((r) => {
      cancelled = r;
    });
    const port = await grpcServer((call) => {
      call.on("cancelled", () => cancelled());
      call.on("error", () => {});
    });
    const c = client(port, { requestTimeoutMs: 200 });
    await expect(c.process(0, new RequestTemplate(HEADERS, body(10)), 1)).rejects.toMatchObject({ code: "TIMEOUT" });
    await sawCancel;
    expect(c.inflight).toBe(0);
  });

  it("closes cleanly and refuses work afterwards", async () => {
    const port = await grpcServer(echoHandler([]));
    const c = new LeanExtProcClient({ port, connections: 2 });
    await c.process(1, new RequestTemplate(HEADERS, body(10)), 1);
    await c.close();
    await expect(c.process(0, new RequestTemplate(HEADERS, body(10)), 2)).rejects.toMatchObject({
      code: "CLIENT_CLOSED",
    });
  });

  it("validates its options", () => {
    expect(() => new LeanExtProcClient({ port: 0 })).toThrow(/port/);
    expect(() => new LeanExtProcClient({ port: 1, connections: 0 })).toThrow(/connections/);
    expect(() => new LeanExtProcClient({ port: 1, requestTimeoutMs: 0 })).toThrow(/requestTimeoutMs/);
  });
});

describe("LeanExtProcClient against a raw node:http2 server", () => {
  async function rawServer(onStream: (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => void) {
    const server = http2.createServer();
    const sessions = new Set<http2.Http2Session>();
    server.on("session", (s) => {
      sessions.add(s);
      s.on("close", () => sessions.delete(s));
    });
    server.on("stream", (stream, headers) => {
      stream.on("error", () => {});
      onStream(stream, headers);
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    cleanups.push(
      () =>
        new Promise<void>((r) => {
          for (const s of sessions) s.destroy();
          server.close(() => r());
        }),
    );
    return (server.address() as AddressInfo).port;
  }

  it("reassembles a response written in tiny DATA frames and sends the gRPC request headers", async () => {
    const reply = Buffer.concat([
      grpcFrame(encodeResponse(headersResponse("request_headers", { clearRouteCache: true }))),
      grpcFrame(encodeResponse(streamedChunk("request_body", body(3000), false))),
      grpcFrame(encodeResponse(streamedChunk("request_body", body(100), true))),
    ]);
    let requestHeaders: http2.IncomingHttpHeaders | undefined;
    const port = await rawServer((stream, headers) => {
      requestHeaders = headers;
      stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
      stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
      stream.resume();
      for (let i = 0; i < reply.length; i += 7) stream.write(reply.subarray(i, i + 7));
      stream.end();
    });
    await expect(client(port).process(0, new RequestTemplate(HEADERS, body(10)), 1)).resolves.toBeGreaterThan(0);
    expect(requestHeaders).toMatchObject({
      ":method": "POST",
      ":path": PROCESS_PATH,
      "content-type": "application/grpc",
      te: "trailers",
    });
  });

  it("rejects malformed protobuf, a non-200 status, and a reset", async () => {
    let mode = "garbage";
    const port = await rawServer((stream) => {
      stream.resume();
      if (mode === "garbage") {
        stream.respond({ ":status": 200, "content-type": "application/grpc" });
        stream.write(grpcFrame(Buffer.from([0x1a, 0x7f, 0x00])));
      } else if (mode === "503") {
        stream.respond({ ":status": 503 }, { endStream: true });
      } else {
        stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
      }
    });
    const c = client(port);
    const t = new RequestTemplate(HEADERS, body(10));
    await expect(c.process(0, t, 1)).rejects.toMatchObject({ code: "PROTOBUF_TRUNCATED" });
    mode = "503";
    await expect(c.process(0, t, 2)).rejects.toMatchObject({ code: "HTTP_STATUS" });
    mode = "reset";
    await expect(c.process(0, t, 3)).rejects.toThrow();
    expect(c.inflight).toBe(0);
  });
});
