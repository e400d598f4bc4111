/**
 * The hand-written codec (src/extproc/codec.ts) against the real proto-loader (de)serializers it replaces:
 * decode-equal (toStrictEqual, so no extra or `undefined`-valued keys) for requests, byte-equal for responses,
 * identical throw/accept behaviour on truncation, and the documented strictness differences on malformed input.
 */
import { isDeepStrictEqual } from "node:util";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SUBSET_HINT_KEY, SUBSET_HINT_NAMESPACE } from "../../src/common/constants.js";
import {
  decodeProcessingRequest,
  encodeProcessingResponse,
  type ProcessingRequestWire,
  type ProcessingResponseWire,
  ProtobufWireError,
} from "../../src/extproc/codec.js";
import {
  BodySendMode,
  bodyResponse,
  destinationMetadata,
  headersResponse,
  immediateResponse,
  jsonToStruct,
  type ProcessingRequest,
  type ProcessingResponse,
  type ProtoStruct,
  type ProtoValue,
  streamedChunk,
  trailersResponse,
} from "../../src/extproc/messages.js";
import { extProcServerDefinition, extProcService } from "../../src/extproc/proto.js";
import { createRandom } from "../../src/scheduling/index.js";

const method = extProcService().service.Process!;
const plEncodeRequest = (msg: ProcessingRequestWire): Buffer => method.requestSerialize(msg) as Buffer;
const plDecodeRequest = (bytes: Buffer): unknown => method.requestDeserialize(bytes);
const plEncodeResponse = (msg: ProcessingResponseWire): Buffer => method.responseSerialize(msg) as Buffer;
const plDecodeResponse = (bytes: Buffer): unknown => method.responseDeserialize(bytes);

/** proto-loader → bytes → ours must equal proto-loader's own decode, key for key. */
function expectSameDecode(msg: ProcessingRequestWire): Buffer {
  const bytes = plEncodeRequest(msg);
  expect(decodeProcessingRequest(bytes)).toStrictEqual(plDecodeRequest(bytes));
  return bytes;
}

/** Ours → bytes must equal proto-loader's bytes, and proto-loader must read them back the same. */
function expectSameEncode(msg: ProcessingResponseWire): Buffer {
  const ours = encodeProcessingResponse(msg);
  const theirs = plEncodeResponse(msg);
  expect(ours.toString("hex")).toBe(theirs.toString("hex"));
  expect(plDecodeResponse(ours)).toStrictEqual(plDecodeResponse(theirs));
  return ours;
}

// --- raw wire helpers for hand-made (including invalid) inputs ----------------------------------------------------

function varint(n: number | bigint): Buffer {
  let v = BigInt.asUintN(64, BigInt(n));
  const out: number[] = [];
  while (v > 0x7fn) {
    out.push(Number(v & 0x7fn) | 0x80);
    v >>= 7n;
  }
  out.push(Number(v));
  return Buffer.from(out);
}
const tag = (field: number, wireType: number): Buffer => varint(field * 8 + wireType);
const ld = (field: number, ...payload: Buffer[]): Buffer => {
  const body = Buffer.concat(payload);
  return Buffer.concat([tag(field, 2), varint(body.length), body]);
};
const vf = (field: number, value: number | bigint): Buffer => Buffer.concat([tag(field, 0), varint(value)]);
const str = (field: number, s: string): Buffer => ld(field, Buffer.from(s, "utf8"));

// --- seeded random generators (bounded sizes and depths) --------------------------------------------------------

