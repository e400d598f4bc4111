/**
 * The Envoy-facing gRPC server: `/envoy.service.ext_proc.v3.ExternalProcessor/Process`, one ExtProcStream per call.
 *
 * TLS follows GIE's `--secure-serving`: a mounted `tls.crt`/`tls.key` pair, or a self-signed RSA certificate made at
 * start — every gateway in docs/design/ext-proc-protocol.md §6 accepts any certificate from the EPP.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { generate } from "selfsigned";
import { DEFAULT_GRPC_PORT, DEFAULT_MAX_BODY_BYTES } from "../common/constants.js";
import { ConfigError } from "../common/errors.js";
import { type Logger, silentLogger } from "../observability/logger.js";
import type { LifecycleFactory } from "../request/lifecycle.js";
import { addHealthService, bindAddress, checkPort, type HealthState } from "./health.js";
import type { ProcessingRequest, ProcessingResponse } from "./messages.js";
import { extProcServerDefinition } from "./proto.js";
import { type BodyMode, ExtProcStream, type ProcessCall } from "./stream.js";

export interface ExtProcTlsOptions {
  /** Directory holding `tls.crt` and `tls.key` (GIE's --cert-path). Default: a self-signed RSA cert made at start. */
  readonly certPath?: string;
}

export interface ExtProcServerOptions {
  /** Creates one RequestLifecycle per stream. Required. */
  readonly factory: LifecycleFactory;
  /** Listen address. Default "0.0.0.0". */
  readonly host?: string;
  /** Listen port; 0 picks a free one. Default 9002 (GIE's --grpc-port). */
  readonly port?: number;
  /** Default: silent. */
  readonly logger?: Logger;
  /** Request body cap; larger bodies get 413. Default 16 MiB. */
  readonly maxBodyBytes?: number;
  /** Body mode when Envoy sends no protocol_config. Default "full-duplex". */
  readonly defaultRequestBodyMode?: BodyMode;
  /** Echo every non-system request header like GIE. Default false. */
  readonly echoRequestHeaders?: boolean;
  /** false = plaintext (tests, benchmarks, mTLS sidecars). Default false; the CLI turns it on like GIE. */
  readonly tls?: false | ExtProcTlsOptions;
  /** Also serve grpc.health.v1.Health from this state on the same port (GIE --health-checking). Default: off. */
  readonly healthOnSamePort?: HealthState;
  /** Extra grpc-js server options, applied last (tuning escape hatch). Default: none. */
  readonly grpcOptions?: grpc.ServerOptions;
  /**
   * RST_STREAM frames accepted per second on one connection (burst: twice as many) before the connection is closed
   * (`--grpc-stream-resets-per-second`, default 10000). Node ≥ 22.10 only; Node 20 keeps nghttp2's 33/s.
   */
  readonly streamResetsPerSecond?: number;
  /** Open streams allowed on one client connection (advertised as HTTP/2 MAX_CONCURRENT_STREAMS). Default 1000. */
  readonly maxStreamsPerConnection?: number;
  /** A stream that receives no message for this long is ended with DEADLINE_EXCEEDED. 0 = never. Default 5 min. */
  readonly streamIdleTimeoutMs?: number;
  /** Called for each stream refused by the per-connection limit or ended by the idle timeout (for a counter). */
  readonly onStreamLimited?: (reason: "per_connection_limit" | "idle_timeout") => void;
}

/**
 * Envoy resets every ext_proc stream it is done with unless its `ext_proc_graceful_grpc_close` runtime flag is on,
 * and Envoy Gateway and Istio leave it off (docs/envoy.md). nghttp2 counts the RST_STREAM frames a connection
 * receives and, past a burst of 1000 refilled at 33 per second, closes the connection with GOAWAY, failing every
 * stream then in flight on it: the 0.2–0.9 % of fast 500s seen at a few hundred requests per second
 * (docs/design/ext-proc-protocol.md §9.1). One reset per request is Envoy's normal behaviour here, not an attack, so
 * the budget must exceed the request rate of one connection. Node ≥ 22.10 (the container image) takes it as the
 * http2 options `streamResetBurst`/`streamResetRate`; grpc-js does not pass those through, so they go into the
 * options grpc-js hands to `http2.createServer` when it binds. Node 20 ignores them (its budget is fixed).
 */
