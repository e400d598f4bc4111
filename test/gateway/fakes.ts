/**
 * Test doubles for the gateway: a GIE-like fake EPP (grpc-js on 127.0.0.1:0) and fake model servers that share one
 * port on different loopback addresses, like pods.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import * as grpc from "@grpc/grpc-js";
import { extProcService } from "../../src/extproc/proto.js";

// ---------------- fake EPP ----------------

export interface EppRequestView {
  headers: Map<string, string>;
  body: Buffer;
  headerOnly: boolean;
}

export interface EppDecision {
  /** Destination header value (comma list). Undefined → no destination header. */
  destination?: string;
  /** `envoy.lb` metadata destination; defaults to `destination`. Null → omitted. */
  metadataDestination?: string | null;
  /** Body to stream upstream; defaults to the received body. */
  body?: Buffer;
  /** Set content-length in the headers response (GIE does when the body is non-empty). Default true. */
  contentLength?: boolean;
  extraHeaders?: Record<string, string>;
  immediate?: { status: number; headers?: Record<string, string>; body?: string };
}

export type Behaviour =
  /** GIE-like: answer at request body EoS, echo responses. */
  | "gie"
  /** Close the stream with OK right after the first message, without answering. */
  | "close-ok"
  /** Fail the stream with UNAVAILABLE on the first message. */
  | "error"
  /** Read everything, answer nothing. */
  | "silent";

export interface FakeEppOptions {
  decide?: (req: EppRequestView) => EppDecision;
  behaviour?: Behaviour;
  /** Transforms each response body chunk before echoing it. */
  transformResponse?: (chunk: Buffer) => Buffer;
  /** Fail the stream with UNAVAILABLE when this message kind arrives (after answering nothing for it). */
  failOn?: "response_headers" | "response_body";
  /** Serve TLS with this key pair instead of plaintext. */
  tls?: { key: string; cert: string };
}

export interface StreamLog {
  messages: Record<string, unknown>[];
  servedEndpoint?: string;
  cancelled: boolean;
  halfClosed: boolean;
}

export class Latch<T = void> {
  readonly promise: Promise<T>;
  resolve!: (value: T) => void;
  constructor() {
    this.promise = new Promise<T>((r) => {
      this.resolve = r;
    });
  }
}

export interface FakeEpp {
  address: string;
  streams: StreamLog[];
  /** Resolves when a stream sees `cancelled`. */
  cancelled: Latch<StreamLog>;
  options: FakeEppOptions;
  close(): Promise<void>;
}

const hv = (key: string, value: string) => ({ header: { key, raw_value: Buffer.from(value) } });

