//! A small time-series chart in SVG (no chart library): stored points of one metric over the
//! last hours, with the normal range shaded, hour ticks, artefacts shown as hollow points and
//! gaps longer than `gapMs` left as gaps, never joined by an invented line.

const SVG = "http://www.w3.org/2000/svg";

export interface ChartPoint {
  time: number;
  value: number;
  artefact: boolean;
}

export interface ChartOptions {
  from: number;
  to: number;
  normal?: [number, number] | null;
  decimals?: number;
  gapMs?: number;
  width?: number;
  height?: number;
}

function node<K extends keyof SVGElementTagNameMap>(tag: K, attributes: Record<string, string | number>): SVGElementTagNameMap[K] {
  const element = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, String(value));
  return element;
}

export function timeSeriesChart(points: ChartPoint[], options: ChartOptions): SVGSVGElement {
  const width = options.width ?? 310;
  const height = options.height ?? 120;
  const left = 34;
  const right = 6;
  const top = 6;
  const bottom = 16;
  const svg = node("svg", { viewBox: `0 0 ${width} ${height}`, width: "100%", class: "chart", role: "img" });
  const trusted = points.filter((p) => !p.artefact);
  let lo = Math.min(...trusted.map((p) => p.value), ...(options.normal ? [options.normal[0]] : []));
  let hi = Math.max(...trusted.map((p) => p.value), ...(options.normal ? [options.normal[1]] : []));
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) {
    lo = 0;
    hi = 1;
  }
  if (hi - lo < 1e-6) {
    lo -= 1;
    hi += 1;
  }
  const pad = (hi - lo) * 0.08;
  lo -= pad;
  hi += pad;
  const x = (time: number) => left + ((time - options.from) / (options.to - options.from)) * (width - left - right);
  const y = (value: number) => top + (1 - (value - lo) / (hi - lo)) * (height - top - bottom);

  svg.append(node("rect", { x: left, y: top, width: width - left - right, height: height - top - bottom, class: "chart-bg" }));
  if (options.normal) {
    const [a, b] = options.normal;
    svg.append(node("rect", { x: left, y: y(b), width: width - left - right, height: Math.max(0, y(a) - y(b)), class: "chart-normal" }));
  }
  // Hour ticks.
  const hour = 3_600_000;
  for (let tick = Math.ceil(options.from / hour) * hour; tick <= options.to; tick += hour) {
    svg.append(node("line", { x1: x(tick), x2: x(tick), y1: top, y2: height - bottom, class: "chart-grid" }));
    const label = node("text", { x: x(tick), y: height - 4, class: "chart-tick", "text-anchor": "middle" });
    label.textContent = new Date(tick).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    svg.append(label);
  }
  for (const value of [hi - pad, lo + pad]) {
    const label = node("text", { x: left - 3, y: y(value) + 3, class: "chart-tick", "text-anchor": "end" });
    label.textContent = value.toFixed(Math.max(0, Math.min(2, options.decimals ?? 0)));
    svg.append(label);
  }
  const gapMs = options.gapMs ?? 5 * 60_000;
  let d = "";
  let previous = -Infinity;
  for (const point of trusted) {
    d += `${point.time - previous > gapMs ? "M" : "L"}${x(point.time).toFixed(1)},${y(point.value).toFixed(1)}`;
    previous = point.time;
  }
  if (d) svg.append(node("path", { d, class: "chart-line" }));
  for (const point of points) {
    if (point.artefact) svg.append(node("circle", { cx: x(point.time), cy: y(Math.min(hi, Math.max(lo, point.value))), r: 2.5, class: "chart-artefact" }));
  }
  svg.dataset.points = String(points.length);
  return svg;
}
