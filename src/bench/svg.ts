/**
 * A dependency-free SVG line chart: axes with "nice" ticks, grid lines, a legend, and exactly one <path> per
 * series (markers are circles, axes are lines), so a reader — or a test — can count the series by their paths.
 */

export interface Series {
  readonly name: string;
  readonly color: string;
  /** [x, y] points; non-finite y values are skipped. */
  readonly points: readonly (readonly [number, number])[];
}

export interface ChartOptions {
  readonly title: string;
  readonly xLabel: string;
  readonly yLabel: string;
  readonly series: readonly Series[];
  readonly width?: number;
  readonly height?: number;
  /** Force the y axis to start at zero (default true). */
  readonly yFromZero?: boolean;
}

export function escapeXml(text: string): string {
  return text
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;")
    .replace(/'/g, "&apos;");
}

/** Tick values covering [min, max] with a 1/2/5 × 10^k step, about `target` of them. */
export function niceTicks(min: number, max: number, target = 5): number[] {
  if (!Number.isFinite(min) || !Number.isFinite(max)) return [0, 1];
  if (max === min) {
    const pad = max === 0 ? 1 : Math.abs(max) * 0.1;
    min -= pad;
    max += pad;
  }
  const raw = (max - min) / Math.max(1, target);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / mag;
  const step = (norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 5 ? 5 : 10) * mag;
  const start = Math.floor(min / step) * step;
  const end = Math.ceil(max / step) * step;
  const ticks: number[] = [];
  for (let v = start; v <= end + step / 2; v += step) ticks.push(Number(v.toPrecision(12)));
  return ticks;
}

function formatTick(v: number): string {
  if (Math.abs(v) >= 10_000) return `${(v / 1000).toFixed(0)}k`;
  if (Math.abs(v) >= 1000) return `${(v / 1000).toFixed(1).replace(/\.0$/, "")}k`;
  if (Number.isInteger(v)) return String(v);
  return v.toFixed(Math.abs(v) < 1 ? 2 : 1);
}

export function renderLineChart(o: ChartOptions): string {
  const width = o.width ?? 720;
  const height = o.height ?? 420;
  const m = { left: 72, right: 180, top: 44, bottom: 56 };
  const pw = width - m.left - m.right;
  const ph = height - m.top - m.bottom;
  const pts = o.series.flatMap((s) => s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y)));
  const xs = pts.map(([x]) => x);
  const ys = pts.map(([, y]) => y);
  const xTicks = niceTicks(Math.min(...xs, Number.POSITIVE_INFINITY), Math.max(...xs, Number.NEGATIVE_INFINITY));
  const yMinData = Math.min(...ys, Number.POSITIVE_INFINITY);
  const yTicks = niceTicks(
    o.yFromZero === false ? yMinData : Math.min(0, yMinData),
    Math.max(...ys, Number.NEGATIVE_INFINITY),
  );
  const x0 = xTicks[0]!;
  const x1 = xTicks[xTicks.length - 1]!;
  const y0 = yTicks[0]!;
  const y1 = yTicks[yTicks.length - 1]!;
  const sx = (x: number) => m.left + ((x - x0) / (x1 - x0 || 1)) * pw;
  const sy = (y: number) => m.top + ph - ((y - y0) / (y1 - y0 || 1)) * ph;
  const f = (n: number) => n.toFixed(1);

  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
  );
  out.push(`<title>${escapeXml(o.title)}</title>`);
  out.push(`<rect x="0" y="0" width="${width}" height="${height}" fill="#ffffff"/>`);
  out.push(
    `<text x="${f(m.left + pw / 2)}" y="24" text-anchor="middle" font-size="15" font-weight="bold">${escapeXml(o.title)}</text>`,
  );
  out.push('<g class="grid" stroke="#e5e5e5" stroke-width="1">');
  for (const t of yTicks) out.push(`<line x1="${m.left}" y1="${f(sy(t))}" x2="${m.left + pw}" y2="${f(sy(t))}"/>`);
  for (const t of xTicks) out.push(`<line x1="${f(sx(t))}" y1="${m.top}" x2="${f(sx(t))}" y2="${m.top + ph}"/>`);
  out.push("</g>");
  out.push('<g class="axes" stroke="#333333" stroke-width="1">');
  out.push(`<line x1="${m.left}" y1="${m.top + ph}" x2="${m.left + pw}" y2="${m.top + ph}"/>`);
  out.push(`<line x1="${m.left}" y1="${m.top}" x2="${m.left}" y2="${m.top + ph}"/>`);
  for (const t of xTicks)
    out.push(`<line x1="${f(sx(t))}" y1="${m.top + ph}" x2="${f(sx(t))}" y2="${m.top + ph + 5}"/>`);
  for (const t of yTicks) out.push(`<line x1="${m.left - 5}" y1="${f(sy(t))}" x2="${m.left}" y2="${f(sy(t))}"/>`);
  out.push("</g>");
  out.push('<g class="ticks" fill="#333333">');
  for (const t of xTicks)
    out.push(`<text x="${f(sx(t))}" y="${m.top + ph + 19}" text-anchor="middle">${escapeXml(formatTick(t))}</text>`);
  for (const t of yTicks)
    out.push(`<text x="${m.left - 8}" y="${f(sy(t) + 4)}" text-anchor="end">${escapeXml(formatTick(t))}</text>`);
  out.push("</g>");
  out.push(`<text x="${f(m.left + pw / 2)}" y="${height - 14}" text-anchor="middle">${escapeXml(o.xLabel)}</text>`);
  out.push(
    `<text x="18" y="${f(m.top + ph / 2)}" text-anchor="middle" transform="rotate(-90 18 ${f(m.top + ph / 2)})">${escapeXml(o.yLabel)}</text>`,
  );
  for (const s of o.series) {
    const p = s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y)).sort((a, b) => a[0] - b[0]);
    const d = p.map(([x, y], i) => `${i === 0 ? "M" : "L"}${f(sx(x))},${f(sy(y))}`).join(" ");
    out.push(`<g class="series" data-series="${escapeXml(s.name)}">`);
    out.push(`<path d="${d === "" ? "M0,0" : d}" fill="none" stroke="${s.color}" stroke-width="2.5"/>`);
    for (const [x, y] of p) out.push(`<circle cx="${f(sx(x))}" cy="${f(sy(y))}" r="3.5" fill="${s.color}"/>`);
    out.push("</g>");
  }
  out.push('<g class="legend">');
  o.series.forEach((s, i) => {
    const y = m.top + 10 + i * 22;
    const x = m.left + pw + 20;
    out.push(`<line x1="${x}" y1="${y}" x2="${x + 24}" y2="${y}" stroke="${s.color}" stroke-width="2.5"/>`);
    out.push(`<text x="${x + 32}" y="${y + 4}">${escapeXml(s.name)}</text>`);
  });
  out.push("</g>");
  out.push("</svg>");
  return `${out.join("\n")}\n`;
}
