/**
 * The ext_proc response encoder: `encodeProcessingResponse` (us → Envoy) writes the plain objects messages.ts
 * describes into one exactly-sized buffer, where proto-loader's serializer runs protobufjs `fromObject` + `encode`
 * with an intermediate message object (docs/design/ext-proc-protocol.md §2).
 *
 * Encode: byte-identical to protobufjs's `encode(fromObject(msg))` for the typed shapes — fields in field-number
 * order (which is declaration order in our .protos), a field is written whenever it is not null/undefined (also
 * `false`/`0`/"" — protobufjs's encoder checks `!= null`, not proto3 defaults), every present oneof member is written
 * (the discriminator key is ignored, as fromObject ignores it), map entries in Object.keys order, each with both
 * key and value. One deliberate difference: a lone UTF-16 surrogate is written as U+FFFD (EF BF BD, like
 * Buffer#write); protobufjs writes raw CESU-8 bytes for strings under 40 chars, which is invalid UTF-8 that Envoy's
 * proto3 parser rejects. Wrong JS types throw a TypeError naming the field (protobufjs silently coerces or drops).
 *
 * Encoding is two passes over the object: a size pass that also validates types and records every nested
 * message's and string's byte length in pre-order in `slots`, then a write pass that replays the same walk into
 * one Buffer.allocUnsafe of the exact size. Sizes are cached rather than recomputed because a length prefix must
 * precede its payload, and recomputing per level would make deep Structs quadratic.
 */
import type {
  BodyMutation,
  CommonResponse,
  HeaderMap,
  HeaderMutation,
  HeaderValue,
  HeaderValueOption,
  ImmediateResponse,
  ProtoListValue,
  ProtoStruct,
  ProtoValue,
  TrailersResponse,
} from "./messages.js";
import {
  EMPTY,
  MAX_DEPTH,
  type NativeBufferMethods,
  type ProcessingModeWire,
  type ProcessingResponseWire,
  type ProtoDuration,
  TWO_POW_32,
  TWO_POW_63,
} from "./wire.js";

// Encoder. Same module-state design as the decoder; the only user code it could run is a getter on the message,
// and a getter that re-enters the encoder is refused instead of corrupting the shared size cache.

/** Pre-order byte lengths of nested messages and strings, filled by the size pass, replayed by the write pass. */
const slots: number[] = [];
let slotCount = 0;
let slotRead = 0;
let out: Buffer = EMPTY;
let outNative: NativeBufferMethods = EMPTY as unknown as NativeBufferMethods;
let wpos = 0;
let encoding = false;
/** Typical responses use < 50 slots; beyond this the cache is dropped after the call instead of kept. */
const MAX_RETAINED_SLOTS = 4096;

/** Strings and byte fields up to this size are copied in JS: cheaper than TypedArray#set / utf8Write calls. */
const SHORT_COPY = 32;

/**
 * Encodes one ProcessingResponse into a single exactly-sized Buffer. Throws a TypeError naming the field when a
 * value has the wrong JS type.
 */
export function encodeProcessingResponse(msg: ProcessingResponseWire): Buffer {
  if (encoding) throw new Error("encodeProcessingResponse: re-entered from a getter on the message being encoded");
  if (msg === null || typeof msg !== "object") throw new TypeError("ProcessingResponse: expected an object");
  encoding = true;
  try {
    slotCount = 0;
    const size = sizeProcessingResponse(msg);
    out = Buffer.allocUnsafe(size);
    outNative = out as unknown as NativeBufferMethods;
    wpos = 0;
    slotRead = 0;
    writeProcessingResponse(msg);
    // A getter returning different values in the two passes would leave stale allocUnsafe bytes: never send those.
    if (wpos !== size || slotRead !== slotCount) {
      throw new Error(`encodeProcessingResponse: message changed while encoding (${wpos} of ${size} bytes)`);
    }
    return out;
  } finally {
    encoding = false;
    out = EMPTY;
    outNative = EMPTY as unknown as NativeBufferMethods;
    // One huge Struct must not pin a huge size cache for the life of the process.
    if (slots.length > MAX_RETAINED_SLOTS) slots.length = 0;
  }
}

