/**
 * The ext_proc request decoder: `decodeProcessingRequest` (Envoy → us) reads the wire straight into the plain
 * objects messages.ts describes, in one pass, where proto-loader's deserializer runs protobufjs `decode` +
 * `toObject` with an intermediate message object (docs/design/ext-proc-protocol.md §2).
 *
 * Output contract (decode): exactly what proto-loader yields with LOADER_OPTIONS (proto.ts) for the same bytes —
 * snake_case keys for Envoy's messages, camelCase for google.protobuf.Struct/Value/ListValue (protobufjs's built-in
 * descriptors), oneof discriminators (`request`, `kind`), absent fields absent (not `undefined`-valued keys),
 * repeated fields always present as arrays (`arrays: true`, even when empty), maps present only when non-empty
 * (`objects` is off), enums as numbers, int64 as numbers, bytes as Buffer views into the input (protobufjs's
 * BufferReader slices with Buffer#slice, a view — so do we: copying a 62000-byte chunk would cost more than the
 * whole decode, and a view keeps the input alive no longer than the caller holds the field). Header names and map
 * keys are interned (see readKey); strings are immutable, so sharing them is invisible to callers.
 *
 * protobufjs quirks kept on purpose (so both decoders agree on every well-formed input):
 * - A repeated non-repeated field: last one wins — for embedded messages too. protobufjs REPLACES the earlier
 *   message instead of merging it as the protobuf spec says; Envoy never repeats a singular field, and matching
 *   keeps the differential tests exact.
 * - Two members of one oneof on the wire: protobufjs keeps both members and its toObject sets the discriminator to
 *   the member declared LAST in the .proto (not the one that came last on the wire). Mirrored with a rank.
 * - Map entries: key defaults to "", a repeated key keeps the last value, `__proto__` becomes an own property.
 * - Nesting deeper than 100 messages (protobufjs's recursionLimit, counted the same way) throws.
 *
 * Deliberate differences, all on malformed input only (each is what protoc's C++ and Go runtimes do, or safer):
 * - A known field number with the wrong wire type is skipped as an unknown field; protobufjs ignores the wire
 *   type and misreads the payload (e.g. a length-delimited `observability_mode` would consume its length byte).
 * - Groups (wire types 3/4), field number 0 and varints longer than 10 bytes throw; protobufjs skips groups and
 *   field 0, and reads 5 bytes then blindly skips 5 more of an overlong varint.
 * - A string whose length runs past its enclosing message throws; protobufjs clamps it silently to the message end.
 * - A tag or length prefix wider than 32 bits throws; protobufjs keeps the low 32 bits (a length of 2^32 + 5 reads
 *   as 5).
 * - A map entry without a value yields the empty message `{}` (proto3 default); protobufjs stores `null` and its
 *   toObject then throws a TypeError ("Cannot read properties of null").
 * - `bool` is true when any of the varint's 64 bits is set; protobufjs looks at the low 32 only (so 2^32 → false).
 */
import type {
  HeaderMap,
  HeaderValue,
  HttpBody,
  HttpTrailers,
  ProtocolConfiguration,
  ProtoListValue,
  ProtoStruct,
  ProtoValue,
  RequestKind,
} from "./messages.js";
import {
  EMPTY,
  type HttpHeadersWire,
  MAX_DEPTH,
  type MetadataWire,
  type NativeBufferMethods,
  type ProcessingRequestWire,
  type ProtoAny,
  ProtobufWireError,
} from "./wire.js";

// Decoder. The cursor is module state: decoding is synchronous and calls no user code, so it cannot re-enter, and
// module-level `let`s are cheaper to reach than fields of a reader object passed through every call.

let buf: Buffer = EMPTY;
let native: NativeBufferMethods = EMPTY as unknown as NativeBufferMethods;
let pos = 0;

/**
 * Decodes one ProcessingRequest. Throws ProtobufWireError (a RangeError) on malformed input; never reads out of
 * bounds and never loops without consuming input.
 */
