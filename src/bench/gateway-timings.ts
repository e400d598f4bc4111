/**
 * What the front door itself costs each request, read from real Envoy's access log (deploy/envoy/envoy.yaml writes
 * the fields; docs/envoy.md "Access log" says what each one times). The bench reads the lines one stage appended, so
 * every mode's own time in the gateway — the EPP's round trips included — is a reading, not a fit.
 */
import { closeSync, fstatSync, openSync, readSync, statSync } from "node:fs";
import { type Dist, dist } from "./stats.js";

/** Per stage, over the completion requests Envoy logged. Microseconds of wall time. */
export interface GatewayTimings {
  readonly requests: number;
  /** First request byte from the client → first byte to the upstream: everything the request waits for in Envoy. */
  readonly before_upstream_us: Dist | undefined;
  /** First response byte from the upstream → first response byte to the client (the response headers' crossing). */
  readonly headers_back_us: Dist | undefined;
  /** EPP modes: Envoy's time for the request-side ext_proc exchange (the longer of headers and body). */
  readonly epp_request_us: Dist | undefined;
  /** EPP modes: mean time per response body chunk through ext_proc, one value per request. */
  readonly epp_chunk_mean_us: Dist | undefined;
  /** EPP modes: the slowest response chunk of each request. */
  readonly epp_chunk_max_us: Dist | undefined;
  /** EPP modes: response body chunks each request sent through ext_proc. */
  readonly epp_chunks: Dist | undefined;
}

/** Byte offset of the end of `file` (0 when it does not exist yet): where the next stage's lines will start. */
export function logOffset(file: string): number {
  try {
    return statSync(file).size;
  } catch {
    return 0;
  }
}

/** Bounds what one stage may read: a stage logs one short line per request. */
const MAX_READ_BYTES = 64 * 1024 * 1024;

/** The complete lines appended to `file` since `offset` (a torn last line is left for the next read). */
export function readLinesSince(file: string, offset: number): string[] {
  let fd: number;
  try {
    fd = openSync(file, "r");
  } catch {
    return [];
  }
  try {
    const size = fstatSync(fd).size;
    const length = Math.min(Math.max(0, size - offset), MAX_READ_BYTES);
    if (length === 0) return [];
    const buf = Buffer.allocUnsafe(length);
    const got = readSync(fd, buf, 0, length, offset);
    const text = buf.toString("utf8", 0, got);
    const end = text.lastIndexOf("\n");
    return end < 0 ? [] : text.slice(0, end).split("\n");
  } finally {
    closeSync(fd);
  }
}

/** Envoy prints a missing value as null (JSON) or "-"; numbers may arrive as strings (FILTER_STATE). */
function num(v: unknown): number | undefined {
  if (typeof v === "number") return Number.isFinite(v) ? v : undefined;
  if (typeof v !== "string" || v === "" || v === "-") return undefined;
  const n = Number(v);
  return Number.isFinite(n) ? n : undefined;
}

/** Completion requests only: the bench's readiness probes and the simulators' side calls are not the workload. */
const WORKLOAD_PATH = /^\/v1\/(chat\/)?completions/;

/** The JSON lines of completion requests; anything else (text, torn or foreign lines, other paths) is skipped. */
function workloadRows(lines: readonly string[]): Record<string, unknown>[] {
  const rows: Record<string, unknown>[] = [];
  for (const line of lines) {
    if (!line.startsWith("{")) continue;
    let row: Record<string, unknown>;
    try {
      row = JSON.parse(line) as Record<string, unknown>;
    } catch {
      continue;
    }
    if (typeof row.path === "string" && WORKLOAD_PATH.test(row.path)) rows.push(row);
  }
  return rows;
}

export function summarizeGatewayLines(lines: readonly string[]): GatewayTimings | undefined {
  const before: number[] = [];
  const back: number[] = [];
  const eppRequest: number[] = [];
  const chunkMean: number[] = [];
  const chunkMax: number[] = [];
  const chunks: number[] = [];
  let requests = 0;
  for (const row of workloadRows(lines)) {
    requests++;
    const push = (into: number[], v: number | undefined) => {
      if (v !== undefined) into.push(v);
    };
    push(before, num(row.rx_to_upstream_us));
    push(back, num(row.upstream_to_client_us));
    const h = num(row.epp_req_headers_us);
    const b = num(row.epp_req_body_us);
    if (h !== undefined || b !== undefined) eppRequest.push(Math.max(h ?? 0, b ?? 0));
    const calls = num(row.epp_resp_body_calls);
    const total = num(row.epp_resp_body_us);
    if (calls !== undefined && calls > 0) {
      chunks.push(calls);
      if (total !== undefined) chunkMean.push(total / calls);
      push(chunkMax, num(row.epp_resp_body_max_us));
    }
  }
  if (requests === 0) return undefined;
  return {
    requests,
    before_upstream_us: dist(before),
    headers_back_us: dist(back),
    epp_request_us: dist(eppRequest),
    epp_chunk_mean_us: dist(chunkMean),
    epp_chunk_max_us: dist(chunkMax),
    epp_chunks: dist(chunks),
  };
}

/**
 * One pair per logged EPP request, µs: its wait before the upstream and its mean ext_proc time per response chunk
 * (the access log has no first-chunk field; the mean stands in for the first chunk the client waits on). What
 * `switchyard fleetsim --epp-path` replays in virtual time.
 */
export function eppPathPairs(lines: readonly string[]): { readonly beforeUs: number[]; readonly chunkUs: number[] } {
  const beforeUs: number[] = [];
  const chunkUs: number[] = [];
  for (const row of workloadRows(lines)) {
    const before = num(row.rx_to_upstream_us);
    const calls = num(row.epp_resp_body_calls);
    const total = num(row.epp_resp_body_us);
    if (before === undefined || calls === undefined || calls <= 0 || total === undefined) continue;
    beforeUs.push(before);
    chunkUs.push(total / calls);
  }
  return { beforeUs, chunkUs };
}
