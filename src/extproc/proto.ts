/**
 * Loads the hand-written Envoy ext_proc and gRPC health protos. Options follow docs/design/node-stack.md §6: keepCase
 * so fields read like Envoy's docs (`raw_value`, `end_of_stream`), oneofs so `msg.request` names the set member,
 * no defaults on the hot path. Note protobufjs's built-in Struct/Value use camelCase (`stringValue`,
 * `listValue`) even with keepCase.
 */
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { decodeProcessingRequest, encodeProcessingResponse } from "./codec.js";

/** Works from both `src/extproc` (tests) and `dist/extproc` (built): walk up to the package root. */
export function protoDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    const candidate = join(dir, "proto");
    if (existsSync(join(candidate, "envoy"))) return candidate;
    dir = dirname(dir);
  }
  throw new Error("switchyard: cannot find the proto/ directory next to the package");
}

export const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: Number,
  enums: Number,
  defaults: false,
  arrays: true,
  oneofs: true,
};

let cached: grpc.GrpcObject | undefined;

/** The loaded package tree; `envoy.service.ext_proc.v3.ExternalProcessor` and `grpc.health.v1.Health`. */
export function loadProtos(): grpc.GrpcObject {
  if (cached) return cached;
  const dir = protoDir();
  const definition = protoLoader.loadSync(
    ["envoy/service/ext_proc/v3/external_processor.proto", "grpc/health/v1/health.proto"],
    { ...LOADER_OPTIONS, includeDirs: [dir] },
  );
  cached = grpc.loadPackageDefinition(definition);
  return cached;
}

function lookup(path: string): grpc.ServiceClientConstructor {
  let node: unknown = loadProtos();
  for (const part of path.split(".")) node = (node as Record<string, unknown>)[part];
  if (typeof node !== "function") throw new Error(`proto service ${path} not found`);
  return node as grpc.ServiceClientConstructor;
}

/** Client constructor (its `.service` is the server-side definition) for the ext_proc service. */
export function extProcService(): grpc.ServiceClientConstructor {
  return lookup("envoy.service.ext_proc.v3.ExternalProcessor");
}

let serverDefinition: grpc.ServiceDefinition | undefined;

/**
 * The ext_proc service definition for servers: proto-loader's, with the server-side directions (request decode,
 * response encode) replaced by the hand-written codec (codec.ts), which yields the same objects and bytes with
 * less work per message. requestSerialize/responseDeserialize stay proto-loader's, for clients built from this
 * definition.
 */
export function extProcServerDefinition(): grpc.ServiceDefinition {
  if (serverDefinition) return serverDefinition;
  const original = extProcService().service;
  const process = original.Process;
  if (process === undefined) throw new Error("proto service ExternalProcessor has no Process method");
  serverDefinition = {
    Process: {
      ...process,
      requestDeserialize: decodeProcessingRequest,
      responseSerialize: encodeProcessingResponse,
    },
  };
  return serverDefinition;
}

export function healthService(): grpc.ServiceClientConstructor {
  return lookup("grpc.health.v1.Health");
}
