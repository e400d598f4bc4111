/**
 * Wire-level golden tests: the bytes our builders produce (through the service's real serializers) must equal
 * protobuf encodings derived by hand from Envoy's field numbers (docs/design/ext-proc-protocol.md §2). Tag byte =
 * (field_number << 3) | wire_type, wire type 0 = varint, 2 = length-delimited.
 */
import { describe, expect, it } from "vitest";
import { SUBSET_HINT_KEY, SUBSET_HINT_NAMESPACE } from "../../src/common/constants.js";
import { SwitchyardError } from "../../src/common/errors.js";
import { immediateResponseFor } from "../../src/extproc/immediate.js";
import {
  destinationMetadata,
  headersResponse,
  immediateResponse,
  type ProcessingRequest,
  type ProcessingResponse,
  streamedChunk,
  stringList,
  trailersResponse,
} from "../../src/extproc/messages.js";
import { extProcService } from "../../src/extproc/proto.js";

const method = extProcService().service.Process!;
const encodeResponse = (msg: ProcessingResponse): string => (method.responseSerialize(msg) as Buffer).toString("hex");
const decodeResponse = (bytes: Buffer): ProcessingResponse => method.responseDeserialize(bytes) as ProcessingResponse;
const decodeRequest = (bytes: Buffer): ProcessingRequest => method.requestDeserialize(bytes) as ProcessingRequest;

/** Hex of an ASCII string, so the byte strings below stay readable. */
const ascii = (s: string): string => Buffer.from(s, "ascii").toString("hex");
const hex = (...parts: string[]): string => parts.join("").replace(/\s+/g, "");

const DEST_KEY = "x-gateway-destination-endpoint"; // 30 bytes = 0x1e
const DEST = "10.0.0.1:80"; // 11 bytes = 0x0b