// --- size helpers --------------------------------------------------------------------------------------------

function varintSize(v: number): number {
  return v < 0x80 ? 1 : v < 0x4000 ? 2 : v < 0x200000 ? 3 : v < 0x10000000 ? 4 : 5;
}

/** int64 as protobufjs's Long.fromValue(number): truncated toward zero, NaN → 0, clamped to the int64 range. */
let hi64 = 0;
let lo64 = 0;
function splitInt64(v: number): void {
  if (Number.isNaN(v)) v = 0;
  if (v >= TWO_POW_63) {
    lo64 = 0xffffffff;
    hi64 = 0x7fffffff;
    return;
  }
  if (v <= -TWO_POW_63) {
    lo64 = 0;
    hi64 = 0x80000000;
    return;
  }
  const negative = v < 0;
  if (negative) v = -v;
  let lo = v >>> 0;
  let hi = ((v - lo) / TWO_POW_32) >>> 0;
  if (negative) {
    hi = ~hi >>> 0;
    lo = ~lo >>> 0;
    if (++lo > 0xffffffff) {
      lo = 0;
      if (++hi > 0xffffffff) hi = 0;
    }
  }
  lo64 = lo;
  hi64 = hi;
}

function varint64Size(): number {
  if (hi64 === 0) return varintSize(lo64);
  // 32 low bits + every 7 bits of the high part beyond them.
  let size = 5;
  let hi = hi64 >>> 3;
  while (hi !== 0) {
    size++;
    hi >>>= 7;
  }
  return size;
}

/** Size of an int64-valued number (Duration.seconds). */
function int64Size(v: number): number {
  splitInt64(v);
  return varint64Size();
}

/**
 * Size of an enum/int32 value the way protobufjs's Writer#int32 writes it: negatives as 10-byte sign-extended
 * varints, others as uint32 (`>>> 0`, which also truncates fractions).
 */
function int32Size(value: number): number {
  const v = value | 0; // protobufjs's Writer#int32 truncates to int32 first
  return v < 0 ? int64Size(v) : varintSize(v >>> 0);
}

/** Bytes for a length-delimited field with a 1-byte tag whose payload is `size`. */
function delimited(size: number): number {
  return 1 + varintSize(size) + size;
}

/** Reserves the next slot for a nested message; call BEFORE sizing its children so slots stay in pre-order. */
function reserve(): number {
  return slotCount++;
}

function nested(slot: number, size: number): number {
  slots[slot] = size;
  return delimited(size);
}

function stringField(s: unknown, path: string): number {
  if (typeof s !== "string") throw new TypeError(`ProcessingResponse: ${path} expected a string, got ${typeName(s)}`);
  // A C++ fast-API call, cheaper than a JS scan even for short strings (measured).
  const len = Buffer.byteLength(s, "utf8");
  slots[slotCount++] = len;
  return delimited(len);
}

function bytesField(b: unknown, path: string): number {
  if (!(b instanceof Uint8Array))
    throw new TypeError(`ProcessingResponse: ${path} expected a Buffer or Uint8Array, got ${typeName(b)}`);
  return delimited(b.length);
}

function numberOf(v: unknown, path: string): number {
  if (typeof v !== "number") throw new TypeError(`ProcessingResponse: ${path} expected a number, got ${typeName(v)}`);
  return v;
}

function objectOf<T>(v: T, path: string): T {
  if (typeof v !== "object" || v === null)
    throw new TypeError(`ProcessingResponse: ${path} expected an object, got ${typeName(v)}`);
  return v;
}

function arrayOf<T>(v: readonly T[], path: string): readonly T[] {
  if (!Array.isArray(v)) throw new TypeError(`ProcessingResponse: ${path} expected an array, got ${typeName(v)}`);
  return v;
}

function typeName(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "array";
  return typeof v;
}

// --- size pass (validates; error names are static "Message.field" strings so the hot path builds none) --------

