/**
 * Renders a /debug/endpoints snapshot as a fixed-width table, shared by `switchyard top` and `switchyard up`.
 * Pure string building: callers decide whether to redraw (TTY) or append (logs).
 */
import type { DebugSnapshot } from "./debug.js";
import type { DecisionRecord } from "./decisions.js";

export interface TableOptions {
  /** ANSI colours for saturation and staleness hints. Default false. */
  readonly color?: boolean;
  /** Also list this many of the most recent routing decisions. Default 0. */
  readonly decisions?: number;
}

const pct = (v: number) => `${(v * 100).toFixed(0)}%`;

function age(ms: number | null): string {
  if (ms === null) return "never";
  return ms < 1000 ? `${Math.round(ms)}ms` : `${(ms / 1000).toFixed(1)}s`;
}

/** Decision times are epoch ms (current director) or ISO text (older snapshots); show wall-clock time only. */
function clock(time: number | string): string {
  const d = new Date(time);
  return Number.isNaN(d.getTime()) ? String(time) : d.toISOString().slice(11, 23);
}

function columns(header: readonly string[], rows: readonly string[][]): (cells: readonly string[]) => string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  return (cells) =>
    cells
      .map((c, i) => c.padEnd(widths[i]!))
      .join("  ")
      .trimEnd();
}

export function renderEndpointTable(snapshot: DebugSnapshot, options: TableOptions = {}): string {
  const color = options.color === true;
  const paint = (code: number, s: string) => (color ? `\u001b[${code}m${s}\u001b[0m` : s);
  const header = ["ENDPOINT", "POD", "QUEUE", "RUNNING", "KV", "ADAPTERS", "INFLIGHT", "ROUTED", "AGE"];
  const rows: string[][] = snapshot.endpoints.map((e) => {
    const m = e.metrics;
    const adapters = m ? [...m.activeAdapters, ...m.waitingAdapters.map((a) => `${a}(waiting)`)].join(",") || "-" : "-";
    return [
      e.key,
      e.pod,
      m ? String(m.queue) : "?",
      m ? String(m.running) : "?",
      m ? pct(m.kvCacheUsage) : "?",
      adapters,
      String(e.inflight),
      String(e.routed),
      e.fresh ? age(e.ageMs) : `${age(e.ageMs)} STALE`,
    ];
  });
  const line = columns(header, rows);
  const pool = snapshot.pool ? `${snapshot.pool.namespace}/${snapshot.pool.name}` : "(no pool)";
  const sat = `saturation ${snapshot.saturation.toFixed(2)}${snapshot.saturated ? " SATURATED" : ""}`;
  const fresh = snapshot.endpoints.filter((e) => e.fresh).length;
  const out = [
    `pool ${pool}  endpoints ${snapshot.endpoints.length} (${fresh} fresh)  ${snapshot.saturated ? paint(31, sat) : paint(32, sat)}  ${snapshot.synced ? "" : paint(33, "NOT SYNCED  ")}${snapshot.time}`,
    paint(1, line(header)),
    ...rows.map((r, i) => {
      const e = snapshot.endpoints[i]!;
      const text = line(r);
      return !e.fresh ? paint(33, text) : text;
    }),
  ];
  if (snapshot.endpoints.length === 0) out.push("(no endpoints yet)");
  for (const e of snapshot.endpoints) if (e.lastScrapeError) out.push(paint(31, `! ${e.key}: ${e.lastScrapeError}`));
  const n = Math.max(0, Math.trunc(options.decisions ?? 0));
  if (n > 0 && snapshot.decisions.length > 0) {
    out.push("", paint(1, "recent decisions (newest first)"), ...renderDecisions(snapshot.decisions.slice(0, n)));
  }
  return `${out.join("\n")}\n`;
}

/** One line per decision: time, request id, model → target, criticality, then the endpoint or the error. */
export function renderDecisions(decisions: readonly DecisionRecord[]): string[] {
  const rows = decisions.map((d) => [
    clock(d.time),
    d.requestId,
    d.model === d.targetModel || d.targetModel === "" ? d.model : `${d.model}->${d.targetModel}`,
    d.criticality,
    d.outcome === "routed"
      ? `-> ${(d.endpoints ?? []).join(",")}${d.schedulingMicros === undefined ? "" : ` (${d.schedulingMicros}us)`}`
      : `x ${d.error ? `${d.error.status} ${d.error.code}: ${d.error.message}` : "rejected"}`,
  ]);
  const line = columns(["", "", "", "", ""], rows);
  return rows.map(line);
}
