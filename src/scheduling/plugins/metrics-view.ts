/**
 * The one rule for "unknown" metrics, shared by every metric-reading scorer and filter:
 *
 * - when at least one candidate has fresh metrics (age ≤ the saturation detector's metricsStalenessThreshold),
 *   endpoints with stale or missing metrics are unknown: scorers give them 0 and filters drop them, so a fresh
 *   endpoint always beats one we cannot see (it may be dead or wedged);
 * - when no candidate is fresh (e.g. the event loop stalled the scraper under load), every endpoint's last-known
 *   metrics are used: stale numbers rank endpoints better than a coin toss. Endpoints that never reported stay
 *   unknown.
 */
import { type Endpoint, type EndpointMetrics, isFresh } from "../../datastore/types.js";

export function anyFresh(endpoints: readonly Endpoint[], now: number, staleMs: number): boolean {
  for (let i = 0; i < endpoints.length; i++) {
    if (isFresh(endpoints[i]!, now, staleMs)) return true;
  }
  return false;
}

/** Metrics a plugin may use for `endpoint` given the outcome of anyFresh() for the same candidate list. */
export function usableMetrics(
  endpoint: Endpoint,
  someFresh: boolean,
  now: number,
  staleMs: number,
): EndpointMetrics | undefined {
  const m = endpoint.metrics;
  if (m === undefined) return undefined;
  if (someFresh && !isFresh(endpoint, now, staleMs)) return undefined;
  return m;
}