function sizeProcessingResponse(m: ProcessingResponseWire): number {
  let n = 0;
  if (m.request_headers != null) {
    n += nested(reserve(), sizeCommonPhase(objectOf(m.request_headers, "ProcessingResponse.request_headers")));
  }
  if (m.response_headers != null) {
    n += nested(reserve(), sizeCommonPhase(objectOf(m.response_headers, "ProcessingResponse.response_headers")));
  }
  if (m.request_body != null) {
    n += nested(reserve(), sizeCommonPhase(objectOf(m.request_body, "ProcessingResponse.request_body")));
  }
  if (m.response_body != null) {
    n += nested(reserve(), sizeCommonPhase(objectOf(m.response_body, "ProcessingResponse.response_body")));
  }
  if (m.request_trailers != null) {
    n += nested(reserve(), sizeTrailersResponse(objectOf(m.request_trailers, "ProcessingResponse.request_trailers")));
  }
  if (m.response_trailers != null) {
    const trailers = objectOf(m.response_trailers, "ProcessingResponse.response_trailers");
    n += nested(reserve(), sizeTrailersResponse(trailers));
  }
  if (m.immediate_response != null) {
    const immediate = objectOf(m.immediate_response, "ProcessingResponse.immediate_response");
    n += nested(reserve(), sizeImmediateResponse(immediate));
  }
  if (m.dynamic_metadata != null) {
    n += nested(reserve(), sizeStruct(objectOf(m.dynamic_metadata, "ProcessingResponse.dynamic_metadata"), 1));
  }
  if (m.mode_override != null) {
    n += nested(reserve(), sizeProcessingMode(objectOf(m.mode_override, "ProcessingResponse.mode_override")));
  }
  if (m.override_message_timeout != null) {
    const timeout = objectOf(m.override_message_timeout, "ProcessingResponse.override_message_timeout");
    n += nested(reserve(), sizeDuration(timeout));
  }
  return n;
}

/** HeadersResponse and BodyResponse: `CommonResponse response = 1`. */
function sizeCommonPhase(m: { response?: CommonResponse }): number {
  if (m.response == null) return 0;
  return nested(reserve(), sizeCommonResponse(objectOf(m.response, "HeadersResponse/BodyResponse.response")));
}

function sizeCommonResponse(m: CommonResponse): number {
  let n = 0;
  if (m.status != null) n += 1 + int32Size(numberOf(m.status, "CommonResponse.status"));
  if (m.header_mutation != null) {
    n += nested(reserve(), sizeHeaderMutation(objectOf(m.header_mutation, "CommonResponse.header_mutation")));
  }
  if (m.body_mutation != null) {
    n += nested(reserve(), sizeBodyMutation(objectOf(m.body_mutation, "CommonResponse.body_mutation")));
  }
  if (m.trailers != null) n += nested(reserve(), sizeHeaderMap(objectOf(m.trailers, "CommonResponse.trailers")));
  if (m.clear_route_cache != null) n += 2;
  return n;
}

function sizeHeaderMutation(m: HeaderMutation): number {
  let n = 0;
  const set = m.set_headers;
  if (set != null) {
    arrayOf(set, "HeaderMutation.set_headers");
    for (let i = 0; i < set.length; i++) {
      n += nested(reserve(), sizeHeaderValueOption(objectOf(set[i]!, "HeaderMutation.set_headers[]")));
    }
  }
  const remove = m.remove_headers;
  if (remove != null) {
    arrayOf(remove, "HeaderMutation.remove_headers");
    for (let i = 0; i < remove.length; i++) n += stringField(remove[i], "HeaderMutation.remove_headers[]");
  }
  return n;
}

function sizeHeaderValueOption(m: HeaderValueOption): number {
  let n = 0;
  if (m.header != null) n += nested(reserve(), sizeHeaderValue(objectOf(m.header, "HeaderValueOption.header")));
  if (m.append != null) {
    // google.protobuf.BoolValue: `bool value = 1`.
    n += delimited(objectOf(m.append, "HeaderValueOption.append").value != null ? 2 : 0);
  }
  if (m.append_action != null) n += 1 + int32Size(numberOf(m.append_action, "HeaderValueOption.append_action"));
  if (m.keep_empty_value != null) n += 2;
  return n;
}