export function decodeProcessingRequest(input: Buffer | Uint8Array): ProcessingRequestWire {
  if (!Buffer.isBuffer(input)) {
    if (!((input as unknown) instanceof Uint8Array)) {
      throw new TypeError("decodeProcessingRequest: expected a Buffer or Uint8Array");
    }
    // A view, so bytes fields still alias the caller's memory exactly as they do for a Buffer.
    input = Buffer.from(input.buffer, input.byteOffset, input.byteLength);
  }
  buf = input as Buffer;
  native = input as unknown as NativeBufferMethods;
  pos = 0;
  try {
    return readProcessingRequest(buf.length);
  } finally {
    // Do not keep the last (possibly 16 MiB) message alive until the next call.
    buf = EMPTY;
    native = EMPTY as unknown as NativeBufferMethods;
  }
}

function truncated(what: string, at: number, end: number): ProtobufWireError {
  return new ProtobufWireError(`truncated ${what} (enclosing message ends at byte ${end})`, at);
}

/** The low 32 bits of a varint, unsigned (protobufjs's uint32()); int32/enum callers apply `| 0`. */
function readVarint32(end: number): number {
  let p = pos;
  if (p < end) {
    const first = buf[p]!;
    if (first < 0x80) {
      pos = p + 1;
      return first;
    }
  }
  const start = p;
  let value = 0;
  for (let shift = 0; shift < 70; shift += 7) {
    if (p >= end) throw truncated("varint", start, end);
    const b = buf[p++]!;
    // `<<` keeps 32 bits, so shift 28 contributes bits 28..31 and later bytes (bits 35..63) are dropped.
    if (shift < 32) value |= (b & 0x7f) << shift;
    if (b < 0x80) {
      pos = p;
      return value >>> 0;
    }
  }
  throw new ProtobufWireError("varint longer than 10 bytes", start);
}

/** A bool is the whole 64-bit varint != 0 (protoc semantics). */
function readBool(end: number): boolean {
  let p = pos;
  if (p < end) {
    const first = buf[p]!;
    if (first < 0x80) {
      pos = p + 1;
      return first !== 0;
    }
  }
  const start = p;
  let any = 0;
  for (let i = 0; i < 10; i++) {
    if (p >= end) throw truncated("varint", start, end);
    const b = buf[p++]!;
    any |= b & 0x7f;
    if (b < 0x80) {
      pos = p;
      return any !== 0;
    }
  }
  throw new ProtobufWireError("varint longer than 10 bytes", start);
}

/**
 * A tag or length prefix is a 32-bit value: more than 5 bytes, or a 5th byte with bits above bit 31, is refused as
 * protoc and Go do. (readVarint32 alone keeps the low 32 bits, which is right for int32/enum values but would turn
 * a length of 2^32 + 5 into 5.)
 */
function readUint32Strict(end: number, what: string): number {
  const at = pos;
  const value = readVarint32(end);
  const used = pos - at;
  if (used > 5 || (used === 5 && buf[pos - 1]! > 0x0f)) throw new ProtobufWireError(`${what} exceeds 32 bits`, at);
  return value;
}

function readTag(end: number): number {
  return readUint32Strict(end, "field tag");
}

/** Reads a length prefix and returns where the payload ends, checked against the enclosing message's end. */
function readLengthEnd(end: number): number {
  const at = pos;
  const length = readUint32Strict(end, "length prefix");
  if (length > end - pos) {
    throw new ProtobufWireError(`length ${length} runs past the enclosing message end (byte ${end})`, at);
  }
  return pos + length;
}

function readBytes(end: number): Buffer {
  const stop = readLengthEnd(end);
  const start = pos;
  pos = stop;
  return buf.subarray(start, stop);
}

function readString(end: number): string {
  const stop = readLengthEnd(end);
  const start = pos;
  pos = stop;
  // Invalid UTF-8 becomes U+FFFD, exactly as protobufjs (which calls the same utf8Slice) and Buffer#toString.
  return start === stop ? "" : native.utf8Slice(start, stop);
}

/**
 * Header names and map keys repeat on every request (":path", "content-type", "envoy.lb"), so short ASCII ones
 * are interned: a hit costs one hash-and-compare pass over the bytes instead of a string allocation through C++
 * (~3x cheaper measured). The table is small and direct-mapped: a collision just replaces the slot, so hostile
 * keys can only lower the hit rate, never grow memory.
 */
