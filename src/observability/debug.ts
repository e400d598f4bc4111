/**
 * The JSON document served at /debug/endpoints. `switchyard top` and the local stack's live table read it, so it
 * is a stable, versioned shape (bump `version` on breaking changes).
 */
import type { DecisionRecord } from "./decisions.js";

export interface DebugEndpoint {
  readonly name: string;
  readonly key: string;
  readonly pod: string;
  readonly engine: string;
  /** Metrics no older than the saturation staleness bound. */
  readonly fresh: boolean;
  /** ms since the last successful scrape; null when never scraped. */
  readonly ageMs: number | null;
  readonly metrics: {
    readonly queue: number;
    readonly running: number;
    readonly kvCacheUsage: number;
    readonly activeAdapters: readonly string[];
    readonly waitingAdapters: readonly string[];
    readonly maxLoras: number;
    readonly blockSize: number;
    readonly numBlocks: number;
  } | null;
  readonly inflight: number;
  readonly inflightTokens: number;
  readonly routed: number;
  /**
   * Own-load accounting fused with the gauges and the learned latency model (docs/design/scheduling.md §11); null
   * until the first request is routed to the endpoint. Optional: older EPPs do not send it.
   */
  readonly load?: {
    readonly fusedRequests: number;
    readonly prefillTokens: number;
    readonly decodeTokens: number;
    readonly overheadMs: number;
    readonly prefillMsPerToken: number;
    readonly aheadMsPerToken?: number;
    readonly interferenceMsPerRequest: number;
    readonly loadedPrefillMsPerTokenPerRequest?: number;
    readonly interTokenMs: number;
    readonly ttftObservations: number;
  } | null;
  readonly lastScrapeError: string | null;
}

export interface DebugSnapshot {
  readonly version: 1;
  readonly time: string;
  readonly pool: {
    readonly name: string;
    readonly namespace: string;
    readonly selector: Readonly<Record<string, string>>;
    readonly targetPorts: readonly number[];
  } | null;
  readonly synced: boolean;
  readonly saturation: number;
  readonly saturated: boolean;
  readonly endpoints: readonly DebugEndpoint[];
  readonly decisions: readonly DecisionRecord[];
}