export const DEFAULT_STREAM_RESETS_PER_SECOND = 10_000;

/** True when the running Node honours the reset budget options. */
export function streamResetBudgetSupported(version = process.versions.node): boolean {
  const [major = 0, minor = 0] = version.split(".").map(Number);
  return major > 22 || (major === 22 && minor >= 10);
}

/** False when grpc-js no longer keeps the http2 options where this expects them (a grpc-js upgrade). */
export function raiseStreamResetBudget(server: grpc.Server, perSecond: number): boolean {
  const common = (server as unknown as { commonServerOptions?: Record<string, unknown> }).commonServerOptions;
  if (common === null || typeof common !== "object") return false;
  common.streamResetRate = perSecond;
  common.streamResetBurst = 2 * perSecond;
  return true;
}

/** Defaults of `--grpc-max-streams-per-connection` and `--grpc-stream-idle-timeout` (docs/security.md). */
export const DEFAULT_MAX_STREAMS_PER_CONNECTION = 1000;
export const DEFAULT_STREAM_IDLE_TIMEOUT_MS = 5 * 60_000;

export interface ExtProcServer {
  start(): Promise<{ port: number }>;
  /**
   * Stops accepting streams (new ones get UNAVAILABLE), lets in-flight streams finish for up to `graceMs`
   * (default 5000), then force-closes the rest.
   */
  stop(graceMs?: number): Promise<void>;
  activeStreams(): number;
  readonly draining: boolean;
}

/**
 * Headroom over maxBodyBytes for one gRPC message: a BUFFERED body arrives (and a rewritten one leaves) in a single
 * message beside headers and metadata.
 */
const MESSAGE_SLACK_BYTES = 1024 * 1024;
const BODY_MODES: ReadonlySet<string> = new Set(["full-duplex", "buffered"]);

function validate(options: ExtProcServerOptions): void {
  if (options === null || typeof options !== "object") throw new ConfigError("options must be an object");
  if (typeof options.factory?.begin !== "function") {
    throw new ConfigError("must be a LifecycleFactory with begin()", undefined, "factory");
  }
  if (options.host !== undefined && (typeof options.host !== "string" || options.host === "")) {
    throw new ConfigError("must be a non-empty string", undefined, "host");
  }
  if (options.port !== undefined) checkPort("port", options.port);
  const max = options.maxBodyBytes;
  if (max !== undefined && (!Number.isSafeInteger(max) || max <= 0)) {
    throw new ConfigError(`must be a positive integer, got ${String(max)}`, undefined, "maxBodyBytes");
  }
  const mode = options.defaultRequestBodyMode;
  if (mode !== undefined && !BODY_MODES.has(mode)) {
    throw new ConfigError(
      `must be "full-duplex" or "buffered", got "${String(mode)}"`,
      undefined,
      "defaultRequestBodyMode",
    );
  }
  const resets = options.streamResetsPerSecond;
  if (resets !== undefined && (!Number.isSafeInteger(resets) || resets < 1)) {
    throw new ConfigError(`must be a positive integer, got ${String(resets)}`, undefined, "streamResetsPerSecond");
  }
  const tls = options.tls;
  if (tls !== undefined && tls !== false && (tls === null || typeof tls !== "object")) {
    throw new ConfigError("must be false or { certPath?: string }", undefined, "tls");
  }
}