const INTERN_SLOTS = 1024;
const INTERN_MAX_BYTES = 40;
const internTable: string[] = new Array<string>(INTERN_SLOTS).fill("");

function readKey(end: number): string {
  const stop = readLengthEnd(end);
  const start = pos;
  pos = stop;
  const len = stop - start;
  if (len === 0) return "";
  if (len > INTERN_MAX_BYTES) return native.utf8Slice(start, stop);
  const bytes = buf;
  let hash = len;
  for (let i = start; i < stop; i++) {
    const c = bytes[i]!;
    if (c >= 0x80) return native.utf8Slice(start, stop);
    hash = Math.imul(hash ^ c, 0x01000193);
  }
  const slot = (hash ^ (hash >>> 15)) & (INTERN_SLOTS - 1);
  const cached = internTable[slot]!;
  if (cached.length === len) {
    let i = 0;
    while (i < len && cached.charCodeAt(i) === bytes[start + i]) i++;
    if (i === len) return cached;
  }
  const fresh = native.utf8Slice(start, stop);
  internTable[slot] = fresh;
  return fresh;
}

function readDouble(end: number): number {
  const at = pos;
  if (end - at < 8) throw truncated("double", at, end);
  pos = at + 8;
  return buf.readDoubleLE(at);
}

/** Skips a field switchyard does not know (or that has an unexpected wire type) by its wire type. */
function skipField(tag: number, tagAt: number, end: number): void {
  if (tag >>> 3 === 0) throw new ProtobufWireError("field number 0", tagAt);
  switch (tag & 7) {
    case 0:
      readVarint32(end);
      return;
    case 1:
      if (end - pos < 8) throw truncated("fixed64 field", pos, end);
      pos += 8;
      return;
    case 2:
      pos = readLengthEnd(end);
      return;
    case 5:
      if (end - pos < 4) throw truncated("fixed32 field", pos, end);
      pos += 4;
      return;
    case 3:
    case 4:
      throw new ProtobufWireError(`group (wire type ${tag & 7}, field ${tag >>> 3}) is not supported`, tagAt);
    default:
      throw new ProtobufWireError(`invalid wire type ${tag & 7} (field ${tag >>> 3})`, tagAt);
  }
}

function depthError(): ProtobufWireError {
  return new ProtobufWireError(`messages nested deeper than ${MAX_DEPTH}`, pos);
}

/** `__proto__` must become an own data property, not the object's prototype (protobufjs's util.makeProp). */
function setEntry<T>(target: Record<string, T>, key: string, value: T): void {
  if (key === "__proto__") {
    Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true });
  } else {
    target[key] = value;
  }
}

/** Oneof members of ProcessingRequest.request by field number (2..7); the rank is the declaration order. */
const REQUEST_KINDS: readonly RequestKind[] = [
  "request_headers",
  "request_headers",
  "request_headers",
  "response_headers",
  "request_body",
  "response_body",
  "request_trailers",
  "response_trailers",
];

function readProcessingRequest(end: number): ProcessingRequestWire {
  const msg: ProcessingRequestWire = {};
  let kind = 0;
  while (pos < end) {
    const tagAt = pos;
    const tag = readTag(end);
    switch (tag) {
      case 0x12: // 2 request_headers
        msg.request_headers = readHttpHeaders(readLengthEnd(end), 1);
        break;
      case 0x1a: // 3 response_headers
        msg.response_headers = readHttpHeaders(readLengthEnd(end), 1);
        break;
      case 0x22: // 4 request_body
        msg.request_body = readHttpBody(readLengthEnd(end));
        break;
      case 0x2a: // 5 response_body
        msg.response_body = readHttpBody(readLengthEnd(end));
        break;
      case 0x32: // 6 request_trailers
        msg.request_trailers = readHttpTrailers(readLengthEnd(end));
        break;
      case 0x3a: // 7 response_trailers
        msg.response_trailers = readHttpTrailers(readLengthEnd(end));
        break;
      case 0x42: // 8 metadata_context
        msg.metadata_context = readMetadata(readLengthEnd(end), 1);
        continue;
      case 0x4a: // 9 attributes: map<string, Struct>
        if (msg.attributes === undefined) msg.attributes = {};
        readStructEntry(msg.attributes, readLengthEnd(end), 1);
        continue;
      case 0x50: // 10 observability_mode
        msg.observability_mode = readBool(end);
        continue;
      case 0x5a: // 11 protocol_config
        msg.protocol_config = readProtocolConfiguration(readLengthEnd(end));
        continue;
      default:
        skipField(tag, tagAt, end);
        continue;
    }
    // Only the oneof members reach here: keep the member declared last, as protobufjs's toObject does.
    const field = tag >>> 3;
    if (field >= kind) {
      kind = field;
      msg.request = REQUEST_KINDS[field]!;
    }
  }
  return msg;
}

