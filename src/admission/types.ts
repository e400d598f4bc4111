/**
 * The admission seam: between parsing and scheduling, every request passes one Admission object that may admit
 * it at once, make it wait (flow control), or reject it (shedding, budgets, queue limits). Scheduling happens only
 * after admit() resolves, so a queued request is scheduled on fresh metrics (late binding).
 */
import type { Cancellation } from "../common/cancellation.js";
import type { Criticality, Endpoint } from "../datastore/types.js";

export interface AdmissionRequest {
  readonly requestId: string;
  readonly model: string;
  readonly targetModel: string;
  readonly criticality: Criticality;
  /** Effective priority: the objective's, else Critical 1 / Standard 0 / Sheddable −1. */
  readonly priority: number;
  /** Fairness / tenant id (x-gateway-inference-fairness-id, default "default-flow"). */
  readonly tenant: string;
  readonly inputTokens: number;
  /** max_tokens when given; undefined lets the budget use its configured default. */
  readonly maxTokens: number | undefined;
  /** Request body size, for queue byte limits. */
  readonly bytes: number;
}

/** Held by an admitted request until it finishes; reconciles budgets with real usage. */
export interface AdmissionTicket {
  /** Extra response headers for the client (e.g. x-ratelimit-remaining-tokens). */
  readonly headers?: readonly (readonly [string, string])[];
  /**
   * Called when the request ends; only the first call counts. `usedTokens` is the real total when the response
   * reported usage (streamed or not). `served` false means the request never reached a model server (e.g.
   * scheduling failed after admission): budgets refund the whole estimate. Default true: without usage the estimate
   * stays charged.
   */
  release(usedTokens: number | undefined, served?: boolean): void;
}

export interface Admission {
  /**
   * `candidates` is re-evaluated on every call so a queued request sees the pool as it is at dispatch time.
   * Rejects with a SwitchyardError (SY_SHED, SY_RATE_LIMITED, SY_QUEUE_FULL, SY_QUEUE_TIMEOUT,
   * SY_CLIENT_DISCONNECTED). `cancel.signal` aborts when the client goes away; it is read only when the request
   * has to wait, so a request admitted at once never pays for an AbortSignal.
   */
  admit(
    request: AdmissionRequest,
    candidates: () => readonly Endpoint[],
    cancel: Cancellation,
  ): AdmissionTicket | Promise<AdmissionTicket>;
  /** Stops the admission layer's timers (flow-control dispatch, autoscale loop); called once, at EPP shutdown. */
  close(): void;
}
