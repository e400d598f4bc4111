import http from "node:http";
import { afterEach, describe, expect, it } from "vitest";
import { type Gateway, type GatewayOptions, startGateway } from "../../src/gateway/index.js";
import { closedPort, type FakeEpp, type FakePods, Latch, send, startFakeEpp, startFakePods, within } from "./fakes.js";

const SERVED = "x-gateway-destination-endpoint-served";
const cleanups: (() => Promise<void>)[] = [];

afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

async function pods(addresses = ["127.0.1.1", "127.0.1.2"]): Promise<FakePods> {
  const p = await startFakePods(addresses);
  cleanups.push(() => p.close());
  return p;
}

async function epp(options: Parameters<typeof startFakeEpp>[0] = {}): Promise<FakeEpp> {
  const e = await startFakeEpp(options);
  cleanups.push(() => e.close());
  return e;
}

async function gateway(options: GatewayOptions): Promise<Gateway> {
  const g = await startGateway({ port: 0, shutdownGraceMs: 1000, ...options });
  cleanups.push(() => g.close());
  return g;
}

function requestMessages(e: FakeEpp, i = 0) {
  return e.streams[i]!.messages;
}

describe("gateway with an EPP (FULL_DUPLEX_STREAMED)", () => {
  it("routes to the EPP's choice, streams the body, and reports the served endpoint back", async () => {
    const p = await pods();
    const target = p.endpoints[1]!;
    const e = await epp({ decide: () => ({ destination: target }) });
    const g = await gateway({ epp: e.address });
    const body = JSON.stringify({ model: "m", prompt: "x".repeat(40_000) });
    const r = await send(g.url, { path: "/v1/completions?x=1", body, headers: { "content-type": "application/json" } });

    expect(r.status).toBe(200);
    expect(r.headers[SERVED]).toBe(target);
    expect(r.headers["x-went-into-resp-headers"]).toBe("true");
    expect(JSON.parse(r.body)).toMatchObject({ pod: "127.0.1.2", url: "/v1/completions?x=1", bytes: body.length });
    expect(p.requests).toHaveLength(1);
    expect(p.requests[0]!.body.toString()).toBe(body);

    const msgs = requestMessages(e);
    const first = msgs[0] as {
      request: string;
      request_headers: { headers: { headers: { key: string; raw_value: Buffer }[] }; end_of_stream?: boolean };
      protocol_config: { request_body_mode: number; response_body_mode: number };
    };
    expect(first.request).toBe("request_headers");
    expect(first.request_headers.end_of_stream ?? false).toBe(false);
    expect(first.protocol_config).toMatchObject({ request_body_mode: 4, response_body_mode: 4 });
    const sent = new Map(first.request_headers.headers.headers.map((h) => [h.key, h.raw_value.toString()]));
    expect(sent.get(":method")).toBe("POST");
    expect(sent.get(":path")).toBe("/v1/completions?x=1");
    expect(sent.get(":authority")).toBe(new URL(g.url).host);
    expect(sent.get(":scheme")).toBe("http");
    expect(sent.get("content-type")).toBe("application/json");
    expect(sent.get("x-request-id")).toMatch(/^[0-9a-f-]{36}$/);
    // The body arrives as request_body chunks whose concatenation is the client's body, EoS on the last.
    const bodyMsgs = msgs.filter((m) => m.request === "request_body") as {
      request_body: { body?: Buffer; end_of_stream?: boolean };
    }[];
    expect(Buffer.concat(bodyMsgs.map((m) => m.request_body.body ?? Buffer.alloc(0))).toString()).toBe(body);
    expect(bodyMsgs.at(-1)!.request_body.end_of_stream).toBe(true);
    expect(bodyMsgs.slice(0, -1).every((m) => !m.request_body.end_of_stream)).toBe(true);
    // Response path carries the served endpoint in metadata_context.
    expect(e.streams[0]!.servedEndpoint).toBe(target);
    const kinds = msgs.map((m) => m.request);
    expect(kinds.indexOf("response_headers")).toBeGreaterThan(kinds.lastIndexOf("request_body"));
    expect(kinds.at(-1)).toBe("response_body");
    expect(g.stats()).toMatchObject({ requests: 1, routed: { [target]: 1 }, errors: 0, failOpen: 0 });
  });

  it("applies the EPP's body mutation with the content-length it sets, and chunked when it sets none", async () => {
    const p = await pods();
    let withLength = true;
    const e = await epp({
      decide: (req) => {
        const parsed = JSON.parse(req.body.toString()) as Record<string, unknown>;
        parsed.model = "rewritten-target-model";
        return {
          destination: p.endpoints[0]!,
          body: Buffer.from(JSON.stringify(parsed)),
          contentLength: withLength,
        };
      },
    });
    const g = await gateway({ epp: e.address });
    const body = JSON.stringify({ model: "m", stream: false, n: 1 });

    const r1 = await send(g.url, { body, headers: { "content-type": "application/json" } });
    expect(r1.status).toBe(200);
    const up1 = p.requests[0]!;
    const expected = JSON.stringify({ model: "rewritten-target-model", stream: false, n: 1 });
    expect(up1.body.toString()).toBe(expected);
    expect(up1.headers["content-length"]).toBe(String(Buffer.byteLength(expected)));
    expect(up1.headers["transfer-encoding"]).toBeUndefined();
    // Control headers set by the EPP reach the model server, like Envoy forwards them.
    expect(up1.headers["x-gateway-destination-endpoint"]).toBe(p.endpoints[0]);

    withLength = false;
    const r2 = await send(g.url, { body, headers: { "content-type": "application/json" } });
    expect(r2.status).toBe(200);
    const up2 = p.requests[1]!;
    expect(up2.body.toString()).toBe(expected);
    // Envoy strips the client's content-length in this mode; without the EPP's, HTTP/1 goes chunked.
    expect(up2.headers["content-length"]).toBeUndefined();
    expect(up2.headers["transfer-encoding"]).toBe("chunked");
  });

  it("streams SSE through chunk by chunk: the client sees the first event before the upstream finishes", async () => {
    const p = await pods();
    const firstSeen = new Latch();
    p.handler = (_req, res) => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write('data: {"n":1}\n\n');
      // The rest is written only after the client has received event 1 through the gateway and the EPP.
      void firstSeen.promise.then(() => {
        res.write('data: {"n":2}\n\n');
        res.end("data: [DONE]\n\n");
      });
    };
    const e = await epp({
      decide: () => ({ destination: p.endpoints[0]! }),
      transformResponse: (c) => Buffer.from(c.toString().replace(/"n"/g, '"k"')),
    });
    const g = await gateway({ epp: e.address });

    const events: string[] = [];
    const done = new Promise<{ status: number; type: string | undefined }>((resolve, reject) => {
      const req = http.request(new URL("/v1/chat/completions", g.url), { method: "POST", agent: false }, (res) => {
        let buf = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => {
          buf += c;
          let i = buf.indexOf("\n\n");
          while (i >= 0) {
            events.push(buf.slice(0, i));
            buf = buf.slice(i + 2);
            i = buf.indexOf("\n\n");
          }
          if (events.length >= 1) firstSeen.resolve();
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, type: res.headers["content-type"] }));
        res.on("error", reject);
      });
      req.on("error", reject);
      req.end('{"model":"m","stream":true}');
    });
    const r = await within(done, "the streamed response (buffered instead of streamed?)");
    expect(r.status).toBe(200);
    expect(r.type).toBe("text/event-stream");
    // Each event went through the EPP (its transform applied) in order.
    expect(events).toEqual(['data: {"k":1}', 'data: {"k":2}', "data: [DONE]"]);
  });

  it("honours an ImmediateResponse (429 with headers and body) without contacting any pod", async () => {
    const p = await pods();
    const e = await epp({
      decide: () => ({
        immediate: {
          status: 429,
          headers: { "retry-after": "3", "content-type": "text/plain" },
          body: "inference error: ResourceExhausted - system saturated, sheddable request dropped",
        },
      }),
    });
    const g = await gateway({ epp: e.address });
    const r = await send(g.url, { body: '{"model":"m"}' });
    expect(r.status).toBe(429);
    expect(r.headers["retry-after"]).toBe("3");
    expect(r.headers["content-type"]).toBe("text/plain");
    expect(r.headers[SERVED]).toBeUndefined();
    expect(r.body).toBe("inference error: ResourceExhausted - system saturated, sheddable request dropped");
    expect(p.requests).toHaveLength(0);
    expect(g.stats().immediateResponses).toBe(1);
  });

  it("falls back to the next endpoint of the list when the first refuses connections", async () => {
    const p = await pods();
    // 127.0.1.9 shares the port but nothing listens there.
    const dead = `127.0.1.9:${p.port}`;
    const e = await epp({ decide: () => ({ destination: `${dead},${p.endpoints[0]}` }) });
    const g = await gateway({ epp: e.address });
    const r = await send(g.url, { body: '{"model":"m","prompt":"hello"}' });
    expect(r.status).toBe(200);
    expect(r.headers[SERVED]).toBe(p.endpoints[0]);
    // The replayed body is complete on the second attempt.
    expect(p.requests[0]!.body.toString()).toBe('{"model":"m","prompt":"hello"}');
    expect(e.streams[0]!.servedEndpoint).toBe(p.endpoints[0]);
    expect(g.stats()).toMatchObject({ retries: 1, routed: { [p.endpoints[0]!]: 1 }, inFlight: {} });
  });

  it("answers 503 when every endpoint of the list refuses", async () => {
    const p = await pods(["127.0.1.1"]);
    const e = await epp({ decide: () => ({ destination: `127.0.1.9:${p.port},127.0.1.10:${p.port}` }) });
    const g = await gateway({ epp: e.address });
    const r = await send(g.url, { body: "{}" });
    expect(r.status).toBe(503);
    expect(r.headers["x-switchyard-gateway-error"]).toBe("GW_UPSTREAM_CONNECT");
  });

  it("answers 503 when the EPP gives no destination", async () => {
    const e = await epp({ decide: () => ({}) });
    const g = await gateway({ epp: e.address });
    const r = await send(g.url, { body: "{}" });
    expect(r.status).toBe(503);
    expect(r.headers["x-switchyard-gateway-error"]).toBe("GW_NO_DESTINATION");
  });

  it("uses the header when header and envoy.lb metadata disagree, and counts it", async () => {
    const p = await pods();
    const e = await epp({
      decide: () => ({ destination: p.endpoints[1]!, metadataDestination: p.endpoints[0]! }),
    });
    const g = await gateway({ epp: e.address });
    const r = await send(g.url, { body: "{}" });
    expect(r.headers[SERVED]).toBe(p.endpoints[1]);
    expect(g.stats().destinationMismatch).toBe(1);
  });

  it("reads the destination from envoy.lb metadata when the header is absent", async () => {
    const p = await pods();
    const e = await epp({ decide: () => ({ metadataDestination: p.endpoints[1]! }) });
    const g = await gateway({ epp: e.address });
    const r = await send(g.url, { body: "{}" });
    expect(r.headers[SERVED]).toBe(p.endpoints[1]);
  });

  it("handles a GET: headers with end_of_stream, no body messages, no upstream body", async () => {
    const p = await pods();
    const e = await epp({
      decide: (req) => ({ destination: p.endpoints[0]!, extraHeaders: { "x-saw-headeronly": String(req.headerOnly) } }),
    });
    const g = await gateway({ epp: e.address });
    const r = await send(g.url, { method: "GET", path: "/v1/models" });
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body)).toMatchObject({ method: "GET", url: "/v1/models", bytes: 0 });
    expect(p.requests[0]!.headers["x-saw-headeronly"]).toBe("true");
    expect(p.requests[0]!.headers["transfer-encoding"]).toBeUndefined();
    const msgs = requestMessages(e);
    expect((msgs[0] as { request_headers: { end_of_stream?: boolean } }).request_headers.end_of_stream).toBe(true);
    expect(msgs.some((m) => m.request === "request_body")).toBe(false);
  });

  it("sends the subset hint in metadata_context on every request-path message", async () => {
    const p = await pods();
    const e = await epp({ decide: () => ({ destination: p.endpoints[0]! }) });
    const g = await gateway({ epp: e.address, subset: [p.endpoints[0]!] });
    await send(g.url, { body: '{"model":"m"}' });
    const reqMsgs = requestMessages(e).filter((m) => m.request === "request_headers" || m.request === "request_body");
    expect(reqMsgs.length).toBeGreaterThanOrEqual(2);
    for (const m of reqMsgs) {
      const meta = m.metadata_context as {
        filter_metadata: Record<
          string,
          { fields: Record<string, { listValue: { values: { stringValue: string }[] } }> }
        >;
      };
      const values =
        meta.filter_metadata["envoy.lb.subset_hint"]!.fields["x-gateway-destination-endpoint-subset"]!.listValue.values;
      expect(values.map((v) => v.stringValue)).toEqual([p.endpoints[0]]);
    }
  });

  it("cancels the ext_proc stream and aborts the upstream request when the client goes away", async () => {
    const p = await pods(["127.0.1.1"]);
    const upstreamGone = new Latch();
    const upstreamGotIt = new Latch();
    p.handler = (_req, res) => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write("data: first\n\n");
      res.on("close", () => upstreamGone.resolve());
      upstreamGotIt.resolve();
    };
    const e = await epp({ decide: () => ({ destination: p.endpoints[0]! }) });
    // A long message timeout: a half-close (instead of a cancel) would then never turn into a cancel in time.
    const g = await gateway({ epp: e.address, eppTimeoutMs: 600_000 });
    const req = http.request(new URL("/", g.url), { method: "POST", agent: false });
    req.on("error", () => {});
    const gotFirst = new Promise<void>((resolve) =>
      req.on("response", (res) => {
        res.on("error", () => {});
        res.once("data", () => resolve());
      }),
    );
    req.end('{"model":"m","stream":true}');
    await within(upstreamGotIt.promise, "the upstream request");
    await within(gotFirst, "the first event");
    req.destroy();
    const log = await within(e.cancelled.promise, "the ext_proc stream to be cancelled");
    expect(log.cancelled).toBe(true);
    await within(upstreamGone.promise, "the upstream request to be aborted");
    await within(
      (async () => {
        while (g.stats().clientAborts === 0) await new Promise((r) => setTimeout(r, 10));
      })(),
      "the abort to be counted",
    );
    expect(g.stats().inFlight).toEqual({});
    expect(g.stats().eppCancels).toBe(1);
  });
});