function sizeHeaderValue(m: HeaderValue): number {
  let n = 0;
  if (m.key != null) n += stringField(m.key, "HeaderValue.key");
  if (m.value != null) n += stringField(m.value, "HeaderValue.value");
  if (m.raw_value != null) n += bytesField(m.raw_value, "HeaderValue.raw_value");
  return n;
}

function sizeHeaderMap(m: HeaderMap): number {
  let n = 0;
  const headers = m.headers;
  if (headers != null) {
    arrayOf(headers, "HeaderMap.headers");
    for (let i = 0; i < headers.length; i++) {
      n += nested(reserve(), sizeHeaderValue(objectOf(headers[i]!, "HeaderMap.headers[]")));
    }
  }
  return n;
}

function sizeBodyMutation(m: BodyMutation): number {
  let n = 0;
  if (m.body != null) n += bytesField(m.body, "BodyMutation.body");
  if (m.clear_body != null) n += 2;
  if (m.streamed_response != null) {
    const streamed = objectOf(m.streamed_response, "BodyMutation.streamed_response");
    let size = 0;
    if (streamed.body != null) size += bytesField(streamed.body, "StreamedBodyResponse.body");
    if (streamed.end_of_stream != null) size += 2;
    n += nested(reserve(), size);
  }
  return n;
}

function sizeTrailersResponse(m: TrailersResponse): number {
  if (m.header_mutation == null) return 0;
  return nested(reserve(), sizeHeaderMutation(objectOf(m.header_mutation, "TrailersResponse.header_mutation")));
}

function sizeImmediateResponse(m: ImmediateResponse): number {
  let n = 0;
  if (m.status != null) {
    const code = objectOf(m.status, "ImmediateResponse.status").code;
    // envoy.type.v3.HttpStatus: `int32 code = 1` (protobufjs's fromObject: `code | 0`).
    n += delimited(code != null ? 1 + int32Size(numberOf(code, "HttpStatus.code") | 0) : 0);
  }
  if (m.headers != null) n += nested(reserve(), sizeHeaderMutation(objectOf(m.headers, "ImmediateResponse.headers")));
  if (m.body != null) n += bytesField(m.body, "ImmediateResponse.body");
  if (m.grpc_status != null) {
    const status = objectOf(m.grpc_status, "ImmediateResponse.grpc_status").status;
    // GrpcStatus: `uint32 status = 1` (protobufjs's fromObject: `status >>> 0`).
    n += delimited(status != null ? 1 + varintSize(numberOf(status, "GrpcStatus.status") >>> 0) : 0);
  }
  if (m.details != null) n += stringField(m.details, "ImmediateResponse.details");
  return n;
}

function sizeProcessingMode(m: ProcessingModeWire): number {
  let n = 0;
  if (m.request_header_mode != null) {
    n += 1 + int32Size(numberOf(m.request_header_mode, "ProcessingMode.request_header_mode"));
  }
  if (m.response_header_mode != null) {
    n += 1 + int32Size(numberOf(m.response_header_mode, "ProcessingMode.response_header_mode"));
  }
  if (m.request_body_mode != null) {
    n += 1 + int32Size(numberOf(m.request_body_mode, "ProcessingMode.request_body_mode"));
  }
  if (m.response_body_mode != null) {
    n += 1 + int32Size(numberOf(m.response_body_mode, "ProcessingMode.response_body_mode"));
  }
  if (m.request_trailer_mode != null) {
    n += 1 + int32Size(numberOf(m.request_trailer_mode, "ProcessingMode.request_trailer_mode"));
  }
  if (m.response_trailer_mode != null) {
    n += 1 + int32Size(numberOf(m.response_trailer_mode, "ProcessingMode.response_trailer_mode"));
  }
  return n;
}

function sizeDuration(m: ProtoDuration): number {
  let n = 0;
  if (m.seconds != null) n += 1 + int64Size(Math.trunc(numberOf(m.seconds, "Duration.seconds")));
  if (m.nanos != null) n += 1 + int32Size(numberOf(m.nanos, "Duration.nanos") | 0);
  return n;
}

