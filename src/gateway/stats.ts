/** Counters the local stack and the benchmark read through `gateway.stats()`. Plain numbers: no hot-path cost. */

export interface GatewayStats {
  /** HTTP requests received. */
  readonly requests: number;
  /** Responses the client received in full (any status). */
  readonly completed: number;
  /** Upstream requests per endpoint actually used (the served endpoint), counted when response headers arrive. */
  readonly routed: Readonly<Record<string, number>>;
  /** Upstream requests in flight per endpoint right now. */
  readonly inFlight: Readonly<Record<string, number>>;
  /** Requests routed over the static list because the EPP failed (FailOpen) or closed the stream before answering. */
  readonly failOpen: number;
  /** Requests that failed: a gateway-generated 5xx or a reset stream (client aborts excluded). */
  readonly errors: number;
  /** EPP failures of any kind: unreachable, gRPC error, timeout, early close, protocol violation. */
  readonly eppErrors: number;
  /** ImmediateResponses from the EPP passed to the client. */
  readonly immediateResponses: number;
  /** Upstream attempts abandoned for the next endpoint after a connection failure. */
  readonly retries: number;
  /** The EPP's destination header and `envoy.lb` metadata disagreed (the header was used). */
  readonly destinationMismatch: number;
  /** Clients that went away before their response finished. */
  readonly clientAborts: number;
  /** ext_proc streams the gateway cancelled (client abort, failure) instead of half-closing them. */
  readonly eppCancels: number;
}

export class StatsRecorder {
  requests = 0;
  completed = 0;
  failOpen = 0;
  errors = 0;
  eppErrors = 0;
  immediateResponses = 0;
  retries = 0;
  destinationMismatch = 0;
  clientAborts = 0;
  eppCancels = 0;
  readonly routed = new Map<string, number>();

  route(endpoint: string): void {
    this.routed.set(endpoint, (this.routed.get(endpoint) ?? 0) + 1);
  }

  snapshot(inFlight: Readonly<Record<string, number>>): GatewayStats {
    return {
      requests: this.requests,
      completed: this.completed,
      routed: Object.fromEntries(this.routed),
      inFlight,
      failOpen: this.failOpen,
      errors: this.errors,
      eppErrors: this.eppErrors,
      immediateResponses: this.immediateResponses,
      retries: this.retries,
      destinationMismatch: this.destinationMismatch,
      clientAborts: this.clientAborts,
      eppCancels: this.eppCancels,
    };
  }
}