describe("EPP failures", () => {
  it("FailOpen routes round-robin over --endpoints when the EPP is unreachable", async () => {
    const p = await pods();
    const g = await gateway({
      epp: `127.0.0.1:${await closedPort()}`,
      failureMode: "FailOpen",
      endpoints: p.endpoints,
    });
    const served: string[] = [];
    for (let i = 0; i < 4; i++) {
      const r = await send(g.url, { body: `{"model":"m","i":${i}}` });
      expect(r.status).toBe(200);
      served.push(String(r.headers[SERVED]));
    }
    expect(served[0]).not.toBe(served[1]);
    expect(served[0]).toBe(served[2]);
    expect(served[1]).toBe(served[3]);
    // The unmodified client body reached the pods.
    expect(p.requests.map((r) => r.body.toString())).toEqual([0, 1, 2, 3].map((i) => `{"model":"m","i":${i}}`));
    expect(g.stats()).toMatchObject({ failOpen: 4, routed: { [p.endpoints[0]!]: 2, [p.endpoints[1]!]: 2 } });
    expect(g.stats().eppErrors).toBe(4);
  });

  it("FailClose answers 503 with a clear body when the EPP is unreachable", async () => {
    const p = await pods();
    const g = await gateway({ epp: `127.0.0.1:${await closedPort()}`, endpoints: p.endpoints });
    const r = await send(g.url, { body: '{"model":"m"}' });
    expect(r.status).toBe(503);
    expect(r.headers["x-switchyard-gateway-error"]).toBe("GW_EPP_UNAVAILABLE");
    expect(r.body).toMatch(/endpoint picker unavailable/);
    expect(p.requests).toHaveLength(0);
    expect(g.stats()).toMatchObject({ errors: 1, failOpen: 0 });
  });

  it("FailClose answers 503 when the EPP returns a gRPC error", async () => {
    const p = await pods();
    const e = await epp({ behaviour: "error" });
    const g = await gateway({ epp: e.address, endpoints: p.endpoints });
    const r = await send(g.url, { body: "{}" });
    expect(r.status).toBe(503);
    expect(r.body).toMatch(/fake EPP failure/);
  });

  it("FailClose answers 503 when the EPP never answers within --epp-timeout", async () => {
    const p = await pods();
    const e = await epp({ behaviour: "silent" });
    const g = await gateway({ epp: e.address, endpoints: p.endpoints, eppTimeoutMs: 300 });
    const r = await send(g.url, { body: "{}" });
    expect(r.status).toBe(503);
    expect(r.body).toMatch(/did not answer/);
    await within(e.cancelled.promise, "the timed-out stream to be cancelled");
  });

  it("a stream closed OK before answering continues without the processor, even under FailClose", async () => {
    const p = await pods();
    const e = await epp({ behaviour: "close-ok" });
    const g = await gateway({ epp: e.address, endpoints: p.endpoints });
    const r = await send(g.url, { body: '{"model":"m","prompt":"' + "y".repeat(100_000) + '"}' });
    expect(r.status).toBe(200);
    expect(p.requests[0]!.body.length).toBe(100_000 + '{"model":"m","prompt":""}'.length);
    expect(g.stats()).toMatchObject({ failOpen: 1, errors: 0 });
  });
});