function sizeStruct(m: ProtoStruct, depth: number): number {
  if (depth > MAX_DEPTH) throw new RangeError(`ProcessingResponse: Struct nested deeper than ${MAX_DEPTH} messages`);
  const fields = m.fields;
  if (fields == null) return 0;
  objectOf(fields, "Struct.fields");
  let n = 0;
  const keys = Object.keys(fields);
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i]!;
    // Entry = key (field 1) + Value (field 2); the entry, its key and its Value each take a slot, in that order.
    const entry = reserve();
    let entrySize = stringField(key, "Struct.fields key");
    entrySize += nested(reserve(), sizeValue(objectOf(fields[key]!, "Struct.fields value"), depth + 1));
    n += nested(entry, entrySize);
  }
  return n;
}

function sizeListValue(m: ProtoListValue, depth: number): number {
  if (depth > MAX_DEPTH) throw new RangeError(`ProcessingResponse: ListValue nested deeper than ${MAX_DEPTH} messages`);
  const values = m.values;
  if (values == null) return 0;
  arrayOf(values, "ListValue.values");
  let n = 0;
  for (let i = 0; i < values.length; i++) {
    n += nested(reserve(), sizeValue(objectOf(values[i]!, "ListValue.values[]"), depth + 1));
  }
  return n;
}

function sizeValue(m: ProtoValue, depth: number): number {
  if (depth > MAX_DEPTH) throw new RangeError(`ProcessingResponse: Value nested deeper than ${MAX_DEPTH} messages`);
  let n = 0;
  if (m.nullValue != null) n += 1 + int32Size(numberOf(m.nullValue, "Value.nullValue"));
  if (m.numberValue != null) {
    numberOf(m.numberValue, "Value.numberValue");
    n += 9;
  }
  if (m.stringValue != null) n += stringField(m.stringValue, "Value.stringValue");
  if (m.boolValue != null) n += 2;
  if (m.structValue != null) {
    n += nested(reserve(), sizeStruct(objectOf(m.structValue, "Value.structValue"), depth + 1));
  }
  if (m.listValue != null) {
    n += nested(reserve(), sizeListValue(objectOf(m.listValue, "Value.listValue"), depth + 1));
  }
  return n;
}

// --- write helpers -------------------------------------------------------------------------------------------

function writeVarint(v: number): void {
  while (v > 0x7f) {
    out[wpos++] = (v & 0x7f) | 0x80;
    v >>>= 7;
  }
  out[wpos++] = v;
}

/** Writes the int64 held in lo64/hi64 (protobufjs's writeVarint64). */
function writeVarint64(): void {
  let lo = lo64;
  let hi = hi64;
  while (hi !== 0) {
    out[wpos++] = (lo & 0x7f) | 0x80;
    lo = ((lo >>> 7) | (hi << 25)) >>> 0;
    hi >>>= 7;
  }
  while (lo > 0x7f) {
    out[wpos++] = (lo & 0x7f) | 0x80;
    lo >>>= 7;
  }
  out[wpos++] = lo;
}

function writeInt32(value: number): void {
  const v = value | 0;
  if (v < 0) {
    splitInt64(v);
    writeVarint64();
  } else writeVarint(v >>> 0);
}

/** Tag plus the cached length of the next nested message; the caller then writes the payload. */
function writeNested(tag: number): void {
  out[wpos++] = tag;
  writeVarint(slots[slotRead++]!);
}

function writeString(tag: number, s: string): void {
  out[wpos++] = tag;
  const len = slots[slotRead++]!;
  writeVarint(len);
  // UTF-8 length == UTF-16 length exactly when every code unit is ASCII (any other unit takes 2+ bytes, a
  // surrogate pair 4 for 2 units), and ASCII is written fastest as bytes.
  if (len !== s.length) {
    // A getter that returned a different string in the size pass must not leave stale pool bytes on the wire.
    if (outNative.utf8Write(s, wpos, len) !== len)
      throw new Error("encodeProcessingResponse: a string changed while encoding");
  } else if (len <= SHORT_COPY) {
    // Locals: the loop must not reload module state per byte.
    const o = out;
    const at = wpos;
    for (let i = 0; i < len; i++) o[at + i] = s.charCodeAt(i);
  } else outNative.latin1Write(s, wpos, len);
  wpos += len;
}

