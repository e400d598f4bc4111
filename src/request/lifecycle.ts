/**
 * The one seam between the ext_proc protocol and the rest of switchyard, defined on the request side so the
 * protocol layer depends on it (never the reverse). The stream state machine turns Envoy's
 * messages into these plain shapes and calls a RequestLifecycle; nothing on the other side sees protobuf types.
 */
import type { Cancellation } from "../common/cancellation.js";

export interface IncomingRequest {
  /** From `x-request-id` (case-insensitive), generated when absent. */
  readonly requestId: string;
  /** Lower-cased names; repeated headers joined with ",". Pseudo-headers (`:path`, `:method`) included. */
  readonly headers: ReadonlyMap<string, string>;
  /** `:method`, or "" when absent. */
  readonly method: string;
  /** `:path`, or "" when absent or empty (the director then looks again: only an absent one falls back). */
  readonly path: string;
  /** The complete request body. Empty for header-only requests. */
  readonly body: Buffer;
  /** True when Envoy sent headers with end_of_stream (e.g. GET): no body will follow. */
  readonly headerOnly: boolean;
  /**
   * Subset hint from `envoy.lb.subset_hint`: undefined when absent; an empty array means "nothing is eligible"
   * (503). Values are `ip:port` or bare IPs; matching is by IP.
   */
  readonly subsetHint: readonly string[] | undefined;
}

export interface RoutingDecision {
  /** `ip:port` strings, primary first. Never empty. */
  readonly endpoints: readonly string[];
  /** Body to forward: the same Buffer when unchanged, a new one when the model was rewritten. */
  readonly body: Buffer;
  /** Extra request headers to set upstream (besides destination, content-length, x-request-id). */
  readonly setHeaders?: readonly (readonly [string, string])[];
  /** Extra dynamic metadata, namespace → key → string value, merged beside `envoy.lb`. */
  readonly metadata?: Readonly<Record<string, Readonly<Record<string, string>>>>;
}

export interface ResponseHeadersInfo {
  /** From `:status` (or `status`); 0 when absent. */
  readonly status: number;
  readonly headers: ReadonlyMap<string, string>;
  /** Endpoint the proxy reports it used (`envoy.lb` / x-gateway-destination-endpoint-served), if any. */
  readonly servedEndpoint: string | undefined;
}

export interface ResponseHeadersResult {
  readonly setHeaders?: readonly (readonly [string, string])[];
}

/** One per ext_proc stream; created when the stream opens. */
export interface RequestLifecycle {
  /**
   * Called once the request is complete (body end, trailers, or header-only). May wait (flow-control queue);
   * `cancel.signal` aborts when Envoy cancels the stream (read it only when about to wait: it is created on first
   * read). Throws SwitchyardError for catalogued failures.
   */
  route(request: IncomingRequest, cancel: Cancellation): RoutingDecision | Promise<RoutingDecision>;
  responseHeaders(info: ResponseHeadersInfo): ResponseHeadersResult;
  /**
   * A response body chunk. Returns the bytes to pass on (may differ when the model name is written back).
   * `streaming` is true for SSE, where chunks are passed on as they arrive.
   */
  responseBody(chunk: Buffer, endOfStream: boolean): Buffer;
  /** Exactly once, when the stream ends for any reason; frees all per-request state. */
  done(outcome: "completed" | "cancelled" | "error"): void;
}

export interface LifecycleFactory {
  begin(): RequestLifecycle;
}
