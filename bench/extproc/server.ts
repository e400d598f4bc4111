/**
 * Benchmark server child: `noop` is the cheapest correct FULL_DUPLEX_STREAMED endpoint picker (buffer the body,
 * answer a prebuilt destination, echo the body in ≤62000-byte chunks); `switchyard` is the real EPP (parse,
 * admission, 8 endpoints scored by the default profile). Both run in their own process so process.cpuUsage()
 * measures the server alone. Both load the compiled dist/ code. Parent protocol over IPC: → {cmd:"cpu-start"} ← {ok};
 * → {cmd:"cpu"} ← {cpuMicros}; → {cmd:"stop"}.
 */
import { EventEmitter } from "node:events";
import * as grpc from "@grpc/grpc-js";
import type * as EppModule from "../../src/cli/epp.js";
import type * as ConstantsModule from "../../src/common/constants.js";
import type * as DatastoreModule from "../../src/datastore/datastore.js";
import type { EndpointMetrics, PodSpec } from "../../src/datastore/types.js";
import type * as MessagesModule from "../../src/extproc/messages.js";
import type { ProcessingRequest, ProcessingResponse } from "../../src/extproc/messages.js";
import type * as ProtoModule from "../../src/extproc/proto.js";
import type * as StreamModule from "../../src/extproc/stream.js";
import type { ProcessCall } from "../../src/extproc/stream.js";
import { loopbackEppFlags } from "../../src/local/stack.js";
import type * as LoggerModule from "../../src/observability/logger.js";
import type { LifecycleFactory } from "../../src/request/lifecycle.js";
import { CHUNK_BYTES, chatBody, HEADERS } from "./workload.js";

// The servers run the compiled dist/ (what ships), not tsx-transpiled src/; `npm run bench:extproc` builds first.
// Types come from src/ so this file still typechecks against the source of truth.
const dist = <T>(path: string): Promise<T> => import(new URL(`../../dist/${path}`, import.meta.url).href) as Promise<T>;
const [
  { startEpp },
  { BODY_CHUNK_BYTES },
  { Datastore },
  { destinationMetadata, headersResponse, streamedChunk },
  { extProcService, extProcServerDefinition },
  { silentLogger },
  { ExtProcStream },
] = await Promise.all([
  dist<typeof EppModule>("cli/epp.js"),
  dist<typeof ConstantsModule>("common/constants.js"),
  dist<typeof DatastoreModule>("datastore/datastore.js"),
  dist<typeof MessagesModule>("extproc/messages.js"),
  dist<typeof ProtoModule>("extproc/proto.js"),
  dist<typeof LoggerModule>("observability/logger.js"),
  dist<typeof StreamModule>("extproc/stream.js"),
]);

const mode = process.argv[2] ?? "noop";
const ENDPOINTS = 8;

/**
 * `noop` uses proto-loader's (de)serializers, as any Node ext_proc server built the standard way does;
 * `noop-codec` uses switchyard's hand-written codec (src/extproc/codec.ts), so switchyard / noop-codec isolates
 * switchyard's own per-request work from its cheaper protobuf handling.
 */
