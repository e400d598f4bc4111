import { appendFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { eppPathPairs, logOffset, readLinesSince, summarizeGatewayLines } from "../../src/bench/gateway-timings.js";

/** A line as deploy/envoy/envoy.yaml's json_format prints it: FILTER_STATE fields as strings, null when unset. */
function line(fields: Record<string, unknown>): string {
  return JSON.stringify({ path: "/v1/chat/completions", code: 200, ...fields });
}

describe("gateway timings from Envoy's access log", () => {
  let dir: string;
  let file: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "sy-gw-"));
    file = join(dir, "envoy-access.log");
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it("reads only the lines appended since an offset, and leaves a torn last line for the next read", () => {
    expect(logOffset(file)).toBe(0);
    expect(readLinesSince(file, 0)).toEqual([]);
    appendFileSync(file, "old 1\nold 2\n");
    const from = logOffset(file);
    appendFileSync(file, "new 1\nnew 2\nnew 3 (torn");
    expect(readLinesSince(file, from)).toEqual(["new 1", "new 2"]);
    appendFileSync(file, ")\n");
    expect(readLinesSince(file, from)).toEqual(["new 1", "new 2", "new 3 (torn)"]);
  });

  it("summarizes EPP lines: request-side exchange, per-chunk mean and max, chunk count", () => {
    const lines = [
      line({
        rx_to_upstream_us: 1200,
        upstream_to_client_us: 300,
        epp_req_headers_us: "1000",
        epp_req_body_us: "1100",
        epp_resp_body_calls: "4",
        epp_resp_body_us: "2000",
        epp_resp_body_max_us: "900",
      }),
      line({
        rx_to_upstream_us: 800,
        upstream_to_client_us: 100,
        epp_req_headers_us: "700",
        epp_req_body_us: null,
        epp_resp_body_calls: "2",
        epp_resp_body_us: "600",
        epp_resp_body_max_us: "400",
      }),
    ];
    const t = summarizeGatewayLines(lines)!;
    expect(t.requests).toBe(2);
    expect(t.before_upstream_us).toMatchObject({ count: 2, min: 800, max: 1200 });
    expect(t.headers_back_us).toMatchObject({ min: 100, max: 300 });
    // The longer of the two request-side exchanges; a missing one does not count as zero time.
    expect(t.epp_request_us).toMatchObject({ count: 2, min: 700, max: 1100 });
    expect(t.epp_chunk_mean_us).toMatchObject({ count: 2, min: 300, max: 500 });
    expect(t.epp_chunk_max_us).toMatchObject({ min: 400, max: 900 });
    expect(t.epp_chunks).toMatchObject({ min: 2, max: 4 });
  });

  it("leaves the EPP figures out for a front door without ext_proc, and skips what is not the workload", () => {
    const lines = [
      line({ rx_to_upstream_us: 150, upstream_to_client_us: 30, epp_req_headers_us: null, epp_resp_body_calls: "-" }),
      JSON.stringify({ path: "/v1/models", rx_to_upstream_us: 99 }),
      JSON.stringify({ path: "/v1/completions", rx_to_upstream_us: 250, upstream_to_client_us: "40" }),
      "{ not json",
      "[2026-12-08 02:00:00] a text line",
    ];
    const t = summarizeGatewayLines(lines)!;
    expect(t.requests).toBe(2);
    expect(t.before_upstream_us).toMatchObject({ count: 2, min: 150, max: 250 });
    expect(t.headers_back_us).toMatchObject({ min: 30, max: 40 });
    expect(t.epp_request_us).toBeUndefined();
    expect(t.epp_chunk_mean_us).toBeUndefined();
    expect(t.epp_chunks).toBeUndefined();
    expect(summarizeGatewayLines([JSON.stringify({ path: "/health" })])).toBeUndefined();
  });

  it("pairs each EPP request's wait before the upstream with its mean time per response chunk", () => {
    const pairs = eppPathPairs([
      line({ rx_to_upstream_us: 1500, epp_resp_body_calls: "4", epp_resp_body_us: "2000" }),
      line({ rx_to_upstream_us: 200, epp_resp_body_calls: null }),
      JSON.stringify({ path: "/v1/models", rx_to_upstream_us: 9, epp_resp_body_calls: "1", epp_resp_body_us: "9" }),
      line({ rx_to_upstream_us: 900, epp_resp_body_calls: "2", epp_resp_body_us: "300" }),
    ]);
    expect(pairs).toEqual({ beforeUs: [1500, 900], chunkUs: [500, 150] });
  });
});
