/**
 * The ext_proc messages as `@grpc/proto-loader` yields them with LOADER_OPTIONS (proto.ts): our own messages keep
 * snake_case (`raw_value`, `end_of_stream`), oneofs add a discriminator (`msg.request === "request_body"`), bytes
 * are Buffers, absent scalars are undefined (`defaults: false`) and repeated fields are arrays. protobufjs's
 * built-in Struct/Value/ListValue use camelCase members (`structValue`, `stringValue`, `listValue`) even with
 * keepCase — writing `string_value` would silently encode nothing, so the builders below are the only place that
 * spells them.
 *
 * Field numbers live in the .proto files; docs/design/ext-proc-protocol.md §2 is the contract. These types never leave
 * src/extproc.
 */
import { BODY_CHUNK_BYTES, DESTINATION_ENDPOINT_HEADER, DESTINATION_METADATA_NAMESPACE } from "../common/constants.js";

// ---------------------------------------------------------------------------------------------------------------
// google.protobuf.Struct family (camelCase members, see above)

export interface ProtoStruct {
  fields?: Record<string, ProtoValue>;
}

export interface ProtoListValue {
  values?: ProtoValue[];
}

export interface ProtoValue {
  /** Oneof discriminator set by the decoder. */
  kind?: "nullValue" | "numberValue" | "stringValue" | "boolValue" | "structValue" | "listValue";
  nullValue?: number;
  numberValue?: number;
  stringValue?: string;
  boolValue?: boolean;
  structValue?: ProtoStruct;
  listValue?: ProtoListValue;
}

// ---------------------------------------------------------------------------------------------------------------
// envoy.config.core.v3 / envoy.type.v3

export interface HeaderValue {
  key?: string;
  /** Never set by switchyard: Envoy rejects a HeaderValue carrying both `value` and `raw_value` (§4.6). */
  value?: string;
  raw_value?: Buffer;
}

export interface HeaderValueOption {
  header?: HeaderValue;
  append?: { value?: boolean };
  append_action?: number;
  keep_empty_value?: boolean;
}

export interface HeaderMap {
  headers?: HeaderValue[];
}

export interface Metadata {
  filter_metadata?: Record<string, ProtoStruct>;
}

export interface HttpStatus {
  code?: number;
}

// ---------------------------------------------------------------------------------------------------------------
// envoy.service.ext_proc.v3 requests

/** `envoy.extensions.filters.http.ext_proc.v3.ProcessingMode.BodySendMode` (open enum). */
/** envoy.extensions.filters.http.ext_proc.v3.ProcessingMode.HeaderSendMode. */
export const HeaderSendMode = {
  DEFAULT: 0,
  SEND: 1,
  SKIP: 2,
} as const;

export const BodySendMode = {
  NONE: 0,
  STREAMED: 1,
  BUFFERED: 2,
  BUFFERED_PARTIAL: 3,
  FULL_DUPLEX_STREAMED: 4,
} as const;

export interface ProtocolConfiguration {
  request_body_mode?: number;
  response_body_mode?: number;
  send_body_without_waiting_for_header_response?: boolean;
}

export interface HttpHeaders {
  headers?: HeaderMap;
  end_of_stream?: boolean;
}

export interface HttpBody {
  body?: Buffer;
  end_of_stream?: boolean;
  end_of_stream_without_message?: boolean;
  grpc_message_compressed?: boolean;
}

export interface HttpTrailers {
  trailers?: HeaderMap;
}

export type RequestKind =
  | "request_headers"
  | "response_headers"
  | "request_body"
  | "response_body"
  | "request_trailers"
  | "response_trailers";

export interface ProcessingRequest {
  /** Oneof discriminator; undefined when Envoy (or a broken client) set no member. */
  request?: RequestKind;
  request_headers?: HttpHeaders;
  response_headers?: HttpHeaders;
  request_body?: HttpBody;
  response_body?: HttpBody;
  request_trailers?: HttpTrailers;
  response_trailers?: HttpTrailers;
  metadata_context?: Metadata;
  attributes?: Record<string, ProtoStruct>;
  observability_mode?: boolean;
  protocol_config?: ProtocolConfiguration;
}

// ---------------------------------------------------------------------------------------------------------------
// envoy.service.ext_proc.v3 responses

export interface HeaderMutation {
  set_headers?: HeaderValueOption[];
  remove_headers?: string[];
}

export interface StreamedBodyResponse {
  body?: Buffer;
  end_of_stream?: boolean;
}

export interface BodyMutation {
  mutation?: "body" | "clear_body" | "streamed_response";
  body?: Buffer;
  clear_body?: boolean;
  streamed_response?: StreamedBodyResponse;
}

export interface CommonResponse {
  status?: number;
  header_mutation?: HeaderMutation;
  body_mutation?: BodyMutation;
  trailers?: HeaderMap;
  clear_route_cache?: boolean;
}

export interface HeadersResponse {
  response?: CommonResponse;
}

