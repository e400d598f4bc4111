/**
 * What the ext_proc codec's decoder (decode.ts) and encoder (encode.ts) share: the wire shapes of the fields
 * messages.ts leaves untyped, the protobuf limits both enforce, and the wire error. The two halves share nothing
 * else. codec.ts is their one door (docs/design/ext-proc-protocol.md §2).
 */
import type { HttpHeaders, Metadata, ProcessingRequest, ProcessingResponse, ProtoStruct } from "./messages.js";

// ---------------------------------------------------------------------------------------------------------------
// Wire shapes of .proto fields that messages.ts does not type (switchyard does not read or set them), so that
// every field of ProcessingRequest/ProcessingResponse round-trips.

/** google.protobuf.Any as protobufjs's toObject yields it without `json`: the raw type URL and payload. */
export interface ProtoAny {
  type_url?: string;
  value?: Buffer;
}

export interface HttpHeadersWire extends HttpHeaders {
  /** Deprecated by Envoy and unused; decoded so nothing on the wire is lost. */
  attributes?: Record<string, ProtoStruct>;
}

export interface MetadataWire extends Metadata {
  typed_filter_metadata?: Record<string, ProtoAny>;
}

/** What decodeProcessingRequest returns: ProcessingRequest plus the fields messages.ts leaves untyped. */
export interface ProcessingRequestWire extends ProcessingRequest {
  request_headers?: HttpHeadersWire;
  response_headers?: HttpHeadersWire;
  metadata_context?: MetadataWire;
}

/** envoy.extensions.filters.http.ext_proc.v3.ProcessingMode (enums as numbers). */
export interface ProcessingModeWire {
  request_header_mode?: number;
  response_header_mode?: number;
  request_body_mode?: number;
  response_body_mode?: number;
  request_trailer_mode?: number;
  response_trailer_mode?: number;
}

/** google.protobuf.Duration; `seconds` is int64, a number under `longs: Number`. */
export interface ProtoDuration {
  seconds?: number;
  nanos?: number;
}

/**
 * What encodeProcessingResponse accepts: ProcessingResponse plus the override fields
 * (docs/design/ext-proc-protocol.md §4.4, §4.5).
 */
export interface ProcessingResponseWire extends ProcessingResponse {
  mode_override?: ProcessingModeWire;
  override_message_timeout?: ProtoDuration;
}

// ---------------------------------------------------------------------------------------------------------------
// Shared wire constants

/** protobufjs's util.recursionLimit (protoc's default too): a message nested deeper than this is rejected. */
export const MAX_DEPTH = 100;
export const TWO_POW_32 = 4294967296;
/** 2^63, exactly representable as a double: the int64 range ends just below it. */
export const TWO_POW_63 = 2 ** 63;

/** Malformed protobuf input. A RangeError like protobufjs's "index out of range", so callers can treat both alike. */
export class ProtobufWireError extends RangeError {
  override readonly name = "ProtobufWireError";
  /** Byte offset in the input where the problem was found. */
  readonly offset: number;

  constructor(detail: string, offset: number) {
    super(`invalid ProcessingRequest: ${detail} at byte ${offset}`);
    this.offset = offset;
  }
}

/** Node's Buffer has these natively; @types/node does not declare them. protobufjs uses utf8Slice the same way. */
export interface NativeBufferMethods {
  utf8Slice(start: number, end: number): string;
  utf8Write(value: string, offset: number, length: number): number;
  latin1Write(value: string, offset: number, length: number): number;
}

/** The empty buffer the decoder's cursor and the encoder's output rest on between calls. */
export const EMPTY = Buffer.alloc(0);
