/**
 * The messages between the main thread (scraper.ts) and a scrape worker (scrape-worker.ts)
 * (docs/design/model-servers.md §9).
 *
 * Scrape results travel as one Float64Array per batch, RECORD numbers per scrape, transferred (not copied); the
 * variable-length parts (LoRA adapter lists, served models, `unreported`, error strings) ride beside it in `vars`
 * only when they changed for that endpoint (OK records) or on a failure, so a steady fleet posts numbers only.
 */
import type { ScrapeFailureReason, ScrapeSettings } from "./scrape-loop.js";

/** Numbers per scrape record in a batch. */
export const RECORD = 12;
/** Field offsets within a record. */
export const F_ID = 0;
/** 1 = the scrape succeeded, 0 = it failed. */
export const F_OK = 1;
export const F_DURATION = 2;
/** Main-thread performance.now() ms (converted by the worker). */
export const F_UPDATE_TIME = 3;
/** Main-thread performance.now() ms, NaN when unset. */
export const F_VALID_UNTIL = 4;
export const F_WAITING = 5;
export const F_RUNNING = 6;
export const F_KV = 7;
export const F_MAX_ACTIVE = 8;
export const F_BLOCK_SIZE = 9;
export const F_NUM_BLOCKS = 10;
/** Index into the batch's `vars`, or -1 when nothing variable-length changed. */
export const F_VARS = 11;

/** The variable-length parts of a successful scrape, sent when they differ from the last ones sent. */
export interface OkVars {
  readonly lora: "reported" | "pending" | undefined;
  readonly unreported: string | undefined;
  readonly active: readonly string[];
  readonly waiting: readonly string[];
  readonly served: readonly string[];
}

/** A failed scrape's error, sent with every failure (failures back off, so they are few). */
export interface FailVars {
  readonly error: string;
  readonly reason: ScrapeFailureReason;
  readonly statusCode: number | undefined;
}

/** What a worker knows of an endpoint: enough to scrape it and resolve its engine. */
export interface WireEndpoint {
  readonly id: number;
  readonly key: string;
  readonly name: string;
  readonly podName: string;
  readonly namespace: string;
  readonly address: string;
  readonly port: number;
  readonly rank: number;
  readonly engine: string;
  readonly labels: Readonly<Record<string, string>>;
}

export interface ScrapeWorkerData {
  readonly settings: ScrapeSettings;
  /** The main logger's level, so the worker formats only lines that will be written. */
  readonly logLevel: string;
  /** Main thread performance.now() minus process.hrtime in ms: converts the worker's clock to the main one. */
  readonly mainClockShift: number;
  /** A batch is posted this long after its first record, or earlier when `maxBatch` records are waiting. */
  readonly flushMs: number;
  readonly maxBatch: number;
  /** Nice value for the worker's own thread (Linux); undefined leaves it as it is. */
  readonly nice: number | undefined;
  /** CPUs the worker's own thread is pinned to at start (`--pin-threads`, Linux); undefined leaves it as it is. */
  readonly cpus: readonly number[] | undefined;
}

/** Where an "add" message's endpoints stand in a larger join (scrape-loop.ts, JoinSpread). */
export interface WireJoin {
  readonly size: number;
  /** Main-thread performance.now() ms (converted by the worker). */
  readonly startedAt: number;
  /** Position of each endpoint of the message in the whole join. */
  readonly index: readonly number[];
}

export type ToWorker =
  /** Without `join` the message's endpoints are the whole join (a restarted worker's shard). */
  | { readonly op: "add"; readonly endpoints: readonly WireEndpoint[]; readonly join?: WireJoin }
  | { readonly op: "remove"; readonly ids: readonly number[] }
  /** Whether this EPP has requests in flight there (1) or not (0): ends or allows idle scraping. */
  | { readonly op: "busy"; readonly ids: readonly number[]; readonly busy: readonly number[] }
  | { readonly op: "stop" }
  /** Tests: throw an uncaught error inside the worker. */
  | { readonly op: "crash" };

export type FromWorker =
  | { readonly op: "batch"; readonly nums: Float64Array; readonly vars: readonly (OkVars | FailVars)[] }
  | {
      readonly op: "models";
      readonly id: number;
      /** null: the server has no model list (404). */
      readonly ids: readonly string[] | null;
      readonly adapters: readonly (readonly [string, string])[];
      readonly updateTime: number;
    }
  | { readonly op: "log"; readonly level: string; readonly obj: unknown; readonly msg: string }
  | { readonly op: "stopped" };

/** Milliseconds on the process-wide monotonic clock every thread shares (performance.now() is per thread). */
export function monotonicMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}
