/**
 * `npm run build && npx tsx bench/extproc/codec.ts`: ns per message for the hand-written ext_proc codec
 * (src/extproc/codec.ts) versus the proto-loader (protobufjs) (de)serializers it replaces on the server. Same
 * process, same inputs, interleaved rounds, median of rounds — a noisy shared machine moves the absolute numbers;
 * the ratio is what to read.
 *
 * It loads the compiled dist/ (what ships), like bench/extproc/server.ts: tsx-transpiled src/ measured the codec
 * ~2x slower than tsc's output, which would misstate the comparison (protobufjs is plain JS either way).
 *
 * Env: CODEC_DIST (compiled tree, default ../../dist), CODEC_ITERATIONS (per round, default 20000), CODEC_ROUNDS
 * (default 7).
 */
import type * as CodecModule from "../../src/extproc/codec.js";
import type * as MessagesModule from "../../src/extproc/messages.js";
import type { ProcessingRequest, ProcessingResponse } from "../../src/extproc/messages.js";
import type * as ProtoModule from "../../src/extproc/proto.js";

const DIST = process.env.CODEC_DIST ?? new URL("../../dist/", import.meta.url).pathname;
const dist = <T>(path: string): Promise<T> =>
  import(new URL(path, `file://${DIST.replace(/\/?$/, "/")}`).href) as Promise<T>;
const [
  { decodeProcessingRequest, encodeProcessingResponse },
  { BodySendMode, destinationMetadata, headersResponse, streamedChunk },
  { extProcService },
] = await Promise.all([
  dist<typeof CodecModule>("extproc/codec.js"),
  dist<typeof MessagesModule>("extproc/messages.js"),
  dist<typeof ProtoModule>("extproc/proto.js"),
]);

const ITERATIONS = Number(process.env.CODEC_ITERATIONS ?? 20_000);
const ROUNDS = Number(process.env.CODEC_ROUNDS ?? 7);

const method = extProcService().service.Process!;
const plDecode = method.requestDeserialize as (bytes: Buffer) => ProcessingRequest;
const plEncode = method.responseSerialize as (msg: ProcessingResponse) => Buffer;

const header = (key: string, value: string) => ({ key, raw_value: Buffer.from(value) });
const requestHeaders = method.requestSerialize({
  request_headers: {
    headers: {
      headers: [
        header(":authority", "gateway.example.com"),
        header(":path", "/v1/chat/completions"),
        header(":method", "POST"),
        header(":scheme", "https"),
        header("content-type", "application/json"),
        header("content-length", "1024"),
        header("x-request-id", "0b3c4d1e-9f2a-4b7c-8d6e-5f4a3b2c1d0e"),
        header("user-agent", "openai-python/1.50.0"),
      ],
    },
  },
  protocol_config: {
    request_body_mode: BodySendMode.FULL_DUPLEX_STREAMED,
    response_body_mode: BodySendMode.FULL_DUPLEX_STREAMED,
  },
} satisfies ProcessingRequest) as Buffer;
const chat = Buffer.from(JSON.stringify({ model: "m", messages: [{ role: "user", content: "x".repeat(960) }] }));
const requestBody = method.requestSerialize({ request_body: { body: chat, end_of_stream: true } }) as Buffer;

const destination = "10.0.0.7:8000";
const routed = headersResponse(
  "request_headers",
  { setHeaders: [["x-gateway-destination-endpoint", destination]], clearRouteCache: true },
  destinationMetadata(destination),
);
const chunk = streamedChunk("request_body", chat, true);

interface Case {
  readonly name: string;
  readonly ours: () => unknown;
  readonly theirs: () => unknown;
}

const cases: Case[] = [
  {
    name: `decode request_headers (8 headers + protocol_config, ${requestHeaders.length} B)`,
    ours: () => decodeProcessingRequest(requestHeaders),
    theirs: () => plDecode(requestHeaders),
  },
  {
    name: `decode request_body (${requestBody.length} B)`,
    ours: () => decodeProcessingRequest(requestBody),
    theirs: () => plDecode(requestBody),
  },
  {
    name: "encode headersResponse + envoy.lb metadata",
    ours: () => encodeProcessingResponse(routed),
    theirs: () => plEncode(routed),
  },
  {
    name: `encode streamedChunk (${chat.length} B body)`,
    ours: () => encodeProcessingResponse(chunk),
    theirs: () => plEncode(chunk),
  },
];

/** Keeps results observable so the JIT cannot drop the calls. */
let sink = 0;

function nsPerCall(fn: () => unknown): number {
  const start = process.hrtime.bigint();
  for (let i = 0; i < ITERATIONS; i++) {
    if (fn() === undefined) sink++;
  }
  return Number(process.hrtime.bigint() - start) / ITERATIONS;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

for (const c of cases) {
  // Warm-up: both paths optimised before timing.
  nsPerCall(c.ours);
  nsPerCall(c.theirs);
  const ours: number[] = [];
  const theirs: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    ours.push(nsPerCall(c.ours));
    theirs.push(nsPerCall(c.theirs));
  }
  const o = median(ours);
  const t = median(theirs);
  console.log(
    `${c.name.padEnd(58)} codec ${o.toFixed(0).padStart(6)} ns   proto-loader ${t.toFixed(0).padStart(6)} ns   ` +
      `${(t / o).toFixed(1)}x`,
  );
}
if (sink !== 0) console.log("unexpected undefined results:", sink);