describe("baselines without an EPP", () => {
  it("round-robin alternates over --endpoints", async () => {
    const p = await pods();
    const g = await gateway({ lb: "round-robin", endpoints: p.endpoints });
    const served: string[] = [];
    for (let i = 0; i < 6; i++) {
      const r = await send(g.url, { method: i % 2 === 0 ? "GET" : "POST", body: i % 2 === 0 ? undefined : "{}" });
      expect(r.status).toBe(200);
      served.push(String(r.headers[SERVED]));
    }
    expect(served).toEqual([0, 1, 2, 3, 4, 5].map((i) => p.endpoints[i % 2]));
    expect(g.stats().routed).toEqual({ [p.endpoints[0]!]: 3, [p.endpoints[1]!]: 3 });
  });

  it("least-request sends new requests away from the endpoint with requests in flight", async () => {
    const p = await pods();
    const release = new Latch();
    const held = new Latch<string>();
    let first = true;
    p.handler = (req, res) => {
      if (first) {
        first = false;
        held.resolve(req.address);
        void release.promise.then(() => res.end("held"));
        return;
      }
      res.end(req.address);
    };
    const g = await gateway({ lb: "least-request", endpoints: p.endpoints });
    const slow = send(g.url, { body: "{}" });
    const busy = await within(held.promise, "the first request to reach a pod");
    const busyEndpoint = p.endpoints.find((ep) => ep.startsWith(`${busy}:`))!;
    const other = p.endpoints.find((ep) => ep !== busyEndpoint)!;
    expect(g.stats().inFlight).toEqual({ [busyEndpoint]: 1 });
    for (let i = 0; i < 5; i++) {
      const r = await send(g.url, { body: "{}" });
      expect(r.headers[SERVED]).toBe(other);
    }
    release.resolve();
    expect((await slow).body).toBe("held");
    expect(g.stats().routed).toEqual({ [busyEndpoint]: 1, [other]: 5 });
    expect(g.stats().inFlight).toEqual({});
  });

  it("least-request with nothing in flight spreads over both endpoints", async () => {
    const p = await pods();
    const g = await gateway({ lb: "least-request", endpoints: p.endpoints });
    for (let i = 0; i < 40; i++) await send(g.url, { method: "GET" });
    const routed = g.stats().routed;
    // Ties are broken at random: with 40 requests both endpoints get some (failure odds 2^-39).
    expect(routed[p.endpoints[0]!]).toBeGreaterThan(0);
    expect(routed[p.endpoints[1]!]).toBeGreaterThan(0);
    expect((routed[p.endpoints[0]!] ?? 0) + (routed[p.endpoints[1]!] ?? 0)).toBe(40);
  });

  it("passes upstream status, headers and content-length through unchanged", async () => {
    const p = await pods(["127.0.1.1"]);
    p.handler = (_req, res) => {
      res.writeHead(418, { "x-pod": "a", "content-length": "5" });
      res.end("teapo");
    };
    const g = await gateway({ lb: "round-robin", endpoints: p.endpoints });
    const r = await send(g.url, { body: "x" });
    expect(r.status).toBe(418);
    expect(r.headers["x-pod"]).toBe("a");
    expect(r.headers["content-length"]).toBe("5");
    expect(r.body).toBe("teapo");
  });

  it("answers 503 when there are no endpoints, and routes after setEndpoints()", async () => {
    const p = await pods(["127.0.1.1"]);
    const g = await gateway({ lb: "round-robin" });
    const r1 = await send(g.url, { method: "GET" });
    expect(r1.status).toBe(503);
    expect(r1.headers["x-switchyard-gateway-error"]).toBe("GW_NO_ENDPOINTS");
    g.setEndpoints(p.endpoints);
    const r2 = await send(g.url, { method: "GET" });
    expect(r2.status).toBe(200);
    expect(() => g.setEndpoints(["not-an-endpoint"])).toThrow(/ip:port/);
  });
});