export async function startFakeEpp(options: FakeEppOptions = {}): Promise<FakeEpp> {
  const server = new grpc.Server();
  const streams: StreamLog[] = [];
  const cancelled = new Latch<StreamLog>();
  const fake: FakeEpp = { address: "", streams, cancelled, options, close: async () => {} };
  server.addService(extProcService().service, {
    Process(call: grpc.ServerDuplexStream<Record<string, unknown>, Record<string, unknown>>) {
      const log: StreamLog = { messages: [], cancelled: false, halfClosed: false };
      streams.push(log);
      const headers = new Map<string, string>();
      const chunks: Buffer[] = [];
      let headerOnly = false;
      let done = false;
      let ended = false;
      const end = call.end.bind(call);
      call.end = ((...args: Parameters<typeof call.end>) => {
        ended = true;
        return end(...args);
      }) as typeof call.end;
      // grpc-js emits "cancelled" on every stream close; only a close before our own status is a real cancel.
      call.on("cancelled", () => {
        if (ended) return;
        log.cancelled = true;
        cancelled.resolve(log);
      });
      call.on("error", () => {});
      // Set once this side has answered everything (response EoS, trailers, or an ImmediateResponse).
      let complete = false;
      // grpc-js also emits "end" when the client cancels, so a half-close is only answered with OK once the
      // exchange is complete; an incomplete stream waits for the cancel (or the gateway's own grace timer).
      call.on("end", () => {
        log.halfClosed = true;
        if (complete && !ended) call.end();
      });
      const answer = () => {
        const view: EppRequestView = { headers, body: Buffer.concat(chunks), headerOnly };
        const d = fake.options.decide?.(view) ?? { destination: "" };
        if (d.immediate) {
          const hm = Object.entries(d.immediate.headers ?? {}).map(([k, v]) => hv(k, v));
          call.write({
            immediate_response: {
              status: { code: d.immediate.status },
              headers: { set_headers: hm },
              body: Buffer.from(d.immediate.body ?? ""),
            },
          });
          done = true;
          complete = true;
          call.end();
          return;
        }
        const body = d.body ?? view.body;
        const set = [];
        if (d.destination !== undefined) set.push(hv("x-gateway-destination-endpoint", d.destination));
        if (!headerOnly && (d.contentLength ?? true) && body.length > 0)
          set.push(hv("content-length", String(body.length)));
        for (const [k, v] of Object.entries(d.extraHeaders ?? {})) set.push(hv(k, v));
        const metaDest = d.metadataDestination === undefined ? d.destination : d.metadataDestination;
        const dynamic_metadata =
          metaDest === null || metaDest === undefined
            ? undefined
            : {
                fields: {
                  "envoy.lb": {
                    structValue: { fields: { "x-gateway-destination-endpoint": { stringValue: metaDest } } },
                  },
                },
              };
        call.write({
          request_headers: { response: { clear_route_cache: true, header_mutation: { set_headers: set } } },
          dynamic_metadata,
        });
        if (headerOnly) return;
        // GIE chunks at 62000 bytes; use a small size here so multi-chunk echo is exercised.
        const size = 16 * 1024;
        if (body.length === 0)
          call.write({
            request_body: {
              response: { body_mutation: { streamed_response: { body: Buffer.alloc(0), end_of_stream: true } } },
            },
          });
        for (let off = 0; off < body.length; off += size) {
          call.write({
            request_body: {
              response: {
                body_mutation: {
                  streamed_response: {
                    body: body.subarray(off, off + size),
                    end_of_stream: off + size >= body.length,
                  },
                },
              },
            },
          });
        }
      };
      call.on("data", (msg: Record<string, unknown>) => {
        log.messages.push(msg);
        if (done) return;
        const behaviour = fake.options.behaviour ?? "gie";
        if (behaviour === "close-ok") {
          done = true;
          call.end();
          return;
        }
        if (behaviour === "error") {
          done = true;
          ended = true;
          call.emit("error", { code: grpc.status.UNAVAILABLE, details: "fake EPP failure" });
          return;
        }
        if (behaviour === "silent") return;
        const kind = msg.request as string;
        if (kind === fake.options.failOn) {
          done = true;
          ended = true;
          call.emit("error", { code: grpc.status.UNAVAILABLE, details: `fake EPP failure on ${kind}` });
          return;
        }
        if (kind === "request_headers") {
          const rh = msg.request_headers as {
            headers: { headers: { key: string; raw_value: Buffer }[] };
            end_of_stream?: boolean;
          };
          for (const h of rh.headers.headers) headers.set(h.key, h.raw_value.toString("latin1"));
          headerOnly = rh.end_of_stream === true;
          if (headerOnly) answer();
        } else if (kind === "request_body") {
          const rb = msg.request_body as { body?: Buffer; end_of_stream?: boolean };
          if (rb.body) chunks.push(rb.body);
          if (rb.end_of_stream) answer();
        } else if (kind === "request_trailers") {
          answer();
        } else if (kind === "response_headers") {
          const meta = msg.metadata_context as
            | { filter_metadata?: Record<string, { fields?: Record<string, { stringValue?: string }> }> }
            | undefined;
          log.servedEndpoint =
            meta?.filter_metadata?.["envoy.lb"]?.fields?.["x-gateway-destination-endpoint-served"]?.stringValue;
          call.write({
            response_headers: {
              response: { header_mutation: { set_headers: [hv("x-went-into-resp-headers", "true")] } },
            },
          });
        } else if (kind === "response_body") {
          const rb = msg.response_body as { body?: Buffer; end_of_stream?: boolean };
          const chunk = rb.body ?? Buffer.alloc(0);
          const out = fake.options.transformResponse ? fake.options.transformResponse(chunk) : chunk;
          call.write({
            response_body: {
              response: {
                body_mutation: { streamed_response: { body: out, end_of_stream: rb.end_of_stream === true } },
              },
            },
          });
          if (rb.end_of_stream === true) complete = true;
        } else if (kind === "response_trailers") {
          call.write({ response_trailers: {} });
          complete = true;
        }
      });
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(
      "127.0.0.1:0",
      options.tls
        ? grpc.ServerCredentials.createSsl(
            null,
            [{ private_key: Buffer.from(options.tls.key), cert_chain: Buffer.from(options.tls.cert) }],
            false,
          )
        : grpc.ServerCredentials.createInsecure(),
      (err, p) => (err ? reject(err) : resolve(p)),
    ),
  );
  fake.address = `127.0.0.1:${port}`;
  fake.close = () =>
    new Promise<void>((resolve) => {
      server.forceShutdown();
      resolve();
    });
  return fake;
}

// ---------------- fake model servers ----------------

export interface UpstreamRequestLog {
  address: string;
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

export type UpstreamHandler = (req: UpstreamRequestLog, res: http.ServerResponse, raw: http.IncomingMessage) => void;

export interface FakePods {
  port: number;
  /** `ip:port` per pod, in the order given. */
  endpoints: string[];
  requests: UpstreamRequestLog[];
  handler: UpstreamHandler;
  close(): Promise<void>;
}

const defaultHandler: UpstreamHandler = (req, res) => {
  res.writeHead(200, { "content-type": "application/json" });
  res.end(JSON.stringify({ pod: req.address, method: req.method, url: req.url, bytes: req.body.length }));
};

/** Listens on every address with the same port (random high port, retried on EADDRINUSE). */
export async function startFakePods(addresses: readonly string[]): Promise<FakePods> {
  const requests: UpstreamRequestLog[] = [];
  const pods: FakePods = { port: 0, endpoints: [], requests, handler: defaultHandler, close: async () => {} };
  for (let attempt = 0; attempt < 20; attempt++) {
    const port = 20_000 + Math.floor(Math.random() * 40_000);
    const servers: http.Server[] = [];
    try {
      for (const address of addresses) {
        const server = http.createServer((raw, res) => {
          const chunks: Buffer[] = [];
          raw.on("data", (c: Buffer) => chunks.push(c));
          raw.on("end", () => {
            const log: UpstreamRequestLog = {
              address,
              method: raw.method ?? "",
              url: raw.url ?? "",
              headers: raw.headers,
              body: Buffer.concat(chunks),
            };
            requests.push(log);
            pods.handler(log, res, raw);
          });
        });
        servers.push(server);
        await new Promise<void>((resolve, reject) => {
          server.once("error", reject);
          server.listen(port, address, () => resolve());
        });
      }
      pods.port = port;
      pods.endpoints = addresses.map((a) => `${a}:${port}`);
      pods.close = async () => {
        for (const s of servers) {
          s.closeAllConnections();
          await new Promise<void>((r) => s.close(() => r()));
        }
      };
      return pods;
    } catch (err) {
      for (const s of servers) s.close();
      if ((err as NodeJS.ErrnoException).code !== "EADDRINUSE") throw err;
    }
  }
  throw new Error("could not find a free shared port for the fake pods");
}

/** A port nothing listens on (bound then released). */
export async function closedPort(host = "127.0.0.1"): Promise<number> {
  const server = http.createServer();
  await new Promise<void>((r) => server.listen(0, host, () => r()));
  const port = (server.address() as AddressInfo).port;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

export interface ClientResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** A plain node:http client request (so we see exactly what the gateway writes). */
export function send(
  url: string,
  init: { method?: string; path?: string; headers?: Record<string, string>; body?: string | Buffer } = {},
): Promise<ClientResponse> {
  return new Promise((resolve, reject) => {
    const target = new URL(init.path ?? "/", url);
    const req = http.request(target, { method: init.method ?? "POST", headers: init.headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }),
      );
      res.on("error", reject);
    });
    req.on("error", reject);
    if (init.body !== undefined) req.end(init.body);
    else req.end();
  });
}

/** Fails the test (instead of hanging to the global timeout) when `promise` does not settle. Not a timing check. */
export function within<T>(promise: Promise<T>, what: string, ms = 10_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const guard = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`gave up waiting for ${what}`)), ms);
  });
  return Promise.race([promise, guard]).finally(() => clearTimeout(timer));
}
