/**
 * The gateway's side of ext_proc: a few HTTP/2 channels to the EPP (like Envoy's per-worker connections) and the
 * proto-loader message shapes it exchanges (keepCase; Struct/Value members camelCase — protobufjs's built-ins).
 */
import * as grpc from "@grpc/grpc-js";
import type { ProcessingRequest, ProcessingResponse, ProtoStruct, ProtoValue } from "../extproc/messages.js";
import { extProcService } from "../extproc/proto.js";

/** BodySendMode.FULL_DUPLEX_STREAMED: what every GIE data plane configures, both directions. */
export const FULL_DUPLEX_STREAMED = 4;

// The message shapes are the ones the EPP side declares (src/extproc/messages.ts): one definition of the wire
// contract for both ends of the stream.
export type {
  BodyMutation as BodyMutationMsg,
  CommonResponse as CommonResponseMsg,
  ImmediateResponse as ImmediateResponseMsg,
  Metadata as MetadataMsg,
  ProcessingRequest as ProcessingRequestMsg,
  ProcessingResponse as ProcessingResponseMsg,
  ProtoStruct as StructMsg,
  ProtoValue as ValueMsg,
} from "../extproc/messages.js";

export type ProcessCall = grpc.ClientDuplexStream<ProcessingRequest, ProcessingResponse>;

/** Reads `struct[namespace][key]` as a string; a list of strings is joined with "," (the header's own format). */
export function structString(struct: ProtoStruct | undefined, namespace: string, key: string): string | undefined {
  const value = struct?.fields?.[namespace]?.structValue?.fields?.[key];
  if (value === undefined) return undefined;
  if (typeof value.stringValue === "string") return value.stringValue;
  const list = value.listValue?.values;
  if (list !== undefined) {
    const parts: string[] = [];
    for (const v of list) if (typeof v.stringValue === "string") parts.push(v.stringValue);
    return parts.join(",");
  }
  return undefined;
}

export function stringStruct(fields: Readonly<Record<string, string>>): ProtoStruct {
  const out: Record<string, ProtoValue> = {};
  for (const [k, v] of Object.entries(fields)) out[k] = { stringValue: v };
  return { fields: out };
}

export function stringListStruct(key: string, values: readonly string[]): ProtoStruct {
  return { fields: { [key]: { listValue: { values: values.map((v) => ({ stringValue: v })) } } } };
}

export interface EppClientOptions {
  /** gRPC target, e.g. `127.0.0.1:9002` or `dns:///epp.ns.svc:9002`. */
  readonly address: string;
  /** TLS accepting any certificate, as every GIE data plane configures (empty validation_context). */
  readonly tls: boolean;
  /** Independent HTTP/2 connections, used round-robin per stream. */
  readonly connections: number;
}

export class EppClient {
  readonly #clients: grpc.Client[] = [];
  #next = 0;

  constructor(options: EppClientOptions) {
    const Ctor = extProcService();
    const credentials = options.tls
      ? grpc.credentials.createSsl(null, null, null, {
          rejectUnauthorized: false,
          checkServerIdentity: () => undefined,
        })
      : grpc.credentials.createInsecure();
    for (let i = 0; i < options.connections; i++) {
      this.#clients.push(
        new Ctor(options.address, credentials, {
          // Without a local pool, channels with the same target and options share one connection.
          "grpc.use_local_subchannel_pool": 1,
          // BUFFERED-style body_mutation.body may carry a whole request body.
          "grpc.max_receive_message_length": 64 * 1024 * 1024,
          "grpc.keepalive_time_ms": 30_000,
          "grpc.keepalive_timeout_ms": 10_000,
        }),
      );
    }
  }

  /** One Process stream per HTTP request. Without waitForReady an unreachable EPP fails the call at once. */
  open(): ProcessCall {
    const client = this.#clients[this.#next]!;
    this.#next = (this.#next + 1) % this.#clients.length;
    return (client as unknown as { Process(): ProcessCall }).Process();
  }

  close(): void {
    for (const c of this.#clients) c.close();
  }
}