describe("options", () => {
  it("rejects invalid options with the option's name", async () => {
    await expect(startGateway({ port: 0, lb: "epp" })).rejects.toThrow(/lb/);
    await expect(startGateway({ port: 0, endpoints: ["1.2.3.4"] })).rejects.toThrow(/endpoints/);
    await expect(startGateway({ port: 0, eppTimeoutMs: 0, epp: "127.0.0.1:1" })).rejects.toThrow(/eppTimeoutMs/);
    await expect(
      startGateway({ port: 0, failureMode: "Sometimes" as unknown as "FailOpen", epp: "127.0.0.1:1" }),
    ).rejects.toThrow(/failureMode/);
  });
});

describe("EPP failures on the response path", () => {
  it("FailOpen passes the raw upstream response through when the EPP fails at response headers", async () => {
    const p = await pods(["127.0.1.1"]);
    p.handler = (_req, res) => {
      res.writeHead(200, { "content-type": "application/json", "x-pod": "a" });
      res.end('{"ok":true}');
    };
    const e = await epp({ decide: () => ({ destination: p.endpoints[0]! }), failOn: "response_headers" });
    const g = await gateway({ epp: e.address, failureMode: "FailOpen" });
    const r = await send(g.url, { body: "{}" });
    expect(r.status).toBe(200);
    expect(r.body).toBe('{"ok":true}');
    expect(r.headers["x-pod"]).toBe("a");
    // No EPP mutation was applied, but the served endpoint is still reported.
    expect(r.headers["x-went-into-resp-headers"]).toBeUndefined();
    expect(r.headers[SERVED]).toBe(p.endpoints[0]);
    expect(g.stats().eppErrors).toBe(1);
  });

  it("FailClose answers 503 when the EPP fails before the response headers reach the client", async () => {
    const p = await pods(["127.0.1.1"]);
    const e = await epp({ decide: () => ({ destination: p.endpoints[0]! }), failOn: "response_headers" });
    const g = await gateway({ epp: e.address });
    const r = await send(g.url, { body: "{}" });
    expect(r.status).toBe(503);
    expect(r.headers["x-switchyard-gateway-error"]).toBe("GW_EPP_UNAVAILABLE");
  });
});