function writeBytes(tag: number, b: Uint8Array): void {
  out[wpos++] = tag;
  const len = b.length;
  writeVarint(len);
  if (len <= SHORT_COPY) {
    const o = out;
    const at = wpos;
    for (let i = 0; i < len; i++) o[at + i] = b[i]!;
  } else out.set(b, wpos);
  wpos += len;
}

function writeBool(tag: number, v: unknown): void {
  out[wpos++] = tag;
  // protobufjs's fromObject: Boolean(value).
  out[wpos++] = v ? 1 : 0;
}

// --- write pass (same walk as the size pass, no validation) ---------------------------------------------------

function writeProcessingResponse(m: ProcessingResponseWire): void {
  if (m.request_headers != null) writeCommonPhase(0x0a, m.request_headers);
  if (m.response_headers != null) writeCommonPhase(0x12, m.response_headers);
  if (m.request_body != null) writeCommonPhase(0x1a, m.request_body);
  if (m.response_body != null) writeCommonPhase(0x22, m.response_body);
  if (m.request_trailers != null) writeTrailersResponse(0x2a, m.request_trailers);
  if (m.response_trailers != null) writeTrailersResponse(0x32, m.response_trailers);
  if (m.immediate_response != null) writeImmediateResponse(m.immediate_response);
  if (m.dynamic_metadata != null) {
    writeNested(0x42);
    writeStruct(m.dynamic_metadata);
  }
  if (m.mode_override != null) writeProcessingMode(m.mode_override);
  if (m.override_message_timeout != null) writeDuration(m.override_message_timeout);
}

function writeCommonPhase(tag: number, m: { response?: CommonResponse }): void {
  writeNested(tag);
  if (m.response != null) {
    writeNested(0x0a);
    writeCommonResponse(m.response);
  }
}

function writeCommonResponse(m: CommonResponse): void {
  if (m.status != null) {
    out[wpos++] = 0x08;
    writeInt32(m.status);
  }
  if (m.header_mutation != null) {
    writeNested(0x12);
    writeHeaderMutation(m.header_mutation);
  }
  if (m.body_mutation != null) {
    writeNested(0x1a);
    writeBodyMutation(m.body_mutation);
  }
  if (m.trailers != null) {
    writeNested(0x22);
    writeHeaderMap(m.trailers);
  }
  if (m.clear_route_cache != null) writeBool(0x28, m.clear_route_cache);
}

function writeHeaderMutation(m: HeaderMutation): void {
  const set = m.set_headers;
  if (set != null) {
    for (let i = 0; i < set.length; i++) {
      writeNested(0x0a);
      writeHeaderValueOption(set[i]!);
    }
  }
  const remove = m.remove_headers;
  if (remove != null) {
    for (let i = 0; i < remove.length; i++) writeString(0x12, remove[i]!);
  }
}

function writeHeaderValueOption(m: HeaderValueOption): void {
  if (m.header != null) {
    writeNested(0x0a);
    writeHeaderValue(m.header);
  }
  if (m.append != null) {
    out[wpos++] = 0x12;
    if (m.append.value != null) {
      out[wpos++] = 2;
      writeBool(0x08, m.append.value);
    } else out[wpos++] = 0;
  }
  if (m.append_action != null) {
    out[wpos++] = 0x18;
    writeInt32(m.append_action);
  }
  if (m.keep_empty_value != null) writeBool(0x20, m.keep_empty_value);
}

function writeHeaderValue(m: HeaderValue): void {
  if (m.key != null) writeString(0x0a, m.key);
  if (m.value != null) writeString(0x12, m.value);
  if (m.raw_value != null) writeBytes(0x1a, m.raw_value);
}

function writeHeaderMap(m: HeaderMap): void {
  const headers = m.headers;
  if (headers != null) {
    for (let i = 0; i < headers.length; i++) {
      writeNested(0x0a);
      writeHeaderValue(headers[i]!);
    }
  }
}