function readHttpHeaders(end: number, depth: number): HttpHeadersWire {
  const msg: HttpHeadersWire = {};
  while (pos < end) {
    const tagAt = pos;
    const tag = readTag(end);
    if (tag === 0x0a) msg.headers = readHeaderMap(readLengthEnd(end));
    else if (tag === 0x18) msg.end_of_stream = readBool(end);
    else if (tag === 0x12) {
      if (msg.attributes === undefined) msg.attributes = {};
      readStructEntry(msg.attributes, readLengthEnd(end), depth);
    } else skipField(tag, tagAt, end);
  }
  return msg;
}

function readHeaderMap(end: number): HeaderMap {
  const headers: HeaderValue[] = [];
  while (pos < end) {
    const tagAt = pos;
    const tag = readTag(end);
    if (tag === 0x0a) headers.push(readHeaderValue(readLengthEnd(end)));
    else skipField(tag, tagAt, end);
  }
  return { headers };
}

function readHeaderValue(end: number): HeaderValue {
  const msg: HeaderValue = {};
  while (pos < end) {
    const tagAt = pos;
    const tag = readTag(end);
    if (tag === 0x0a) msg.key = readKey(end);
    else if (tag === 0x1a) msg.raw_value = readBytes(end);
    else if (tag === 0x12) msg.value = readString(end);
    else skipField(tag, tagAt, end);
  }
  return msg;
}

function readHttpBody(end: number): HttpBody {
  const msg: HttpBody = {};
  while (pos < end) {
    const tagAt = pos;
    const tag = readTag(end);
    switch (tag) {
      case 0x0a:
        msg.body = readBytes(end);
        break;
      case 0x10:
        msg.end_of_stream = readBool(end);
        break;
      case 0x18:
        msg.end_of_stream_without_message = readBool(end);
        break;
      case 0x20:
        msg.grpc_message_compressed = readBool(end);
        break;
      default:
        skipField(tag, tagAt, end);
    }
  }
  return msg;
}

function readHttpTrailers(end: number): HttpTrailers {
  const msg: HttpTrailers = {};
  while (pos < end) {
    const tagAt = pos;
    const tag = readTag(end);
    if (tag === 0x0a) msg.trailers = readHeaderMap(readLengthEnd(end));
    else skipField(tag, tagAt, end);
  }
  return msg;
}

function readProtocolConfiguration(end: number): ProtocolConfiguration {
  const msg: ProtocolConfiguration = {};
  while (pos < end) {
    const tagAt = pos;
    const tag = readTag(end);
    if (tag === 0x08) msg.request_body_mode = readVarint32(end) | 0;
    else if (tag === 0x10) msg.response_body_mode = readVarint32(end) | 0;
    else if (tag === 0x18) msg.send_body_without_waiting_for_header_response = readBool(end);
    else skipField(tag, tagAt, end);
  }
  return msg;
}

function readMetadata(end: number, depth: number): MetadataWire {
  const msg: MetadataWire = {};
  while (pos < end) {
    const tagAt = pos;
    const tag = readTag(end);
    if (tag === 0x0a) {
      if (msg.filter_metadata === undefined) msg.filter_metadata = {};
      readStructEntry(msg.filter_metadata, readLengthEnd(end), depth);
    } else if (tag === 0x12) {
      if (msg.typed_filter_metadata === undefined) msg.typed_filter_metadata = {};
      readAnyEntry(msg.typed_filter_metadata, readLengthEnd(end));
    } else skipField(tag, tagAt, end);
  }
  return msg;
}