export interface BodyResponse {
  response?: CommonResponse;
}

export interface TrailersResponse {
  header_mutation?: HeaderMutation;
}

export interface ImmediateResponse {
  status?: HttpStatus;
  headers?: HeaderMutation;
  body?: Buffer;
  grpc_status?: { status?: number };
  details?: string;
}

export type ResponseKind =
  | "request_headers"
  | "response_headers"
  | "request_body"
  | "response_body"
  | "request_trailers"
  | "response_trailers"
  | "immediate_response";

export interface ProcessingResponse {
  response?: ResponseKind;
  request_headers?: HeadersResponse;
  response_headers?: HeadersResponse;
  request_body?: BodyResponse;
  response_body?: BodyResponse;
  request_trailers?: TrailersResponse;
  response_trailers?: TrailersResponse;
  immediate_response?: ImmediateResponse;
  dynamic_metadata?: ProtoStruct;
}

// ---------------------------------------------------------------------------------------------------------------
// Builders. Each sets exactly one oneof member; protobufjs's fromObject encodes whichever member is present.

export type HeaderPairs = readonly (readonly [string, string])[];
/** namespace → key → string value. */
export type MetadataNamespaces = Readonly<Record<string, Readonly<Record<string, string>>>>;

/** One header to set, as `raw_value` only (§4.6); `append` unset means overwrite in ext_proc. */
export function headerOption(key: string, value: string | Buffer): HeaderValueOption {
  return { header: { key, raw_value: typeof value === "string" ? Buffer.from(value, "utf8") : value } };
}

export function headerMutation(pairs: HeaderPairs): HeaderMutation {
  const set_headers: HeaderValueOption[] = new Array(pairs.length);
  for (let i = 0; i < pairs.length; i++) {
    const pair = pairs[i]!;
    set_headers[i] = headerOption(pair[0], pair[1]);
  }
  return { set_headers };
}

/** A Struct whose top-level keys are metadata namespaces, each a Struct of string values (§4.8). */
export function metadataStruct(namespaces: MetadataNamespaces): ProtoStruct {
  const fields: Record<string, ProtoValue> = {};
  for (const ns of Object.keys(namespaces)) {
    const inner: Record<string, ProtoValue> = {};
    const values = namespaces[ns]!;
    for (const key of Object.keys(values)) inner[key] = { stringValue: values[key]! };
    fields[ns] = { structValue: { fields: inner } };
  }
  return { fields };
}

const DESTINATION_CACHE_CAP = 4096;

/** Shared cached messages are frozen so a future in-place edit fails loudly instead of leaking into other requests. */
function deepFreeze<T extends object>(value: T): T {
  for (const v of Object.values(value)) if (typeof v === "object" && v !== null) deepFreeze(v);
  return Object.freeze(value);
}
const plainDestinations = new Map<string, ProtoStruct>();

/**
 * The `envoy.lb` destination metadata plus any extra namespaces. The destination key always carries the same
 * string as the header: "The EPP MUST not set two different values" (protocol proposal 004).
 */
export function destinationMetadata(destination: string, extra?: MetadataNamespaces): ProtoStruct {
  if (extra === undefined) {
    // The common case is one of a bounded set of endpoint lists; the Struct is only ever read (encoded), so it is
    // built once per destination instead of five objects per request.
    let cached = plainDestinations.get(destination);
    if (cached === undefined) {
      if (plainDestinations.size >= DESTINATION_CACHE_CAP) plainDestinations.clear();
      cached = deepFreeze(
        metadataStruct({ [DESTINATION_METADATA_NAMESPACE]: { [DESTINATION_ENDPOINT_HEADER]: destination } }),
      );
      plainDestinations.set(destination, cached);
    }
    return cached;
  }
  const lb: Record<string, string> = { ...extra?.[DESTINATION_METADATA_NAMESPACE] };
  lb[DESTINATION_ENDPOINT_HEADER] = destination;
  return metadataStruct(
    extra === undefined ? { [DESTINATION_METADATA_NAMESPACE]: lb } : { ...extra, [DESTINATION_METADATA_NAMESPACE]: lb },
  );
}

export interface CommonOptions {
  setHeaders?: HeaderPairs;
  clearRouteCache?: boolean;
  /** BUFFERED modes only: replaces the whole body. */
  body?: Buffer;
}

function common(options: CommonOptions): CommonResponse {
  const response: CommonResponse = {};
  if (options.setHeaders !== undefined && options.setHeaders.length > 0) {
    response.header_mutation = headerMutation(options.setHeaders);
  }
  if (options.body !== undefined) response.body_mutation = { body: options.body };
  if (options.clearRouteCache === true) response.clear_route_cache = true;
  return response;
}

/** A response carrying a CommonResponse (headers or body phase), plus optional dynamic metadata. */
function commonPhaseResponse(
  phase: "request_headers" | "response_headers" | "request_body" | "response_body",
  options: CommonOptions,
  dynamicMetadata: ProtoStruct | undefined,
): ProcessingResponse {
  const out: ProcessingResponse = { [phase]: { response: common(options) } };
  if (dynamicMetadata !== undefined) out.dynamic_metadata = dynamicMetadata;
  return out;
}

