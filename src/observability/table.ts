/**
 * Renders a /debug/endpoints snapshot as a fixed-width table, shared by `switchyard top` and `switchyard up`.
 */
import type { DebugSnapshot } from "./debug.js";

export interface TableOptions {
  /** ANSI colours for saturation hints. Default false. */
  readonly color?: boolean;
}

const pct = (v: number) => `${(v * 100).toFixed(0)}%`;

export function renderEndpointTable(snapshot: DebugSnapshot, options: TableOptions = {}): string {
  const color = options.color === true;
  const paint = (code: number, s: string) => (color ? `\u001b[${code}m${s}\u001b[0m` : s);
  const header = ["ENDPOINT", "POD", "QUEUE", "RUNNING", "KV", "ADAPTERS", "INFLIGHT", "ROUTED", "AGE"];
  const rows: string[][] = snapshot.endpoints.map((e) => {
    const m = e.metrics;
    const adapters = m ? [...m.activeAdapters, ...m.waitingAdapters.map((a) => `${a}(waiting)`)].join(",") || "-" : "-";
    const age =
      e.ageMs === null ? "never" : e.ageMs < 1000 ? `${Math.round(e.ageMs)}ms` : `${(e.ageMs / 1000).toFixed(1)}s`;
    return [
      e.key,
      e.pod,
      m ? String(m.queue) : "?",
      m ? String(m.running) : "?",
      m ? pct(m.kvCacheUsage) : "?",
      adapters,
      String(e.inflight),
      String(e.routed),
      e.fresh ? age : `${age} STALE`,
    ];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i]!))
      .join("  ")
      .trimEnd();
  const pool = snapshot.pool ? `${snapshot.pool.namespace}/${snapshot.pool.name}` : "(no pool)";
  const sat = `saturation ${snapshot.saturation.toFixed(2)}${snapshot.saturated ? " SATURATED" : ""}`;
  const out = [
    `pool ${pool}  endpoints ${snapshot.endpoints.length}  ${snapshot.saturated ? paint(31, sat) : paint(32, sat)}  ${snapshot.time}`,
    paint(1, line(header)),
    ...rows.map((r, i) => {
      const e = snapshot.endpoints[i]!;
      const text = line(r);
      return !e.fresh ? paint(33, text) : text;
    }),
  ];
  if (snapshot.endpoints.length === 0) out.push("(no endpoints yet)");
  return `${out.join("\n")}\n`;
}