describe("EPP over TLS", () => {
  it("--epp-tls accepts the EPP's self-signed certificate", async () => {
    const { generate } = await import("selfsigned");
    const pems = await generate([{ name: "commonName", value: "epp.invalid" }], { keySize: 2048 });
    const p = await pods(["127.0.1.1"]);
    const e = await epp({
      decide: () => ({ destination: p.endpoints[0]! }),
      tls: { key: pems.private, cert: pems.cert },
    });
    const g = await gateway({ epp: e.address, eppTls: true });
    const r = await send(g.url, { body: "{}" });
    expect(r.status).toBe(200);
    expect(r.headers["x-went-into-resp-headers"]).toBe("true");
    // Plaintext against the TLS server fails (FailClose): the TLS setting is what made it work.
    const plain = await gateway({ epp: e.address });
    expect((await send(plain.url, { body: "{}" })).status).toBe(503);
  });
});

describe("stream lifecycle and large bodies", () => {
  it("half-closes the ext_proc stream after a normal exchange (no cancel)", async () => {
    const p = await pods(["127.0.1.1"]);
    const e = await epp({ decide: () => ({ destination: p.endpoints[0]! }) });
    const g = await gateway({ epp: e.address });
    expect((await send(g.url, { body: "{}" })).status).toBe(200);
    await within(
      (async () => {
        while (!e.streams[0]?.halfClosed) await new Promise((r) => setTimeout(r, 10));
      })(),
      "the half-close",
    );
    expect(e.streams[0]!.cancelled).toBe(false);
    expect(g.stats().eppCancels).toBe(0);
  });

  it("carries a 3 MB request and a 3 MB response intact through the EPP", async () => {
    const p = await pods(["127.0.1.1"]);
    const big = Buffer.alloc(3 * 1024 * 1024);
    for (let i = 0; i < big.length; i++) big[i] = 97 + (i % 26);
    p.handler = (req, res) => {
      res.writeHead(200, { "content-type": "application/octet-stream" });
      // Echo the request body back in 64 KiB writes.
      for (let off = 0; off < req.body.length; off += 65_536) res.write(req.body.subarray(off, off + 65_536));
      res.end();
    };
    const e = await epp({ decide: () => ({ destination: p.endpoints[0]! }) });
    const g = await gateway({ epp: e.address });
    const r = await send(g.url, { body: big });
    expect(r.status).toBe(200);
    expect(p.requests[0]!.body.equals(big)).toBe(true);
    expect(p.requests[0]!.headers["content-length"]).toBe(String(big.length));
    expect(r.body.length).toBe(big.length);
    expect(Buffer.from(r.body).equals(big)).toBe(true);
  });

  it("sends upstream trailers to the EPP as response_trailers and on to the client", async () => {
    const p = await pods(["127.0.1.1"]);
    p.handler = (_req, res) => {
      res.writeHead(200, { "content-type": "text/plain", trailer: "x-checksum" });
      res.write("part");
      res.addTrailers({ "x-checksum": "abc" });
      res.end();
    };
    const e = await epp({ decide: () => ({ destination: p.endpoints[0]! }) });
    const g = await gateway({ epp: e.address });
    const trailers = await new Promise<Record<string, string | undefined>>((resolve, reject) => {
      const req = http.request(new URL("/", g.url), { method: "POST", agent: false }, (res) => {
        res.resume();
        res.on("end", () => resolve(res.trailers));
        res.on("error", reject);
      });
      req.on("error", reject);
      req.end("{}");
    });
    expect(trailers["x-checksum"]).toBe("abc");
    const kinds = e.streams[0]!.messages.map((m) => m.request);
    expect(kinds).toContain("response_trailers");
    expect(
      (
        e.streams[0]!.messages.filter((m) => m.request === "response_body") as {
          response_body: { end_of_stream?: boolean };
        }[]
      ).some((m) => m.response_body.end_of_stream),
    ).toBe(false);
  });
});
