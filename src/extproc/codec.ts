/**
 * The hand-written protobuf codec for the two ext_proc hot-path messages: `decodeProcessingRequest` (Envoy → us,
 * decode.ts) and `encodeProcessingResponse` (us → Envoy, encode.ts), with the wire shapes they share (wire.ts).
 * proto-loader's (de)serializers run protobufjs `decode` + `toObject` and `fromObject` + `encode`: two passes and
 * an intermediate message object per direction; this codec reads the wire straight into the plain objects
 * messages.ts describes and writes them in one sized buffer. Each half's file states its contract with protobufjs
 * (docs/design/ext-proc-protocol.md §2).
 */
export { decodeProcessingRequest } from "./decode.js";
export { encodeProcessingResponse } from "./encode.js";
export type {
  HttpHeadersWire,
  MetadataWire,
  ProcessingModeWire,
  ProcessingRequestWire,
  ProcessingResponseWire,
  ProtoAny,
  ProtoDuration,
} from "./wire.js";
export { ProtobufWireError } from "./wire.js";
