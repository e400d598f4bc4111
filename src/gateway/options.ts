/** Options of `startGateway`, validated up front like undici's constructors: a bad value fails with its name. */
import { ConfigError } from "../common/errors.js";
import type { Logger } from "../observability/logger.js";
import { normalizeEndpoint } from "./endpoints.js";

export type FailureMode = "FailOpen" | "FailClose";
export type LbPolicy = "epp" | "round-robin" | "least-request";
/**
 * How a finished exchange closes its ext_proc stream, as Envoy 1.40 does: "reset" is Envoy's default (half-close
 * and reset at once unless the EPP already ended the call), "graceful" is Envoy with
 * `envoy.reloadable_features.ext_proc_graceful_grpc_close` (half-close, wait for the EPP to end it).
 */
export type ExtProcClose = "graceful" | "reset";
export const EXT_PROC_CLOSE_MODES: readonly ExtProcClose[] = ["graceful", "reset"];

export const FAILURE_MODES: readonly FailureMode[] = ["FailOpen", "FailClose"];
export const LB_POLICIES: readonly LbPolicy[] = ["epp", "round-robin", "least-request"];

export const GATEWAY_DEFAULTS = {
  port: 8080,
  host: "127.0.0.1",
  eppTimeoutMs: 10_000,
  eppConnections: 2,
  failureMode: "FailClose" as FailureMode,
  upstreamTimeoutMs: 300_000,
  upstreamConnections: 1024,
  leastRequestChoices: 2,
  shutdownGraceMs: 5_000,
  extProcClose: "graceful" as ExtProcClose,
} as const;

export interface GatewayOptions {
  /** Listen port; 0 picks a free one. Default 8080. */
  port?: number;
  /** Listen address. Default 127.0.0.1. */
  host?: string;
  /** EPP gRPC target (`host:port`). When set, `lb` defaults to "epp". */
  epp?: string;
  /** TLS to the EPP, accepting any certificate. Default false. */
  eppTls?: boolean;
  /** Per-message EPP timeout, ms (Envoy message_timeout). Default 10000. */
  eppTimeoutMs?: number;
  /** HTTP/2 connections to the EPP. Default 2. */
  eppConnections?: number;
  /** What to do when the EPP fails. Default FailClose (the InferencePool API default). */
  failureMode?: FailureMode;
  /** Routing policy. Default "epp" with an EPP, else "round-robin". */
  lb?: LbPolicy;
  /** Static endpoints (`ip:port`) for the baselines and fail-open routing. Default none. */
  endpoints?: readonly string[];
  /** Upstream response-headers and body-idle timeout, ms. Default 300000. */
  upstreamTimeoutMs?: number;
  /** Upstream connections per endpoint. Default 1024. */
  upstreamConnections?: number;
  /** Subset hint sent to the EPP in `envoy.lb.subset_hint` on every message. Default none (no hint). */
  subset?: readonly string[];
  /** Least-request sample size (Envoy choice_count). Default 2. */
  leastRequestChoices?: number;
  /** How long close() waits for in-flight requests before cutting them, ms. Default 5000. */
  shutdownGraceMs?: number;
  /** Default "graceful", like the shipped deploy/envoy/envoy.yaml; "reset" is Envoy's own default. */
  extProcClose?: ExtProcClose;
  /**
   * Answer requests without this header 401 before the EPP, the local reply then passing through the EPP's
   * response path, as an auth filter ahead of the EPP does in Envoy Gateway. Default none.
   */
  requireHeader?: string;
  logger?: Logger;
}

export interface ResolvedGatewayOptions {
  readonly port: number;
  readonly host: string;
  readonly epp: string | undefined;
  readonly eppTls: boolean;
  readonly eppTimeoutMs: number;
  readonly eppConnections: number;
  readonly failureMode: FailureMode;
  readonly lb: LbPolicy;
  readonly endpoints: readonly string[];
  readonly upstreamTimeoutMs: number;
  readonly upstreamConnections: number;
  readonly subset: readonly string[] | undefined;
  readonly leastRequestChoices: number;
  readonly shutdownGraceMs: number;
  readonly extProcClose: ExtProcClose;
  readonly requireHeader: string | undefined;
}

function positiveInt(name: string, value: number | undefined, fallback: number, min = 1): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < min) throw new ConfigError(`must be an integer >= ${min}`, undefined, name);
  return value;
}

export function validateEndpoints(field: string, list: readonly string[]): string[] {
  const out: string[] = [];
  for (const item of list) {
    const ep = normalizeEndpoint(item);
    if (ep === undefined) throw new ConfigError(`"${item}" is not an ip:port endpoint`, undefined, field);
    if (!out.includes(ep)) out.push(ep);
  }
  return out;
}

export function resolveGatewayOptions(options: GatewayOptions): ResolvedGatewayOptions {
  const port = options.port ?? GATEWAY_DEFAULTS.port;
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    throw new ConfigError("must be a port number 0..65535", undefined, "port");
  const host = options.host ?? GATEWAY_DEFAULTS.host;
  if (typeof host !== "string" || host === "") throw new ConfigError("must be a non-empty address", undefined, "host");
  const epp = options.epp === undefined || options.epp === "" ? undefined : options.epp;
  const failureMode = options.failureMode ?? GATEWAY_DEFAULTS.failureMode;
  if (!FAILURE_MODES.includes(failureMode))
    throw new ConfigError(`must be one of ${FAILURE_MODES.join(", ")}`, undefined, "failureMode");
  const lb = options.lb ?? (epp === undefined ? "round-robin" : "epp");
  if (!LB_POLICIES.includes(lb)) throw new ConfigError(`must be one of ${LB_POLICIES.join(", ")}`, undefined, "lb");
  if (lb === "epp" && epp === undefined) throw new ConfigError("lb epp needs an EPP address (epp)", undefined, "lb");
  const extProcClose = options.extProcClose ?? GATEWAY_DEFAULTS.extProcClose;
  if (!EXT_PROC_CLOSE_MODES.includes(extProcClose))
    throw new ConfigError(`must be one of ${EXT_PROC_CLOSE_MODES.join(", ")}`, undefined, "extProcClose");
  return {
    port,
    host,
    epp,
    eppTls: options.eppTls ?? false,
    eppTimeoutMs: positiveInt("eppTimeoutMs", options.eppTimeoutMs, GATEWAY_DEFAULTS.eppTimeoutMs),
    eppConnections: positiveInt("eppConnections", options.eppConnections, GATEWAY_DEFAULTS.eppConnections),
    failureMode,
    lb,
    endpoints: validateEndpoints("endpoints", options.endpoints ?? []),
    upstreamTimeoutMs: positiveInt("upstreamTimeoutMs", options.upstreamTimeoutMs, GATEWAY_DEFAULTS.upstreamTimeoutMs),
    upstreamConnections: positiveInt(
      "upstreamConnections",
      options.upstreamConnections,
      GATEWAY_DEFAULTS.upstreamConnections,
    ),
    // The subset list is passed verbatim: an empty list is meaningful (the EPP must answer 503).
    subset: options.subset === undefined ? undefined : [...options.subset],
    leastRequestChoices: positiveInt(
      "leastRequestChoices",
      options.leastRequestChoices,
      GATEWAY_DEFAULTS.leastRequestChoices,
    ),
    shutdownGraceMs: positiveInt("shutdownGraceMs", options.shutdownGraceMs, GATEWAY_DEFAULTS.shutdownGraceMs, 0),
    extProcClose,
    requireHeader:
      options.requireHeader === undefined || options.requireHeader === ""
        ? undefined
        : options.requireHeader.toLowerCase(),
  };
}