async function startNoop(codec: boolean): Promise<{ port: number; stop: () => Promise<void> }> {
  // Channelz off, as in switchyard's server: its per-call bookkeeping must not tax only one side of the comparison.
  const server = new grpc.Server({ "grpc.max_receive_message_length": 64 << 20, "grpc.enable_channelz": 0 });
  const destination = "10.0.0.1:8000";
  const metadata = destinationMetadata(destination);
  server.addService(codec ? extProcServerDefinition() : extProcService().service, {
    Process(call: grpc.ServerDuplexStream<ProcessingRequest, ProcessingResponse>) {
      const chunks: Buffer[] = [];
      call.on("data", (msg: ProcessingRequest) => {
        const body = msg.request_body;
        if (!body) return;
        if (body.body && body.body.length > 0) chunks.push(body.body);
        if (!body.end_of_stream) return;
        const full = Buffer.concat(chunks);
        call.write(
          headersResponse(
            "request_headers",
            {
              clearRouteCache: true,
              setHeaders: [
                ["x-gateway-destination-endpoint", destination],
                ["content-length", String(full.length)],
              ],
            },
            metadata,
          ),
        );
        if (full.length === 0) call.write(streamedChunk("request_body", full, true));
        for (let i = 0; i < full.length; i += BODY_CHUNK_BYTES)
          call.write(
            streamedChunk("request_body", full.subarray(i, i + BODY_CHUNK_BYTES), i + BODY_CHUNK_BYTES >= full.length),
          );
      });
      call.on("end", () => call.end());
      call.on("error", () => {});
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  return { port, stop: () => new Promise((r) => server.tryShutdown(() => r())) };
}

async function startSwitchyard(): Promise<{ port: number; stop: () => Promise<void>; lifecycles: LifecycleFactory }> {
  const datastore = new Datastore({ poolName: "bench", poolNamespace: "default" });
  const pods: PodSpec[] = Array.from({ length: ENDPOINTS }, (_, i) => ({
    name: `pod-${i}`,
    namespace: "default",
    creationTimestamp: 0,
    labels: { app: "bench" },
    annotations: {},
    podIP: `10.0.0.${i + 1}`,
    ready: true,
    deleting: false,
  }));
  datastore.apply({
    pools: [
      {
        name: "bench",
        namespace: "default",
        creationTimestamp: 0,
        selector: { app: "bench" },
        targetPorts: [8000],
        appProtocol: "http",
        failureMode: "FailClose",
      },
    ],
    models: [],
    objectives: [],
    rewrites: [],
    pods,
  });
  // Metrics are set in memory (as the scraper would) so the measurement is the per-request path only.
  const refresh = () => {
    const now = performance.now();
    for (const [i, e] of datastore.endpoints().entries()) {
      const m: EndpointMetrics = {
        waitingQueueSize: i % 3,
        runningRequestsSize: 2 + (i % 4),
        kvCacheUsagePercent: 0.1 + i * 0.05,
        activeModels: new Set(i < 2 ? ["sql-lora"] : []),
        waitingModels: new Set(),
        maxActiveModels: 2,
        cacheBlockSize: 16,
        cacheNumBlocks: 4096,
        updateTime: now,
      };
      e.metrics = m;
    }
  };
  refresh();
  const timer = setInterval(refresh, 50);
  const epp = await startEpp(
    ["--pool-name", "bench", ...loopbackEppFlags({ grpc: 0, health: 0, metrics: 0 }), "--log-level", "silent"],
    { logger: silentLogger, datastore, scrape: false },
  );
  return {
    port: epp.grpcPort,
    lifecycles: epp.lifecycles,
    stop: async () => {
      clearInterval(timer);
      await epp.stop(100);
    },
  };
}

/** Stands in for a grpc-js call: the stream machine only listens for events, writes and ends. */
class InMemoryCall extends EventEmitter {
  writes = 0;
  write(): boolean {
    this.writes++;
    return true;
  }
  end(): void {}
}

/**
 * switchyard's own per-request CPU with gRPC, HTTP/2 and protobuf taken out: ExtProcStream + director + admission
 * + scheduler + metrics, driven with already-decoded messages. Batches of 16 yield to the event loop, as a real
 * server does between socket reads, so short-lived objects die young as they do in production.
 */
async function measureLogic(lifecycles: LifecycleFactory, bodyBytes: number, requests: number) {
  const headers = [...HEADERS, ["x-request-id", "req-0000000001"] as const].map(([key, value]) => ({
    key,
    raw_value: Buffer.from(value),
  }));
  const body = chatBody(bodyBytes);
  const chunks: Buffer[] = [];
  for (let i = 0; i < body.length; i += CHUNK_BYTES) chunks.push(body.subarray(i, i + CHUNK_BYTES));
  const options = { maxBodyBytes: 16 << 20, defaultRequestBodyMode: "full-duplex" as const, logger: silentLogger };
  const one = () => {
    const call = new InMemoryCall();
    new ExtProcStream(call as unknown as ProcessCall, lifecycles, options);
    call.emit("data", {
      request: "request_headers",
      request_headers: { headers: { headers } },
      protocol_config: { request_body_mode: 4, response_body_mode: 4 },
    });
    for (let i = 0; i < chunks.length; i++)
      call.emit("data", {
        request: "request_body",
        request_body: { body: chunks[i], end_of_stream: i === chunks.length - 1 },
      });
    call.emit("end");
    if (call.writes < 2) throw new Error(`bench request of ${bodyBytes} bytes was not answered`);
  };
  const run = async (n: number) => {
    for (let i = 0; i < n; i++) {
      one();
      if ((i & 15) === 15) await new Promise((r) => setImmediate(r));
    }
  };
  await run(Math.min(requests, 2000)); // warm-up (JIT)
  const mark = process.cpuUsage();
  await run(requests);
  const d = process.cpuUsage(mark);
  return (d.user + d.system) / requests;
}

const server: { port: number; stop: () => Promise<void>; lifecycles?: LifecycleFactory } =
  mode === "switchyard" ? await startSwitchyard() : await startNoop(mode === "noop-codec");
let cpuMark = process.cpuUsage();
process.on("message", (msg: { cmd: string }) => {
  if (msg.cmd === "cpu-start") {
    cpuMark = process.cpuUsage();
    process.send?.({ ok: true });
  } else if (msg.cmd === "cpu") {
    const d = process.cpuUsage(cpuMark);
    process.send?.({ cpuMicros: d.user + d.system });
  } else if (msg.cmd === "logic") {
    const { bodyBytes, requests } = msg as unknown as { bodyBytes: number; requests: number };
    if (server.lifecycles === undefined) throw new Error("logic measurement needs the switchyard mode");
    void measureLogic(server.lifecycles, bodyBytes, requests).then((cpu) => process.send?.({ logicMicros: cpu }));
  } else if (msg.cmd === "stop") {
    void server.stop().then(() => process.exit(0));
  }
});
process.send?.({ ready: true, port: server.port });