function writeBodyMutation(m: BodyMutation): void {
  if (m.body != null) writeBytes(0x0a, m.body);
  if (m.clear_body != null) writeBool(0x10, m.clear_body);
  if (m.streamed_response != null) {
    writeNested(0x1a);
    const s = m.streamed_response;
    if (s.body != null) writeBytes(0x0a, s.body);
    if (s.end_of_stream != null) writeBool(0x10, s.end_of_stream);
  }
}

function writeTrailersResponse(tag: number, m: TrailersResponse): void {
  writeNested(tag);
  if (m.header_mutation != null) {
    writeNested(0x0a);
    writeHeaderMutation(m.header_mutation);
  }
}

function writeImmediateResponse(m: ImmediateResponse): void {
  writeNested(0x3a);
  if (m.status != null) {
    out[wpos++] = 0x0a;
    const code = m.status.code;
    if (code != null) {
      const v = code | 0;
      out[wpos++] = 1 + int32Size(v);
      out[wpos++] = 0x08;
      writeInt32(v);
    } else out[wpos++] = 0;
  }
  if (m.headers != null) {
    writeNested(0x12);
    writeHeaderMutation(m.headers);
  }
  if (m.body != null) writeBytes(0x1a, m.body);
  if (m.grpc_status != null) {
    out[wpos++] = 0x22;
    const status = m.grpc_status.status;
    if (status != null) {
      const v = status >>> 0;
      out[wpos++] = 1 + varintSize(v);
      out[wpos++] = 0x08;
      writeVarint(v);
    } else out[wpos++] = 0;
  }
  if (m.details != null) writeString(0x2a, m.details);
}

function writeProcessingMode(m: ProcessingModeWire): void {
  writeNested(0x4a);
  if (m.request_header_mode != null) {
    out[wpos++] = 0x08;
    writeInt32(m.request_header_mode);
  }
  if (m.response_header_mode != null) {
    out[wpos++] = 0x10;
    writeInt32(m.response_header_mode);
  }
  if (m.request_body_mode != null) {
    out[wpos++] = 0x18;
    writeInt32(m.request_body_mode);
  }
  if (m.response_body_mode != null) {
    out[wpos++] = 0x20;
    writeInt32(m.response_body_mode);
  }
  if (m.request_trailer_mode != null) {
    out[wpos++] = 0x28;
    writeInt32(m.request_trailer_mode);
  }
  if (m.response_trailer_mode != null) {
    out[wpos++] = 0x30;
    writeInt32(m.response_trailer_mode);
  }
}

function writeDuration(m: ProtoDuration): void {
  writeNested(0x52);
  if (m.seconds != null) {
    out[wpos++] = 0x08;
    splitInt64(Math.trunc(m.seconds));
    writeVarint64();
  }
  if (m.nanos != null) {
    out[wpos++] = 0x10;
    writeInt32(m.nanos | 0);
  }
}

function writeStruct(m: ProtoStruct): void {
  const fields = m.fields;
  if (fields == null) return;
  const keys = Object.keys(fields);
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i]!;
    writeNested(0x0a);
    writeString(0x0a, key);
    writeNested(0x12);
    writeValue(fields[key]!);
  }
}

function writeValue(m: ProtoValue): void {
  if (m.nullValue != null) {
    out[wpos++] = 0x08;
    writeInt32(m.nullValue);
  }
  if (m.numberValue != null) {
    out[wpos++] = 0x11;
    out.writeDoubleLE(m.numberValue, wpos);
    wpos += 8;
  }
  if (m.stringValue != null) writeString(0x1a, m.stringValue);
  if (m.boolValue != null) writeBool(0x20, m.boolValue);
  if (m.structValue != null) {
    writeNested(0x2a);
    writeStruct(m.structValue);
  }
  if (m.listValue != null) {
    writeNested(0x32);
    const values = m.listValue.values;
    if (values != null) {
      for (let i = 0; i < values.length; i++) {
        writeNested(0x0a);
        writeValue(values[i]!);
      }
    }
  }
}