/** One `map<string, Struct>` entry of a message at `depth`; protobufjs decodes the value at depth + 1. */
function readStructEntry(target: Record<string, ProtoStruct>, end: number, depth: number): void {
  let key = "";
  let value: ProtoStruct | undefined;
  while (pos < end) {
    const tagAt = pos;
    const tag = readTag(end);
    if (tag === 0x0a) key = readKey(end);
    else if (tag === 0x12) value = readStruct(readLengthEnd(end), depth + 1);
    else skipField(tag, tagAt, end);
  }
  setEntry(target, key, value ?? {});
}

function readAnyEntry(target: Record<string, ProtoAny>, end: number): void {
  let key = "";
  let value: ProtoAny | undefined;
  while (pos < end) {
    const tagAt = pos;
    const tag = readTag(end);
    if (tag === 0x0a) key = readKey(end);
    else if (tag === 0x12) value = readAny(readLengthEnd(end));
    else skipField(tag, tagAt, end);
  }
  setEntry(target, key, value ?? {});
}

function readAny(end: number): ProtoAny {
  const msg: ProtoAny = {};
  while (pos < end) {
    const tagAt = pos;
    const tag = readTag(end);
    if (tag === 0x0a) msg.type_url = readString(end);
    else if (tag === 0x12) msg.value = readBytes(end);
    else skipField(tag, tagAt, end);
  }
  return msg;
}

function readStruct(end: number, depth: number): ProtoStruct {
  if (depth > MAX_DEPTH) throw depthError();
  const msg: ProtoStruct = {};
  while (pos < end) {
    const tagAt = pos;
    const tag = readTag(end);
    if (tag === 0x0a) {
      if (msg.fields === undefined) msg.fields = {};
      readValueEntry(msg.fields, readLengthEnd(end), depth);
    } else skipField(tag, tagAt, end);
  }
  return msg;
}

function readValueEntry(target: Record<string, ProtoValue>, end: number, depth: number): void {
  let key = "";
  let value: ProtoValue | undefined;
  while (pos < end) {
    const tagAt = pos;
    const tag = readTag(end);
    if (tag === 0x0a) key = readKey(end);
    else if (tag === 0x12) value = readValue(readLengthEnd(end), depth + 1);
    else skipField(tag, tagAt, end);
  }
  setEntry(target, key, value ?? {});
}

function readListValue(end: number, depth: number): ProtoListValue {
  if (depth > MAX_DEPTH) throw depthError();
  const values: ProtoValue[] = [];
  while (pos < end) {
    const tagAt = pos;
    const tag = readTag(end);
    if (tag === 0x0a) values.push(readValue(readLengthEnd(end), depth + 1));
    else skipField(tag, tagAt, end);
  }
  return { values };
}

function readValue(end: number, depth: number): ProtoValue {
  if (depth > MAX_DEPTH) throw depthError();
  const msg: ProtoValue = {};
  // Declaration rank of the last-declared member seen (see the oneof note at the top).
  let rank = 0;
  while (pos < end) {
    const tagAt = pos;
    const tag = readTag(end);
    switch (tag) {
      case 0x08:
        msg.nullValue = readVarint32(end) | 0;
        if (rank <= 1) {
          rank = 1;
          msg.kind = "nullValue";
        }
        break;
      case 0x11:
        msg.numberValue = readDouble(end);
        if (rank <= 2) {
          rank = 2;
          msg.kind = "numberValue";
        }
        break;
      case 0x1a:
        msg.stringValue = readString(end);
        if (rank <= 3) {
          rank = 3;
          msg.kind = "stringValue";
        }
        break;
      case 0x20:
        msg.boolValue = readBool(end);
        if (rank <= 4) {
          rank = 4;
          msg.kind = "boolValue";
        }
        break;
      case 0x2a:
        msg.structValue = readStruct(readLengthEnd(end), depth + 1);
        if (rank <= 5) {
          rank = 5;
          msg.kind = "structValue";
        }
        break;
      case 0x32:
        msg.listValue = readListValue(readLengthEnd(end), depth + 1);
        rank = 6;
        msg.kind = "listValue";
        break;
      default:
        skipField(tag, tagAt, end);
    }
  }
  return msg;
}
