/** A small SVG line chart (no dependency): series of (x, y) points, optional horizontal reference lines. */

export interface Series {
  name: string;
  points: [number, number][];
}

export interface ChartSpec {
  title: string;
  xLabel: string;
  yLabel: string;
  series: Series[];
  /** Horizontal lines, e.g. a floor measured in the same run. */
  hlines?: { name: string; y: number }[];
  /** A line of text under the title (e.g. why a series is missing). */
  note?: string;
  width?: number;
  height?: number;
}

const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf"];

const esc = (s: string): string => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");

/** "Nice" tick step for a range: 1, 2 or 5 times a power of ten. */
function niceStep(range: number, ticks: number): number {
  const raw = range / Math.max(1, ticks);
  const p = 10 ** Math.floor(Math.log10(raw));
  const m = raw / p;
  return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
}

const label = (v: number): string => (Math.abs(v) >= 100 || Number.isInteger(v) ? String(Math.round(v)) : String(Number(v.toPrecision(2))));

export function lineChart(spec: ChartSpec): string {
  const W = spec.width ?? 720;
  const H = spec.height ?? 420;
  const m = { left: 64, right: 190, top: spec.note ? 62 : 44, bottom: 52 };
  const pw = W - m.left - m.right;
  const ph = H - m.top - m.bottom;
  const xs = spec.series.flatMap((s) => s.points.map((p) => p[0]));
  const ys = [...spec.series.flatMap((s) => s.points.map((p) => p[1])), ...(spec.hlines ?? []).map((h) => h.y)];
  const xMax = Math.max(1, ...xs);
  const xMin = Math.min(0, ...xs);
  const yStep = niceStep(Math.max(1e-9, ...ys), 6);
  const yMax = Math.max(yStep, Math.ceil(Math.max(0, ...ys) / yStep) * yStep);
  const sx = (x: number) => m.left + ((x - xMin) / (xMax - xMin || 1)) * pw;
  const sy = (y: number) => m.top + ph - (y / yMax) * ph;
  const o: string[] = [];
  o.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
  o.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  o.push(`<text x="${W / 2 - m.right / 2 + m.left / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${esc(spec.title)}</text>`);
  if (spec.note) o.push(`<text x="${m.left}" y="42" font-size="11" fill="#a00">${esc(spec.note)}</text>`);
  // Grid and axes.
  for (let y = 0; y <= yMax + 1e-9; y += yStep) {
    o.push(`<line x1="${m.left}" y1="${sy(y)}" x2="${m.left + pw}" y2="${sy(y)}" stroke="#e5e5e5"/>`);
    o.push(`<text x="${m.left - 6}" y="${sy(y) + 4}" text-anchor="end">${label(y)}</text>`);
  }
  const xTicks = [...new Set(xs)].sort((a, b) => a - b);
  for (const x of xTicks) {
    o.push(`<line x1="${sx(x)}" y1="${m.top + ph}" x2="${sx(x)}" y2="${m.top + ph + 5}" stroke="#333"/>`);
    o.push(`<text x="${sx(x)}" y="${m.top + ph + 18}" text-anchor="middle">${label(x)}</text>`);
  }
  o.push(`<line x1="${m.left}" y1="${m.top + ph}" x2="${m.left + pw}" y2="${m.top + ph}" stroke="#333"/>`);
  o.push(`<line x1="${m.left}" y1="${m.top}" x2="${m.left}" y2="${m.top + ph}" stroke="#333"/>`);
  o.push(`<text x="${m.left + pw / 2}" y="${H - 12}" text-anchor="middle">${esc(spec.xLabel)}</text>`);
  o.push(`<text transform="translate(16 ${m.top + ph / 2}) rotate(-90)" text-anchor="middle">${esc(spec.yLabel)}</text>`);
  // Reference lines, then series.
  let legendY = m.top + 6;
  const legend = (color: string, name: string, dashed: boolean) => {
    o.push(`<line x1="${m.left + pw + 16}" y1="${legendY}" x2="${m.left + pw + 40}" y2="${legendY}" stroke="${color}" stroke-width="2"${dashed ? ' stroke-dasharray="5 4"' : ""}/>`);
    o.push(`<text x="${m.left + pw + 46}" y="${legendY + 4}">${esc(name)}</text>`);
    legendY += 18;
  };
  (spec.hlines ?? []).forEach((h) => {
    o.push(`<line x1="${m.left}" y1="${sy(h.y)}" x2="${m.left + pw}" y2="${sy(h.y)}" stroke="#777" stroke-width="1.5" stroke-dasharray="5 4"/>`);
    legend("#777", h.name, true);
  });
  spec.series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length];
    const pts = [...s.points].sort((a, b) => a[0] - b[0]);
    if (pts.length > 1) o.push(`<polyline fill="none" stroke="${color}" stroke-width="2" points="${pts.map((p) => `${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(" ")}"/>`);
    for (const p of pts) o.push(`<circle cx="${sx(p[0]).toFixed(1)}" cy="${sy(p[1]).toFixed(1)}" r="3.5" fill="${color}"><title>${esc(`${s.name}: ${p[0]} envs, ${label(p[1])} s`)}</title></circle>`);
    legend(color, s.name, false);
  });
  o.push("</svg>");
  return `${o.join("\n")}\n`;
}