async function serverCredentials(tls: false | ExtProcTlsOptions | undefined): Promise<grpc.ServerCredentials> {
  if (tls === undefined || tls === false) return grpc.ServerCredentials.createInsecure();
  let cert: Buffer;
  let key: Buffer;
  if (tls.certPath !== undefined) {
    const certFile = join(tls.certPath, "tls.crt");
    const keyFile = join(tls.certPath, "tls.key");
    try {
      [cert, key] = await Promise.all([readFile(certFile), readFile(keyFile)]);
    } catch (err) {
      throw new ConfigError(`cannot read TLS material: ${(err as Error).message}`, tls.certPath, "certPath");
    }
  } else {
    // GIE makes a self-signed RSA certificate when --cert-path is unset; proxies do not verify it (§6).
    const pems = await generate([{ name: "commonName", value: "switchyard-epp" }], {
      keyType: "rsa",
      keySize: 2048,
      algorithm: "sha256",
      notAfterDate: new Date(Date.now() + 10 * 365 * 24 * 3600 * 1000),
    });
    cert = Buffer.from(pems.cert);
    key = Buffer.from(pems.private);
  }
  return grpc.ServerCredentials.createSsl(null, [{ cert_chain: cert, private_key: key }], false);
}

export function createExtProcServer(options: ExtProcServerOptions): ExtProcServer {
  validate(options);
  const host = options.host ?? "0.0.0.0";
  const port = options.port ?? DEFAULT_GRPC_PORT;
  const logger = options.logger ?? silentLogger;
  const maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  const streamOptions = {
    maxBodyBytes,
    defaultRequestBodyMode: options.defaultRequestBodyMode ?? "full-duplex",
    echoRequestHeaders: options.echoRequestHeaders ?? false,
    logger,
  } as const;
  const messageLimit = maxBodyBytes + MESSAGE_SLACK_BYTES;
  const maxPerConnection = options.maxStreamsPerConnection ?? DEFAULT_MAX_STREAMS_PER_CONNECTION;
  const idleTimeoutMs = options.streamIdleTimeoutMs ?? DEFAULT_STREAM_IDLE_TIMEOUT_MS;
  if (!Number.isSafeInteger(maxPerConnection) || maxPerConnection < 1)
    throw new ConfigError(`must be a positive integer, got ${maxPerConnection}`, undefined, "maxStreamsPerConnection");
  if (!Number.isFinite(idleTimeoutMs) || idleTimeoutMs < 0)
    throw new ConfigError(`must be >= 0, got ${idleTimeoutMs}`, undefined, "streamIdleTimeoutMs");
  const grpcOptions: grpc.ServerOptions = {
    "grpc.max_receive_message_length": messageLimit,
    "grpc.max_send_message_length": messageLimit,
    // Envoy keeps a few long-lived HTTP/2 connections; ping them so a vanished peer frees its streams.
    "grpc.keepalive_time_ms": 30_000,
    "grpc.keepalive_timeout_ms": 10_000,
    "grpc.keepalive_permit_without_calls": 1,
    // grpc-js's channelz keeps per-call counters and traces for a channelz service switchyard does not serve;
    // bench/extproc measured it as pure per-request cost.
    "grpc.enable_channelz": 0,
    // grpc-js binds with SO_REUSEPORT by default, so a second EPP on the same port (an old one still draining, a
    // mistyped flag) would silently share the traffic instead of failing to start.
    "grpc.so_reuseport": 0,
    // Advertised to the client: Envoy opens another connection rather than exceed it; enforced per call below too.
    "grpc.max_concurrent_streams": maxPerConnection,
    ...options.grpcOptions,
  };

  let server: grpc.Server | undefined;
  let draining = false;
  let active = 0;
  let stopping: Promise<void> | undefined;

  /** Open streams by client connection (grpc-js names a connection by its peer address and port). */
  const perConnection = new Map<string, number>();
  /** Open streams with the number of idle sweeps they have gone through without a message. */
  const idle = new Map<ProcessCall, { sweeps: number }>();
  const sweepMs = idleTimeoutMs > 0 ? Math.max(250, Math.min(30_000, idleTimeoutMs / 4)) : 0;
  let sweeper: NodeJS.Timeout | undefined;
  const limited = (reason: "per_connection_limit" | "idle_timeout") => {
    try {
      options.onStreamLimited?.(reason);
    } catch (err) {
      logger.error({ err }, "onStreamLimited threw");
    }
  };
  const sweep = () => {
    // One timer for every stream; a message resets its count (no per-message clock read or timer).
    const limit = Math.ceil(idleTimeoutMs / sweepMs);
    for (const [call, state] of idle) {
      if (++state.sweeps <= limit) continue;
      idle.delete(call);
      limited("idle_timeout");
      logger.debug({ peer: call.getPeer(), idleMs: idleTimeoutMs }, "ext_proc stream idle; ending it");
      call.emit("error", {
        code: grpc.status.DEADLINE_EXCEEDED,
        details: `no message for ${idleTimeoutMs} ms (--grpc-stream-idle-timeout)`,
      });
    }
  };

  function handleCall(call: ProcessCall): void {
    if (draining) {
      call.emit("error", { code: grpc.status.UNAVAILABLE, details: "switchyard is shutting down" });
      return;
    }
    const peer = call.getPeer();
    const open = perConnection.get(peer) ?? 0;
    if (open >= maxPerConnection) {
      limited("per_connection_limit");
      call.emit("error", {
        code: grpc.status.RESOURCE_EXHAUSTED,
        details: `more than ${maxPerConnection} streams on one connection (--grpc-max-streams-per-connection)`,
      });
      return;
    }
    perConnection.set(peer, open + 1);
    active++;
    let closed = false;
    const state = { sweeps: 0 };
    if (sweepMs > 0) {
      idle.set(call, state);
      call.on("data", () => {
        state.sweeps = 0;
      });
    }
    const onClose = (): void => {
      if (closed) return;
      closed = true;
      active--;
      idle.delete(call);
      const n = (perConnection.get(peer) ?? 1) - 1;
      if (n <= 0) perConnection.delete(peer);
      else perConnection.set(peer, n);
    };
    try {
      new ExtProcStream(call, options.factory, streamOptions, onClose);
    } catch (err) {
      // ExtProcStream converts its own failures; this guards the handler contract (nothing escapes to grpc-js).
      logger.error({ err }, "ext_proc stream setup failed");
      call.emit("error", { code: grpc.status.INTERNAL, details: "stream setup failed" });
      onClose();
    }
  }

  return {
    get draining() {
      return draining;
    },
    activeStreams: () => active,
    async start() {
      if (server !== undefined) throw new Error("ext_proc server already started");
      const credentials = await serverCredentials(options.tls);
      const s = new grpc.Server(grpcOptions);
      if (!raiseStreamResetBudget(s, options.streamResetsPerSecond ?? DEFAULT_STREAM_RESETS_PER_SECOND))
        logger.warn(
          "cannot raise the HTTP/2 stream-reset budget (grpc-js changed); Envoy's default stream close may fail requests",
        );
      s.addService(extProcServerDefinition(), {
        Process: (call: grpc.ServerDuplexStream<ProcessingRequest, ProcessingResponse>) => handleCall(call),
      });
      if (options.healthOnSamePort !== undefined) addHealthService(s, options.healthOnSamePort);
      server = s;
      if (sweepMs > 0) {
        sweeper = setInterval(sweep, sweepMs);
        sweeper.unref();
      }
      const address = bindAddress(host, port);
      return new Promise((resolve, reject) => {
        s.bindAsync(address, credentials, (err, bound) => {
          if (err) {
            server = undefined;
            reject(new Error(`ext_proc server cannot listen on ${address}: ${err.message}`));
            return;
          }
          logger.info(
            { address: bindAddress(host, bound), tls: options.tls !== undefined && options.tls !== false },
            "ext_proc listening",
          );
          resolve({ port: bound });
        });
      });
    },
    stop(graceMs = 5000) {
      if (stopping !== undefined) return stopping;
      draining = true;
      clearInterval(sweeper);
      const s = server;
      if (s === undefined) return Promise.resolve();
      stopping = new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          logger.warn({ activeStreams: active }, "ext_proc grace period over; closing remaining streams");
          s.forceShutdown();
          resolve();
        }, graceMs);
        s.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      }).finally(() => {
        server = undefined;
      });
      return stopping;
    },
  };
}