/** A HeadersResponse for either direction; with no options it is the empty "continue" answer. */
export function headersResponse(
  phase: "request_headers" | "response_headers",
  options: CommonOptions = {},
  dynamicMetadata?: ProtoStruct,
): ProcessingResponse {
  return commonPhaseResponse(phase, options, dynamicMetadata);
}

/** A BodyResponse for the BUFFERED/STREAMED modes: header mutation and/or `body_mutation.body`. */
export function bodyResponse(
  phase: "request_body" | "response_body",
  options: CommonOptions = {},
  dynamicMetadata?: ProtoStruct,
): ProcessingResponse {
  return commonPhaseResponse(phase, options, dynamicMetadata);
}

/** One FULL_DUPLEX_STREAMED chunk: `body_mutation.streamed_response` is mandatory in that mode (§4.3). */
export function streamedChunk(
  phase: "request_body" | "response_body",
  body: Buffer,
  endOfStream: boolean,
): ProcessingResponse {
  const streamed: StreamedBodyResponse = { body };
  if (endOfStream) streamed.end_of_stream = true;
  return { [phase]: { response: { body_mutation: { streamed_response: streamed } } } };
}

/** An empty TrailersResponse: valid, and the only way to finish a direction that ended with trailers. */
export function trailersResponse(phase: "request_trailers" | "response_trailers"): ProcessingResponse {
  return { [phase]: {} };
}

export function immediateResponse(
  status: number,
  body: Buffer,
  headers: HeaderPairs,
  details: string,
): ProcessingResponse {
  const immediate: ImmediateResponse = { status: { code: status }, body, details };
  if (headers.length > 0) immediate.headers = headerMutation(headers);
  return { immediate_response: immediate };
}

/**
 * Splits a body into ≤ `limit`-byte views (no copies). An empty body still yields one empty chunk so the caller
 * can carry end_of_stream on it (GIE chunking.go: "empty body → single chunk").
 */
export function splitBody(body: Buffer, limit: number = BODY_CHUNK_BYTES): Buffer[] {
  if (body.length <= limit) return [body];
  const chunks: Buffer[] = [];
  for (let offset = 0; offset < body.length; offset += limit) chunks.push(body.subarray(offset, offset + limit));
  return chunks;
}

// ---------------------------------------------------------------------------------------------------------------
// Readers

/** Header value as text: `raw_value` (what Envoy sends), falling back to the legacy `value`. */
export function headerText(header: HeaderValue): string {
  const raw = header.raw_value;
  if (raw !== undefined && raw.length > 0) return raw.toString("utf8");
  return header.value ?? "";
}

/** A Value as a list of strings: a ListValue of strings (non-strings skipped) or a comma-joined string. */
export function stringList(value: ProtoValue): string[] | undefined {
  if (value.listValue !== undefined) {
    const out: string[] = [];
    for (const item of value.listValue.values ?? []) {
      if (typeof item.stringValue === "string") {
        const s = item.stringValue.trim();
        if (s !== "") out.push(s);
      }
    }
    return out;
  }
  if (typeof value.stringValue === "string") {
    const out: string[] = [];
    for (const part of value.stringValue.split(",")) {
      const s = part.trim();
      if (s !== "") out.push(s);
    }
    return out;
  }
  return undefined;
}

/** Plain-JS view of a Struct (for tests, debug output and the fake Envoy client). */
export function structToJson(struct: ProtoStruct | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(struct?.fields ?? {})) out[key] = valueToJson(value);
  return out;
}

export function valueToJson(value: ProtoValue): unknown {
  if (value.structValue !== undefined) return structToJson(value.structValue);
  if (value.listValue !== undefined) return (value.listValue.values ?? []).map(valueToJson);
  if (value.stringValue !== undefined) return value.stringValue;
  if (value.numberValue !== undefined) return value.numberValue;
  if (value.boolValue !== undefined) return value.boolValue;
  return null;
}

/** The inverse of valueToJson, for building metadata_context in tests and the fake Envoy client. */
export function jsonToValue(value: unknown): ProtoValue {
  if (value === null || value === undefined) return { nullValue: 0 };
  if (typeof value === "string") return { stringValue: value };
  if (typeof value === "number") return { numberValue: value };
  if (typeof value === "boolean") return { boolValue: value };
  if (Array.isArray(value)) return { listValue: { values: value.map(jsonToValue) } };
  return { structValue: jsonToStruct(value as Record<string, unknown>) };
}

export function jsonToStruct(value: Readonly<Record<string, unknown>>): ProtoStruct {
  const fields: Record<string, ProtoValue> = {};
  for (const [key, v] of Object.entries(value)) fields[key] = jsonToValue(v);
  return { fields };
}