describe("ext_proc golden wire bytes", () => {
  it("encodes the routing headers response with raw_value, clear_route_cache and envoy.lb metadata", () => {
    const msg = headersResponse(
      "request_headers",
      { setHeaders: [[DEST_KEY, DEST]], clearRouteCache: true },
      destinationMetadata(DEST),
    );
    const expected = hex(
      // ProcessingResponse.request_headers = field 1, LEN → 0x0a, 55 bytes (0x37)
      "0a 37",
      //   HeadersResponse.response = field 1, LEN → 0x0a, 53 bytes (0x35)
      "0a 35",
      //     CommonResponse.header_mutation = field 2, LEN → 0x12, 49 bytes (0x31)
      "12 31",
      //       HeaderMutation.set_headers = field 1, LEN → 0x0a, 47 bytes (0x2f)
      "0a 2f",
      //         HeaderValueOption.header = field 1, LEN → 0x0a, 45 bytes (0x2d)
      "0a 2d",
      //           HeaderValue.key = field 1 → 0x0a, 30 bytes; raw_value = field 3 → 0x1a, 11 bytes (no `value`, field 2)
      "0a 1e",
      ascii(DEST_KEY),
      "1a 0b",
      ascii(DEST),
      //     CommonResponse.clear_route_cache = field 5, varint → 0x28, true
      "28 01",
      // ProcessingResponse.dynamic_metadata = field 8, LEN → 0x42, 65 bytes (0x41)
      "42 41",
      //   Struct.fields map entry = field 1 → 0x0a, 63 bytes (0x3f): key (field 1) "envoy.lb", value (field 2) Value
      "0a 3f",
      "0a 08",
      ascii("envoy.lb"),
      "12 33",
      //     Value.struct_value = field 5, LEN → 0x2a, 49 bytes (0x31)
      "2a 31",
      //       Struct.fields entry → 0x0a, 47 bytes (0x2f): key 30 bytes, value Value of 13 bytes
      "0a 2f",
      "0a 1e",
      ascii(DEST_KEY),
      "12 0d",
      //         Value.string_value = field 3, LEN → 0x1a, 11 bytes
      "1a 0b",
      ascii(DEST),
    );
    expect(encodeResponse(msg)).toBe(expected);
  });

  it("encodes a streamed_response body chunk with end_of_stream", () => {
    const expected = hex(
      // ProcessingResponse.request_body = field 3, LEN → 0x1a, 12 bytes
      "1a 0c",
      //   BodyResponse.response = field 1 → 0x0a, 10 bytes
      "0a 0a",
      //     CommonResponse.body_mutation = field 3 → 0x1a, 8 bytes
      "1a 08",
      //       BodyMutation.streamed_response = field 3 (oneof) → 0x1a, 6 bytes
      "1a 06",
      //         StreamedBodyResponse.body = field 1 → 0x0a "hi"; end_of_stream = field 2 varint → 0x10 01
      "0a 02",
      ascii("hi"),
      "10 01",
    );
    expect(encodeResponse(streamedChunk("request_body", Buffer.from("hi"), true))).toBe(expected);
    // A response-path chunk differs only in the outer tag: response_body = field 4 → 0x22.
    expect(encodeResponse(streamedChunk("response_body", Buffer.from("hi"), true))).toBe(`22${expected.slice(2)}`);
  });

  it("encodes an empty TrailersResponse", () => {
    // request_trailers = field 5 → 0x2a, empty; response_trailers = field 6 → 0x32, empty.
    expect(encodeResponse(trailersResponse("request_trailers"))).toBe("2a00");
    expect(encodeResponse(trailersResponse("response_trailers"))).toBe("3200");
  });

  it("encodes an ImmediateResponse", () => {
    const msg = immediateResponse(503, Buffer.from("no"), [["retry-after", "1"]], "SY_X");
    const expected = hex(
      // ProcessingResponse.immediate_response = field 7, LEN → 0x3a, 37 bytes (0x25)
      "3a 25",
      //   ImmediateResponse.status = field 1 → 0x0a, 3 bytes: HttpStatus.code = field 1 varint → 0x08, 503 = f7 03
      "0a 03 08 f7 03",
      //   ImmediateResponse.headers = field 2 → 0x12, 20 bytes: set_headers → 0x0a 18 bytes: header → 0x0a 16 bytes
      "12 14 0a 12 0a 10",
      "0a 0b",
      ascii("retry-after"),
      "1a 01",
      ascii("1"),
      //   ImmediateResponse.body = field 3 → 0x1a; details = field 5 → 0x2a
      "1a 02",
      ascii("no"),
      "2a 04",
      ascii("SY_X"),
    );
    expect(encodeResponse(msg)).toBe(expected);
  });

  it("maps errors to the GIE body text, catalogue status and switchyard headers", () => {
    const err = new SwitchyardError("SY_SHED", "system saturated, sheddable request dropped", {
      headers: { "Retry-After": "2" },
    });
    const bytes = method.responseSerialize(immediateResponseFor(err).response) as Buffer;
    const decoded = decodeResponse(bytes);
    expect(decoded.response).toBe("immediate_response");
    const imm = decoded.immediate_response!;
    expect(imm.status?.code).toBe(429);
    expect(imm.body?.toString()).toBe(
      "inference error: ResourceExhausted - system saturated, sheddable request dropped",
    );
    expect(imm.details).toBe("SY_SHED");
    const headers = (imm.headers?.set_headers ?? []).map((o) => [o.header?.key, o.header?.raw_value?.toString()]);
    expect(headers).toEqual([
      ["content-type", "text/plain; charset=utf-8"],
      ["x-switchyard-error-code", "SY_SHED"],
      ["retry-after", "2"],
    ]);
    for (const o of imm.headers?.set_headers ?? []) expect(o.header?.value ?? "").toBe("");

    const internal = immediateResponseFor(new TypeError("boom"));
    expect(internal.error.code).toBe("SY_INTERNAL");
    expect(internal.response.immediate_response?.status?.code).toBe(500);
    expect(internal.response.immediate_response?.body?.toString()).toBe("inference error: Internal - boom");
  });

  it("decodes a hand-built request_headers with a subset hint and protocol_config", () => {
    const bytes = Buffer.from(
      hex(
        // ProcessingRequest.request_headers = field 2, LEN → 0x12, 18 bytes
        "12 12",
        //   HttpHeaders.headers = field 1 → 0x0a, 14 bytes: HeaderMap.headers = field 1 → 0x0a, 12 bytes
        "0a 0e 0a 0c",
        //     HeaderValue.key (0x0a) ":path", raw_value (0x1a) "/v1"
        "0a 05",
        ascii(":path"),
        "1a 03",
        ascii("/v1"),
        //   HttpHeaders.end_of_stream = field 3 varint → 0x18 01
        "18 01",
        // ProcessingRequest.metadata_context = field 8, LEN → 0x42, 86 bytes (0x56)
        "42 56",
        //   Metadata.filter_metadata entry = field 1 → 0x0a, 84 bytes (0x54): key 20 bytes, value Struct 60 bytes
        "0a 54",
        "0a 14",
        ascii(SUBSET_HINT_NAMESPACE),
        "12 3c",
        //     Struct.fields entry → 0x0a, 58 bytes (0x3a): key 37 bytes (0x25), value Value 17 bytes (0x11)
        "0a 3a",
        "0a 25",
        ascii(SUBSET_HINT_KEY),
        "12 11",
        //       Value.list_value = field 6 → 0x32, 15 bytes: ListValue.values = field 1 → 0x0a, 13 bytes
        "32 0f 0a 0d",
        //         Value.string_value = field 3 → 0x1a, 11 bytes
        "1a 0b",
        ascii(DEST),
        // ProcessingRequest.protocol_config = field 11, LEN → 0x5a, 4 bytes:
        //   request_body_mode = field 1 → 0x08, FULL_DUPLEX_STREAMED = 4; response_body_mode = field 2 → 0x10, 4
        "5a 04 08 04 10 04",
      ),
      "hex",
    );
    const msg = decodeRequest(bytes);
    expect(msg.request).toBe("request_headers");
    const header = msg.request_headers?.headers?.headers?.[0];
    expect(header?.key).toBe(":path");
    expect(Buffer.isBuffer(header?.raw_value)).toBe(true);
    expect(header?.raw_value?.toString()).toBe("/v1");
    expect(msg.request_headers?.end_of_stream).toBe(true);
    const hint = msg.metadata_context?.filter_metadata?.[SUBSET_HINT_NAMESPACE]?.fields?.[SUBSET_HINT_KEY];
    expect(hint?.kind).toBe("listValue");
    expect(hint?.listValue?.values?.[0]?.stringValue).toBe(DEST);
    expect(stringList(hint!)).toEqual([DEST]);
    expect(msg.protocol_config?.request_body_mode).toBe(4);
    expect(msg.protocol_config?.response_body_mode).toBe(4);
    expect(msg.observability_mode).toBeUndefined();
  });

  it("round-trips our own request encoding (what the fake Envoy client sends)", () => {
    const bytes = method.requestSerialize({
      request_body: { body: Buffer.from("abc"), end_of_stream: true },
    } satisfies ProcessingRequest) as Buffer;
    // request_body = field 4 → 0x22, 7 bytes: body (0x0a) "abc", end_of_stream (0x10) 1
    expect(bytes.toString("hex")).toBe(hex("22 07 0a 03", ascii("abc"), "10 01"));
  });
});