class Gen {
  readonly #rand: () => number;
  constructor(seed: number) {
    this.#rand = createRandom(seed);
  }
  int(max: number): number {
    return Math.floor(this.#rand() * max);
  }
  chance(p: number): boolean {
    return this.#rand() < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
  /** ASCII, Latin-1, BMP and astral characters; lengths straddle the codec's 24/32-byte fast paths. */
  string(): string {
    const len = this.pick([0, 1, 3, 12, 24, 25, 32, 33, 40, 41, 80, 300]);
    const alphabets = ["abcxyz-:/.0123456789", "aé€ñ", "中文字", "a😀b"];
    const alphabet = [...this.pick(alphabets)];
    let s = "";
    for (let i = 0; i < len; i++) s += this.pick(alphabet);
    return s;
  }
  key(): string {
    return this.chance(0.15) ? this.pick(["", "__proto__", "constructor", "10", "2", "envoy.lb"]) : this.string();
  }
  bytes(): Buffer {
    const len = this.chance(0.02) ? 70_000 + this.int(1000) : this.pick([0, 1, 5, 31, 32, 33, 200]);
    const b = Buffer.allocUnsafe(len);
    for (let i = 0; i < len; i++) b[i] = this.int(256);
    return b;
  }
  bool(): boolean {
    return this.chance(0.5);
  }
  enumValue(): number {
    // Out-of-int32 values too: protobufjs's Writer#int32 truncates with `| 0`, and so must the encoder.
    return this.pick([
      0,
      1,
      2,
      3,
      4,
      127,
      128,
      300,
      2147483647,
      -1,
      -2147483648,
      2 ** 31,
      2 ** 32 + 1,
      -(2 ** 31) - 1,
      -1e20,
      Number.POSITIVE_INFINITY,
    ]);
  }
  double(): number {
    return this.pick([0, -0, 1, -1.5, Math.PI, 1e300, -1e-300, Number.MAX_SAFE_INTEGER, Infinity, -Infinity, NaN]);
  }
  struct(depth: number): ProtoStruct {
    if (this.chance(0.1)) return {};
    const fields: Record<string, ProtoValue> = {};
    const n = 1 + this.int(depth > 3 ? 2 : 4);
    for (let i = 0; i < n; i++) setOwn(fields, this.key(), this.value(depth + 1));
    return { fields };
  }
  value(depth: number): ProtoValue {
    const v: ProtoValue = {};
    // Mostly one member, sometimes none or two (protobufjs writes every set member; see decode.ts on oneofs).
    const members = this.chance(0.05) ? 0 : this.chance(0.06) ? 2 : 1;
    for (let i = 0; i < members; i++) {
      const nested = depth < 6;
      switch (this.int(nested ? 6 : 4)) {
        case 0:
          v.nullValue = this.pick([0, 0, 1, -1]);
          break;
        case 1:
          v.numberValue = this.double();
          break;
        case 2:
          v.stringValue = this.string();
          break;
        case 3:
          v.boolValue = this.bool();
          break;
        case 4:
          v.structValue = this.struct(depth + 1);
          break;
        default: {
          const values: ProtoValue[] = [];
          const n = this.int(4);
          for (let j = 0; j < n; j++) values.push(this.value(depth + 1));
          v.listValue = this.chance(0.1) ? {} : { values };
        }
      }
    }
    return v;
  }
  structMap(depth: number): Record<string, ProtoStruct> {
    const map: Record<string, ProtoStruct> = {};
    const n = 1 + this.int(3);
    for (let i = 0; i < n; i++) setOwn(map, this.key(), this.struct(depth));
    return map;
  }
  headerValue(): { key?: string; value?: string; raw_value?: Buffer } {
    const h: { key?: string; value?: string; raw_value?: Buffer } = {};
    if (this.chance(0.9)) h.key = this.string();
    if (this.chance(0.3)) h.value = this.string();
    if (this.chance(0.8)) h.raw_value = this.bytes();
    return h;
  }
  headerMap(): { headers: { key?: string; value?: string; raw_value?: Buffer }[] } {
    const headers = [];
    const n = this.int(10);
    for (let i = 0; i < n; i++) headers.push(this.headerValue());
    return { headers };
  }

  request(): ProcessingRequestWire {
    const msg: ProcessingRequestWire = {};
    const members = this.chance(0.05) ? 0 : this.chance(0.05) ? 2 : 1;
    for (let i = 0; i < members; i++) {
      switch (this.int(6)) {
        case 0:
        case 1: {
          const h: NonNullable<ProcessingRequestWire["request_headers"]> = {};
          if (this.chance(0.9)) h.headers = this.headerMap();
          if (this.chance(0.1)) h.attributes = this.structMap(2);
          if (this.chance(0.5)) h.end_of_stream = this.bool();
          if (this.chance(0.5)) msg.request_headers = h;
          else msg.response_headers = h;
          break;
        }
        case 2:
        case 3: {
          const b: NonNullable<ProcessingRequest["request_body"]> = {};
          if (this.chance(0.9)) b.body = this.bytes();
          if (this.chance(0.6)) b.end_of_stream = this.bool();
          if (this.chance(0.1)) b.end_of_stream_without_message = this.bool();
          if (this.chance(0.1)) b.grpc_message_compressed = this.bool();
          if (this.chance(0.5)) msg.request_body = b;
          else msg.response_body = b;
          break;
        }
        default: {
          const t = this.chance(0.8) ? { trailers: this.headerMap() } : {};
          if (this.chance(0.5)) msg.request_trailers = t;
          else msg.response_trailers = t;
        }
      }
    }
    if (this.chance(0.4)) {
      const md: NonNullable<ProcessingRequestWire["metadata_context"]> = {};
      if (this.chance(0.9)) md.filter_metadata = this.structMap(2);
      if (this.chance(0.2)) {
        md.typed_filter_metadata = {};
        setOwn(md.typed_filter_metadata, this.key(), { type_url: this.string(), value: this.bytes() });
        if (this.chance(0.3)) setOwn(md.typed_filter_metadata, this.key(), {});
      }
      msg.metadata_context = md;
    }
    if (this.chance(0.2)) msg.attributes = this.structMap(1);
    if (this.chance(0.2)) msg.observability_mode = this.bool();
    if (this.chance(0.3)) {
      const pc: NonNullable<ProcessingRequest["protocol_config"]> = {};
      if (this.chance(0.8)) pc.request_body_mode = this.enumValue();
      if (this.chance(0.8)) pc.response_body_mode = this.enumValue();
      if (this.chance(0.5)) pc.send_body_without_waiting_for_header_response = this.bool();
      msg.protocol_config = pc;
    }
    return msg;
  }

  headerMutation(): NonNullable<ProcessingResponse["immediate_response"]>["headers"] & object {
    const m: { set_headers?: object[]; remove_headers?: string[] } = {};
    if (this.chance(0.8)) {
      const set = [];
      const n = this.int(6);
      for (let i = 0; i < n; i++) {
        const o: Record<string, unknown> = {};
        if (this.chance(0.9)) o.header = this.headerValue();
        if (this.chance(0.3)) o.append = this.chance(0.8) ? { value: this.bool() } : {};
        if (this.chance(0.3)) o.append_action = this.enumValue();
        if (this.chance(0.3)) o.keep_empty_value = this.bool();
        set.push(o);
      }
      m.set_headers = set;
    }
    if (this.chance(0.4)) {
      const n = this.int(4);
      m.remove_headers = [];
      for (let i = 0; i < n; i++) m.remove_headers.push(this.string());
    }
    return m;
  }
  commonResponse(): NonNullable<NonNullable<ProcessingResponse["request_headers"]>["response"]> {
    const c: Record<string, unknown> = {};
    if (this.chance(0.3)) c.status = this.enumValue();
    if (this.chance(0.6)) c.header_mutation = this.headerMutation();
    if (this.chance(0.5)) {
      const bm: Record<string, unknown> = {};
      const kind = this.int(4);
      if (kind === 0 || this.chance(0.05)) bm.body = this.bytes();
      if (kind === 1 || this.chance(0.05)) bm.clear_body = this.bool();
      if (kind === 2 || this.chance(0.05)) {
        const s: Record<string, unknown> = {};
        if (this.chance(0.9)) s.body = this.bytes();
        if (this.chance(0.7)) s.end_of_stream = this.bool();
        bm.streamed_response = s;
      }
      c.body_mutation = bm;
    }
    if (this.chance(0.1)) c.trailers = this.headerMap();
    if (this.chance(0.4)) c.clear_route_cache = this.bool();
    return c;
  }
  response(): ProcessingResponseWire {
    const msg: Record<string, unknown> = {};
    const members = this.chance(0.03) ? 0 : this.chance(0.05) ? 2 : 1;
    const phases = ["request_headers", "response_headers", "request_body", "response_body"];
    for (let i = 0; i < members; i++) {
      const k = this.int(7);
      if (k < 4) msg[phases[k]!] = this.chance(0.9) ? { response: this.commonResponse() } : {};
      else if (k < 6) {
        msg[k === 4 ? "request_trailers" : "response_trailers"] = this.chance(0.5)
          ? { header_mutation: this.headerMutation() }
          : {};
      } else {
        const ir: Record<string, unknown> = {};
        if (this.chance(0.9)) ir.status = this.chance(0.9) ? { code: this.pick([200, 400, 429, 503, -7, 0]) } : {};
        if (this.chance(0.4)) ir.headers = this.headerMutation();
        if (this.chance(0.7)) ir.body = this.bytes();
        if (this.chance(0.3)) ir.grpc_status = this.chance(0.8) ? { status: this.pick([0, 8, 14, 4294967295]) } : {};
        if (this.chance(0.6)) ir.details = this.string();
        msg.immediate_response = ir;
      }
    }
    if (this.chance(0.5)) msg.dynamic_metadata = this.struct(0);
    if (this.chance(0.1)) {
      const mode: Record<string, number> = {};
      for (const f of [
        "request_header_mode",
        "response_header_mode",
        "request_body_mode",
        "response_body_mode",
        "request_trailer_mode",
        "response_trailer_mode",
      ]) {
        if (this.chance(0.5)) mode[f] = this.enumValue();
      }
      msg.mode_override = mode;
    }
    if (this.chance(0.1)) {
      const d: Record<string, number> = {};
      if (this.chance(0.8)) d.seconds = this.pick([0, 1, 59, 3600, -5, 2 ** 40, -(2 ** 40), Number.MAX_SAFE_INTEGER]);
      if (this.chance(0.5)) d.nanos = this.pick([0, 1, 999_999_999, -1]);
      msg.override_message_timeout = d;
    }
    return msg as ProcessingResponseWire;
  }
}

/** Object keys like `__proto__` must become own properties, as in protobufjs. */
function setOwn<T>(target: Record<string, T>, key: string, value: T): void {
  Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
}

// --- (1) representative requests --------------------------------------------------------------------------------

const CHAT = Buffer.from(JSON.stringify({ model: "m", messages: [{ role: "user", content: "x".repeat(900) }] }));

const headerMapOf = (pairs: readonly (readonly [string, string])[]) => ({
  headers: pairs.map(([key, value]) => ({ key, raw_value: Buffer.from(value) })),
});

const TYPICAL_HEADERS: ProcessingRequestWire = {
  request_headers: {
    headers: headerMapOf([
      [":authority", "gateway.example.com"],
      [":path", "/v1/chat/completions"],
      [":method", "POST"],
      [":scheme", "https"],
      ["content-type", "application/json"],
      ["content-length", "1024"],
      ["x-request-id", "0b3c4d1e-9f2a-4b7c-8d6e-5f4a3b2c1d0e"],
      ["user-agent", "openai-python/1.50.0"],
    ]),
  },
  protocol_config: {
    request_body_mode: BodySendMode.FULL_DUPLEX_STREAMED,
    response_body_mode: BodySendMode.FULL_DUPLEX_STREAMED,
  },
};

const REQUESTS: Record<string, ProcessingRequestWire> = {
  "empty message": {},
  "request_headers: 8 headers + protocol_config": TYPICAL_HEADERS,
  "request_headers with raw_value and legacy value, end_of_stream": {
    request_headers: {
      headers: { headers: [{ key: "a", value: "legacy" }, { key: "b", raw_value: Buffer.from("raw") }, { key: "c" }] },
      end_of_stream: true,
    },
  },
  "request_headers with an empty HeaderMap (headers: [] must appear)": { request_headers: { headers: {} } },
  "request_headers with deprecated attributes": {
    request_headers: { attributes: { "envoy.filters.http.ext_proc": jsonToStruct({ "request.path": "/x" }) } },
  },
  response_headers: { response_headers: { headers: headerMapOf([[":status", "200"]]) } },
  "request_body: empty body with end_of_stream": { request_body: { body: Buffer.alloc(0), end_of_stream: true } },
  "request_body: 1 KB chat": { request_body: { body: CHAT, end_of_stream: false } },
  "request_body: 220 KB body": { request_body: { body: Buffer.alloc(220 * 1024, 0x61), end_of_stream: true } },
  "request_body: every HttpBody field": {
    request_body: {
      body: CHAT,
      end_of_stream: true,
      end_of_stream_without_message: true,
      grpc_message_compressed: false,
    },
  },
  response_body: { response_body: { body: Buffer.from("data: {}\n\n"), end_of_stream: false } },
  request_trailers: { request_trailers: { trailers: headerMapOf([["grpc-status", "0"]]) } },
  "response_trailers (empty)": { response_trailers: {} },
  "metadata_context: subset hint ListValue and nested Structs": {
    request_headers: { headers: headerMapOf([[":path", "/v1/completions"]]) },
    metadata_context: {
      filter_metadata: {
        [SUBSET_HINT_NAMESPACE]: jsonToStruct({ [SUBSET_HINT_KEY]: ["10.0.0.1:8000", "10.0.0.2:8000"] }),
        "envoy.lb": jsonToStruct({ a: { b: { c: [1, true, null, "s", { d: -0.5 }] } }, e: [] }),
        "": {},
      },
      typed_filter_metadata: { "envoy.x": { type_url: "type.googleapis.com/x.Y", value: Buffer.from([1, 2, 3]) } },
    },
  },
  "attributes, observability_mode, protocol_config (all fields)": {
    request_body: { body: CHAT, end_of_stream: true },
    attributes: {
      "envoy.filters.http.ext_proc": jsonToStruct({ "request.id": "abc", "source.port": 5555, tls: false }),
    },
    observability_mode: true,
    protocol_config: {
      request_body_mode: BodySendMode.BUFFERED,
      response_body_mode: BodySendMode.STREAMED,
      send_body_without_waiting_for_header_response: true,
    },
  },
  "observability_mode false and zero enums are still sent by protobufjs": {
    observability_mode: false,
    protocol_config: {
      request_body_mode: 0,
      response_body_mode: 0,
      send_body_without_waiting_for_header_response: false,
    },
  },
  "two oneof members: the discriminator is the last declared": {
    request_body: { body: CHAT },
    request_headers: { headers: headerMapOf([["a", "b"]]) },
  },
  "Value with two kinds and an empty Value": {
    metadata_context: {
      filter_metadata: {
        ns: { fields: { two: { stringValue: "s", numberValue: 2 }, none: {}, nan: { numberValue: Number.NaN } } },
      },
    },
  },
  "non-ASCII and long strings": {
    metadata_context: {
      filter_metadata: {
        "é中😀": jsonToStruct({
          ["k".repeat(100)]: "v€".repeat(50),
          short: "ñ",
          a24: "x".repeat(24),
          a25: "y".repeat(25),
        }),
      },
    },
  },
  "__proto__ and numeric-like keys": {
    attributes: JSON.parse('{"__proto__": {}, "10": {}, "2": {}, "b": {}}') as Record<string, ProtoStruct>,
  },
};

describe("decodeProcessingRequest matches proto-loader", () => {
  for (const [name, msg] of Object.entries(REQUESTS)) {
    it(name, () => {
      expectSameDecode(msg);
    });
  }

  it("returns bytes as views into the input buffer, like protobufjs's BufferReader", () => {
    const bytes = expectSameDecode(REQUESTS["request_body: 1 KB chat"]!);
    const ours = decodeProcessingRequest(bytes);
    const theirs = plDecodeRequest(bytes) as ProcessingRequest;
    expect(ours.request_body!.body!.buffer).toBe(bytes.buffer);
    expect(theirs.request_body!.body!.buffer).toBe(bytes.buffer);
    expect(ours.request_body!.body!.equals(CHAT)).toBe(true);
  });

  it("accepts a plain Uint8Array view and rejects non-bytes", () => {
    const bytes = plEncodeRequest(TYPICAL_HEADERS);
    const u8 = new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    expect(decodeProcessingRequest(u8)).toStrictEqual(plDecodeRequest(bytes));
    expect(() => decodeProcessingRequest("nope" as unknown as Buffer)).toThrow(TypeError);
  });

  it("decodes invalid UTF-8 to U+FFFD exactly like protobufjs", () => {
    const bad = Buffer.from([0x61, 0xff, 0xc3, 0x28, 0xe2, 0x82]);
    for (const key of [bad, Buffer.concat([Buffer.alloc(30, 0x62), bad])]) {
      const bytes = ld(2, ld(1, ld(1, ld(1, key))));
      const ours = decodeProcessingRequest(bytes);
      expect(ours).toStrictEqual(plDecodeRequest(bytes));
      expect(ours.request_headers!.headers!.headers![0]!.key).toBe(key.toString("utf8"));
    }
  });

  it("keeps the last of a repeated singular field and replaces (not merges) embedded messages, like protobufjs", () => {
    const bytes = Buffer.concat([
      vf(10, 1),
      vf(10, 0),
      ld(11, vf(1, 2)),
      ld(11, vf(2, 1)),
      ld(4, ld(1, Buffer.from("a")), vf(2, 1)),
      ld(4, ld(1, Buffer.from("b"))),
    ]);
    const ours = decodeProcessingRequest(bytes);
    expect(ours).toStrictEqual(plDecodeRequest(bytes));
    expect(ours).toStrictEqual({
      request: "request_body",
      request_body: { body: Buffer.from("b") },
      observability_mode: false,
      protocol_config: { response_body_mode: 1 },
    });
  });

  it("sets oneof discriminators to the member declared last, not the one last on the wire (protobufjs)", () => {
    // protobufjs's encoder always writes in field order, so only hand-made bytes can put members out of order.
    const value = (...members: Buffer[]) => ld(8, ld(1, str(1, "ns"), ld(2, ld(1, str(1, "f"), ld(2, ...members)))));
    const cases = [
      Buffer.concat([ld(4, ld(1, Buffer.from("b"))), ld(2, ld(1))]),
      Buffer.concat([ld(7), ld(3), ld(6)]),
      value(vf(4, 1), str(3, "s"), vf(1, 0)),
      value(ld(6), ld(5), Buffer.concat([tag(2, 1), Buffer.alloc(8)])),
      value(str(3, "s"), vf(1, 0)),
    ];
    for (const bytes of cases) expect(decodeProcessingRequest(bytes)).toStrictEqual(plDecodeRequest(bytes));
    expect(decodeProcessingRequest(cases[0]!).request).toBe("request_body");
    expect(decodeProcessingRequest(cases[1]!).request).toBe("response_trailers");
  });

  it("appends repeated fields split across the wire and lets a repeated map key keep its last value", () => {
    const entry = (k: string, v: string) => ld(9, str(1, k), ld(2, ld(1, str(1, "f"), ld(2, str(3, v)))));
    const bytes = Buffer.concat([
      // HeaderMap.headers interleaved with an unknown field: one list [b, c, d]. The earlier HttpHeaders ([a]) is
      // replaced by the later one, as protobufjs does.
      ld(2, ld(1, ld(1, str(1, "a")))),
      ld(2, ld(1, ld(1, str(1, "b")), vf(15, 1), ld(1, str(1, "c")), ld(1, str(1, "d")))),
      entry("k", "1"),
      entry("j", "0"),
      entry("k", "2"),
    ]);
    const ours = decodeProcessingRequest(bytes);
    expect(ours).toStrictEqual(plDecodeRequest(bytes));
    expect(ours.request_headers!.headers!.headers!.map((h) => h.key)).toEqual(["b", "c", "d"]);
    expect(Object.keys(ours.attributes!)).toEqual(["k", "j"]);
    expect(ours.attributes!.k!.fields!.f!.stringValue).toBe("2");
  });

  it("decodes 3000 distinct header names exactly, twice (interned keys: forced table collisions and hits)", () => {
    const names: string[] = [];
    for (let i = 0; i < 3000; i++) names.push(`x-h-${i.toString(36).padStart(4, "0")}`);
    names.push("x".repeat(40), "y".repeat(41), "é-non-ascii", "");
    const msg: ProcessingRequestWire = {
      request_headers: { headers: { headers: names.map((key) => ({ key, raw_value: Buffer.from(key) })) } },
    };
    const bytes = plEncodeRequest(msg);
    for (let round = 0; round < 2; round++) {
      const decoded = decodeProcessingRequest(bytes).request_headers!.headers!.headers!;
      expect(decoded.map((h) => h.key)).toEqual(names);
    }
  });

  it("reads a 10-byte negative enum as int32 and a 5-byte varint bool", () => {
    const bytes = Buffer.concat([ld(11, vf(1, -3), vf(2, 2 ** 31)), vf(10, 2 ** 28)]);
    const ours = decodeProcessingRequest(bytes);
    expect(ours).toStrictEqual(plDecodeRequest(bytes));
    expect(ours.protocol_config).toStrictEqual({ request_body_mode: -3, response_body_mode: -(2 ** 31) });
    expect(ours.observability_mode).toBe(true);
  });

  it("accepts nesting up to protobufjs's limit (100) and rejects one level deeper, as protobufjs does", () => {
    // ProcessingRequest (0) → Metadata (1) → Struct (2) → Value (3) → Struct (4) → …
    const nestedAt = (leafDepth: number): Buffer => {
      let value = str(3, "leaf"); // a Value at depth `leafDepth`
      for (let d = leafDepth - 1; d >= 3; d -= 2) {
        value = ld(5, ld(1, str(1, "k"), ld(2, value))); // Value(d) { structValue: Struct(d + 1) { k: Value } }
      }
      return ld(8, ld(1, str(1, "ns"), ld(2, ld(1, str(1, "k"), ld(2, value)))));
    };
    const ok = nestedAt(99);
    expect(decodeProcessingRequest(ok)).toStrictEqual(plDecodeRequest(ok));
    const tooDeep = nestedAt(101);
    expect(() => plDecodeRequest(tooDeep)).toThrow();
    expect(() => decodeProcessingRequest(tooDeep)).toThrow(/nested deeper than 100/);
  });
});

// --- (2) seeded random round trips ------------------------------------------------------------------------------

describe("seeded random differential tests", () => {
  it("2000 random ProcessingRequests: proto-loader encode → our decode equals proto-loader decode", () => {
    const gen = new Gen(0x5eed);
    for (let i = 0; i < 2000; i++) {
      const msg = gen.request();
      const bytes = plEncodeRequest(msg);
      const ours = decodeProcessingRequest(bytes);
      const theirs = plDecodeRequest(bytes);
      if (!isDeepStrictEqual(ours, theirs)) expect({ i, ours }).toStrictEqual({ i, ours: theirs });
    }
  });

  it("2000 random ProcessingResponses: our encode is byte-equal to proto-loader's and decodes the same", () => {
    const gen = new Gen(0xc0dec);
    for (let i = 0; i < 2000; i++) {
      const msg = gen.response();
      const ours = encodeProcessingResponse(msg);
      const theirs = plEncodeResponse(msg);
      if (!ours.equals(theirs)) expect({ i, hex: ours.toString("hex") }).toEqual({ i, hex: theirs.toString("hex") });
      const back = plDecodeResponse(ours);
      if (!isDeepStrictEqual(back, plDecodeResponse(theirs))) expect(back).toStrictEqual(plDecodeResponse(theirs));
    }
  });

  it("responses decoded by proto-loader re-encode to the same bytes (the full response → bytes → object loop)", () => {
    const gen = new Gen(7);
    for (let i = 0; i < 300; i++) {
      const bytes = plEncodeResponse(gen.response());
      const decoded = plDecodeResponse(bytes) as ProcessingResponseWire;
      expect(encodeProcessingResponse(decoded).equals(plEncodeResponse(decoded))).toBe(true);
    }
  });
});

// --- (3) every builder in messages.ts --------------------------------------------------------------------------

describe("encodeProcessingResponse: messages.ts builders are byte-equal to proto-loader", () => {
  const dest = "10.0.0.7:8000";
  const cases: Record<string, ProcessingResponse> = {
    "headersResponse (empty continue)": headersResponse("request_headers"),
    "headersResponse with headers, clear_route_cache and metadata": headersResponse(
      "request_headers",
      {
        setHeaders: [
          ["x-gateway-destination-endpoint", dest],
          ["x-é", "ü"],
        ],
        clearRouteCache: true,
      },
      destinationMetadata(dest, { "envoy.lb": { extra: "1" }, other: { k: "v" } }),
    ),
    "headersResponse for response_headers": headersResponse("response_headers", { setHeaders: [["a", "b"]] }),
    "bodyResponse with a replaced body": bodyResponse("request_body", { body: CHAT, setHeaders: [["a", "b"]] }),
    "bodyResponse (empty) with metadata": bodyResponse("response_body", {}, destinationMetadata(dest)),
    "streamedChunk mid-stream": streamedChunk("request_body", CHAT, false),
    "streamedChunk last (62000 bytes)": streamedChunk("request_body", Buffer.alloc(62000, 0x7a), true),
    "streamedChunk empty with end_of_stream": streamedChunk("response_body", Buffer.alloc(0), true),
    "trailersResponse request": trailersResponse("request_trailers"),
    "trailersResponse response": trailersResponse("response_trailers"),
    "immediateResponse 429 with headers": immediateResponse(
      429,
      Buffer.from("inference error: ResourceExhausted - shed"),
      [["retry-after", "1"]],
      "shed",
    ),
    "immediateResponse 503 without headers": immediateResponse(503, Buffer.alloc(0), [], ""),
    "immediate_response with grpc_status and every HeaderMutation field": {
      immediate_response: {
        status: { code: 400 },
        headers: {
          set_headers: [
            { header: { key: "k", raw_value: Buffer.from("v") }, append: { value: true }, append_action: 2 },
            { header: { key: "e", value: "" }, append: {}, keep_empty_value: true },
          ],
          remove_headers: ["x-remove", "x-é"],
        },
        grpc_status: { status: 3 },
        details: "bad request",
      },
    },
    "CommonResponse with status, clear_body and trailers": {
      response_body: {
        response: { status: 1, body_mutation: { clear_body: true }, trailers: { headers: [{ key: "t", value: "v" }] } },
      },
    },
  };
  for (const [name, msg] of Object.entries(cases)) {
    it(name, () => {
      expectSameEncode(msg);
    });
  }

  it("encodes mode_override and override_message_timeout, which messages.ts does not type", () => {
    const bytes = expectSameEncode({
      request_headers: {},
      mode_override: { request_body_mode: BodySendMode.BUFFERED, response_header_mode: 2 },
      override_message_timeout: { seconds: 3, nanos: 500_000_000 },
    });
    expect(plDecodeResponse(bytes)).toMatchObject({
      mode_override: { request_body_mode: 2, response_header_mode: 2 },
      override_message_timeout: { seconds: 3, nanos: 500_000_000 },
    });
  });

  it("writes a lone surrogate as U+FFFD (valid UTF-8), where protobufjs writes invalid CESU-8 bytes", () => {
    const ours = encodeProcessingResponse({ immediate_response: { details: "a\ud800b" } });
    expect(ours.toString("hex")).toBe(Buffer.concat([Buffer.from([0x3a, 7]), str(5, "a\ufffdb")]).toString("hex"));
    expect(plDecodeResponse(ours)).toStrictEqual({
      response: "immediate_response",
      immediate_response: { details: "a\ufffdb" },
    });
  });

  it("rejects wrong JS types with a TypeError naming the field", () => {
    const bad = (msg: unknown) => () => encodeProcessingResponse(msg as ProcessingResponse);
    expect(bad(null)).toThrow(TypeError);
    expect(bad({ request_headers: 5 })).toThrow(/ProcessingResponse\.request_headers expected an object/);
    expect(bad({ request_body: { response: { body_mutation: { body: "text" } } } })).toThrow(
      /BodyMutation\.body expected a Buffer or Uint8Array, got string/,
    );
    expect(bad({ request_headers: { response: { header_mutation: { set_headers: {} } } } })).toThrow(
      /HeaderMutation\.set_headers expected an array/,
    );
    expect(bad({ immediate_response: { status: { code: "429" } } })).toThrow(/HttpStatus\.code expected a number/);
    expect(bad({ dynamic_metadata: { fields: { a: { stringValue: 1 } } } })).toThrow(/Value\.stringValue/);
  });

  it("rejects Structs nested past the recursion limit (and cycles) instead of overflowing the stack", () => {
    const cyclic: ProtoStruct = { fields: {} };
    cyclic.fields!.self = { structValue: cyclic };
    expect(() => encodeProcessingResponse({ dynamic_metadata: cyclic })).toThrow(/nested deeper than 100/);
    expect(() => plEncodeResponse({ dynamic_metadata: cyclic })).toThrow();
    // The encoder is still usable afterwards (its size cache is reset per call).
    expectSameEncode(streamedChunk("request_body", CHAT, true));
  });

  it("encodes a 3000-key dynamic_metadata (an oversized size cache) and then small messages, byte-equal", () => {
    const fields: Record<string, ProtoValue> = {};
    for (let i = 0; i < 3000; i++) fields[`k${i}`] = { stringValue: `v${i}` };
    expectSameEncode({ request_headers: {}, dynamic_metadata: { fields } });
    expectSameEncode(headersResponse("request_headers", {}, destinationMetadata("10.0.0.1:80")));
  });

  it("refuses to be re-entered from a getter instead of corrupting its size cache", () => {
    const evil = {
      get request_headers() {
        return encodeProcessingResponse({ request_headers: {} }).length > 0 ? {} : undefined;
      },
    };
    expect(() => encodeProcessingResponse(evil as ProcessingResponse)).toThrow(/re-entered/);
    expectSameEncode(headersResponse("request_headers"));
  });
});

// --- (4) malformed input ---------------------------------------------------------------------------------------

describe("malformed input", () => {
  const FULL = plEncodeRequest({
    request_headers: TYPICAL_HEADERS.request_headers!,
    metadata_context: REQUESTS["metadata_context: subset hint ListValue and nested Structs"]!.metadata_context!,
    attributes: REQUESTS["attributes, observability_mode, protocol_config (all fields)"]!.attributes!,
    observability_mode: true,
    protocol_config: TYPICAL_HEADERS.protocol_config!,
  });

  it("truncated at every byte offset: throws exactly when protobufjs throws, else decodes the same prefix", () => {
    let threw = 0;
    for (let cut = 0; cut < FULL.length; cut++) {
      const bytes = FULL.subarray(0, cut);
      let theirs: unknown;
      let theirError: unknown;
      try {
        theirs = plDecodeRequest(bytes);
      } catch (err) {
        theirError = err;
      }
      if (theirError !== undefined) {
        expect(theirError).toBeInstanceOf(RangeError);
        expect(() => decodeProcessingRequest(bytes), `cut at ${cut}`).toThrow(ProtobufWireError);
        threw++;
      } else {
        expect(decodeProcessingRequest(bytes), `cut at ${cut}`).toStrictEqual(theirs);
      }
    }
    expect(threw).toBeGreaterThan(FULL.length / 2);
  });

  it("names the problem and its offset", () => {
    expect(() => decodeProcessingRequest(Buffer.from([0x22, 0x05, 0x0a]))).toThrow(
      "invalid ProcessingRequest: length 5 runs past the enclosing message end (byte 3) at byte 1",
    );
    expect(() => decodeProcessingRequest(Buffer.from([0x50, 0x80]))).toThrow(
      "invalid ProcessingRequest: truncated varint (enclosing message ends at byte 2) at byte 1",
    );
    const err = (() => {
      try {
        decodeProcessingRequest(Buffer.from([0x22, 0x02, 0x0f, 0x00]));
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(ProtobufWireError);
    expect(err).toBeInstanceOf(RangeError);
    expect((err as ProtobufWireError).offset).toBe(2);
    expect((err as Error).message).toMatch(/invalid wire type 7/);
  });

  it("skips unknown fields of every wire type at every level, as protobufjs does", () => {
    const unknown = Buffer.concat([
      vf(15, 12345),
      Buffer.concat([tag(16, 1), Buffer.alloc(8, 0xee)]),
      ld(17, Buffer.from("ignored")),
      Buffer.concat([tag(18, 5), Buffer.alloc(4, 0xdd)]),
      vf(2000, 2 ** 62),
    ]);
    const bytes = Buffer.concat([
      unknown,
      ld(2, unknown, ld(1, unknown, ld(1, unknown, str(1, "k"), unknown, ld(3, Buffer.from("v")))), unknown),
      ld(8, unknown, ld(1, unknown, str(1, "ns"), ld(2, unknown, ld(1, str(1, "f"), ld(2, unknown, str(3, "s")))))),
      ld(11, unknown, vf(1, 4)),
      unknown,
    ]);
    const ours = decodeProcessingRequest(bytes);
    expect(ours).toStrictEqual(plDecodeRequest(bytes));
    expect(ours).toStrictEqual({
      request: "request_headers",
      request_headers: { headers: { headers: [{ key: "k", raw_value: Buffer.from("v") }] } },
      metadata_context: { filter_metadata: { ns: { fields: { f: { kind: "stringValue", stringValue: "s" } } } } },
      protocol_config: { request_body_mode: 4 },
    });
  });

  it("is stricter than protobufjs where protobufjs misreads (documented in decode.ts)", () => {
    // Known field, wrong wire type: skipped as unknown (protobufjs would read observability_mode from the length).
    const wrongType = Buffer.concat([ld(10, Buffer.from([1, 1])), ld(11, Buffer.concat([tag(1, 5), Buffer.alloc(4)]))]);
    expect(decodeProcessingRequest(wrongType)).toStrictEqual({ protocol_config: {} });
    // Groups, field number 0, overlong varints, strings past their message.
    expect(() => decodeProcessingRequest(Buffer.concat([tag(15, 3), tag(15, 4)]))).toThrow(/group/);
    expect(() => decodeProcessingRequest(Buffer.from([0x00, 0x00]))).toThrow(/field number 0/);
    expect(() => decodeProcessingRequest(Buffer.from([0x50, ...Array(10).fill(0x80), 0x00]))).toThrow(/10 bytes/);
    expect(() => decodeProcessingRequest(ld(2, ld(1, ld(1, tag(1, 2), varint(9), Buffer.from("abc")))))).toThrow(
      /length 9 runs past/,
    );
    // A bool varint with only bit 32 set is true (protoc), not false (protobufjs's 32-bit read).
    expect(decodeProcessingRequest(vf(10, 2 ** 32)).observability_mode).toBe(true);
    // A map entry without a value is the empty message, where protobufjs's toObject throws on its null.
    const noValue = Buffer.concat([ld(9, str(1, "k")), ld(8, ld(1, str(1, "ns"), ld(2, ld(1, str(1, "f")))))]);
    expect(() => plDecodeRequest(noValue)).toThrow(TypeError);
    expect(decodeProcessingRequest(noValue)).toStrictEqual({
      attributes: { k: {} },
      metadata_context: { filter_metadata: { ns: { fields: { f: {} } } } },
    });
  });

  it("random garbage and mutated messages never hang and only ever throw Errors", () => {
    const gen = new Gen(0xbad);
    const seeds = [FULL, plEncodeRequest(REQUESTS["request_body: 1 KB chat"]!), plEncodeRequest(gen.request())];
    let decoded = 0;
    let rejected = 0;
    for (let i = 0; i < 4000; i++) {
      let bytes: Buffer;
      if (i % 2 === 0) {
        bytes = Buffer.allocUnsafe(gen.int(64));
        for (let j = 0; j < bytes.length; j++) bytes[j] = gen.int(256);
      } else {
        bytes = Buffer.from(gen.pick(seeds));
        const flips = 1 + gen.int(4);
        for (let j = 0; j < flips && bytes.length > 0; j++) bytes[gen.int(bytes.length)] = gen.int(256);
      }
      try {
        const msg = decodeProcessingRequest(bytes);
        expect(typeof msg).toBe("object");
        decoded++;
      } catch (err) {
        expect(err).toBeInstanceOf(Error);
        rejected++;
      }
    }
    expect(decoded).toBeGreaterThan(0);
    expect(rejected).toBeGreaterThan(0);
  });
});

// --- the server definition over a real loopback gRPC connection ---------------------------------------------------

describe("32-bit tags and lengths, and strings that change mid-encode", () => {
  it("refuses a tag or a length prefix wider than 32 bits instead of truncating it", () => {
    // Tag 0x22 (field 4, LEN) spelled in 6 bytes: protobufjs keeps the low 32 bits and reads an empty request_body.
    expect(() => decodeProcessingRequest(Buffer.from("a2808080800100", "hex"))).toThrow(/field tag exceeds 32 bits/);
    // request_body with a length of 2^32 + 5, which truncation would read as 5.
    expect(() => decodeProcessingRequest(Buffer.from("2285808080100a03616263", "hex"))).toThrow(
      /length prefix exceeds 32 bits/,
    );
    // The largest legal 5-byte tag and length forms still decode.
    expect(decodeProcessingRequest(Buffer.from("a28080800000", "hex")).request).toBe("request_body");
  });

  it("never sends stale bytes when a string getter answers differently in the write pass", () => {
    let calls = 0;
    const immediate = {
      get details() {
        return calls++ < 2 ? "é".repeat(17) : "é";
      },
    };
    expect(() => encodeProcessingResponse({ immediate_response: immediate } as ProcessingResponseWire)).toThrow(
      /changed while encoding/,
    );
  });
});

describe("extProcServerDefinition over loopback gRPC", () => {
  let server: grpc.Server;
  let client: grpc.Client & { Process(): grpc.ClientDuplexStream<ProcessingRequest, ProcessingResponse> };
  const seen: ProcessingRequest[] = [];

  beforeAll(async () => {
    server = new grpc.Server();
    server.addService(extProcServerDefinition(), {
      Process: (call: grpc.ServerDuplexStream<ProcessingRequest, ProcessingResponse>) => {
        call.on("data", (msg: ProcessingRequest) => {
          seen.push(msg);
          const size = msg.request_body?.body?.length ?? -1;
          call.write(
            headersResponse("request_headers", { setHeaders: [["x-size", String(size)]] }, jsonToStruct({ size })),
          );
        });
        call.on("end", () => call.end());
      },
    });
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) =>
        err ? reject(err) : resolve(p),
      ),
    );
    const Client = extProcService();
    client = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as unknown as typeof client;
  });

  afterAll(async () => {
    client?.close();
    await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
  });

  it("uses the codec on the server side and proto-loader's for clients", () => {
    const def = extProcServerDefinition().Process!;
    expect(def.requestDeserialize).toBe(decodeProcessingRequest);
    expect(def.responseSerialize).toBe(encodeProcessingResponse);
    expect(def.requestSerialize).toBe(method.requestSerialize);
    expect(def.responseDeserialize).toBe(method.responseDeserialize);
    expect(def.path).toBe("/envoy.service.ext_proc.v3.ExternalProcessor/Process");
  });

  it("round-trips a 220 KB body with metadata through a grpc-js server using the codec", async () => {
    const request = REQUESTS["request_body: 220 KB body"]!;
    const call = client.Process();
    const reply = new Promise<ProcessingResponse>((resolve, reject) => {
      call.once("data", resolve);
      call.once("error", reject);
    });
    call.write({
      ...request,
      metadata_context: REQUESTS["metadata_context: subset hint ListValue and nested Structs"]!.metadata_context,
    });
    const response = await reply;
    call.end();
    expect(response.request_headers!.response!.header_mutation!.set_headers![0]!.header!.raw_value!.toString()).toBe(
      String(220 * 1024),
    );
    expect(response.dynamic_metadata).toStrictEqual({
      fields: { size: { kind: "numberValue", numberValue: 220 * 1024 } },
    });
    const got = seen.at(-1)!;
    expect(got.request_body!.body!.equals(request.request_body!.body!)).toBe(true);
    expect(
      got.metadata_context!.filter_metadata![SUBSET_HINT_NAMESPACE]!.fields![SUBSET_HINT_KEY]!.listValue!.values,
    ).toHaveLength(2);
  });
});
