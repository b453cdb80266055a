// Hand-drawn SVG charts (no chart library: the console must work with no internet). Each function returns an
// <svg> element sized by its viewBox, so CSS can stretch it to the panel's width.

const SVG_NS = "http://www.w3.org/2000/svg";

// Colour-blind-friendly palette (Okabe-Ito); expert i of the catalog always gets colour i.
export const PALETTE = ["#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#f0e442", "#000000"];

export function colorOf(index) {
  return PALETTE[index % PALETTE.length];
}

// An expert's colour, by its place in the catalog, so that every chart and swatch agrees.
export function expertColor(experts, name) {
  const index = experts.findIndex((e) => e.name === name);
  return colorOf(index < 0 ? 0 : index);
}

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  node.append(...children);
  return node;
}

function text(x, y, content, attrs = {}) {
  return svg("text", { x, y, ...attrs }, content);
}

// Horizontal bars, one row each: [{label, value, text, color, highlight}]. Bars are scaled between `min` and `max`
// (default 0 and the largest value), so negative scores (log-probabilities) still compare by length.
export function barChart(rows, { width = 320, min = 0, max = null, labelWidth = 90, valueWidth = 70 } = {}) {
  const rowHeight = 22;
  const top = max ?? Math.max(...rows.map((r) => r.value), 0);
  const span = top - min || 1;
  const barSpace = width - labelWidth - valueWidth;
  const chart = svg("svg", { viewBox: `0 0 ${width} ${rows.length * rowHeight}`, class: "chart bars", role: "img" });
  rows.forEach((row, i) => {
    const y = i * rowHeight;
    const length = Math.max(((row.value - min) / span) * barSpace, 1);
    const weight = row.highlight ? "bold" : "normal";
    chart.append(
      text(labelWidth - 6, y + 15, row.label, { "text-anchor": "end", "font-weight": weight }),
      svg("rect", { x: labelWidth, y: y + 4, width: length, height: 14, rx: 2, fill: row.color || PALETTE[0] }),
      text(labelWidth + length + 4, y + 15, row.text ?? String(row.value), { "font-weight": weight }),
    );
  });
  return chart;
}

// Lines over the same x steps and in the same unit: [{name, values, color, dashed}]. The top of the scale is
// labelled; the legend gives each line's latest value.
export function lineChart(series, { width = 320, height = 110, format = (v) => String(v) } = {}) {
  const pad = { left: 6, right: 6, top: 16, bottom: 20 };
  const plotWidth = width - pad.left - pad.right;
  const plotHeight = height - pad.top - pad.bottom;
  const top = Math.max(...series.flatMap((s) => s.values), 0) || 1;
  const baseline = pad.top + plotHeight;
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart lines", role: "img" });
  chart.append(
    svg("line", { x1: pad.left, x2: width - pad.right, y1: pad.top, y2: pad.top, class: "grid" }),
    svg("line", { x1: pad.left, x2: width - pad.right, y1: baseline, y2: baseline, class: "axis" }),
    text(pad.left, pad.top - 4, format(top), { class: "scale" }),
  );
  series.forEach((s, i) => {
    const step = s.values.length > 1 ? plotWidth / (s.values.length - 1) : 0;
    const points = s.values.map((v, j) => [pad.left + j * step, baseline - (plotHeight * v) / top]);
    const dash = s.dashed ? { "stroke-dasharray": "4 3" } : {};
    chart.append(
      svg("polyline", {
        points: points.map((p) => p.join(",")).join(" "),
        fill: "none",
        stroke: s.color,
        "stroke-width": 2,
        ...dash,
      }),
    );
    if (!s.dashed) for (const [x, y] of points) chart.append(svg("circle", { cx: x, cy: y, r: 2.5, fill: s.color }));
    const latest = s.values.length ? format(s.values[s.values.length - 1]) : "–";
    chart.append(text(pad.left + (i * width) / series.length, height - 5, `${s.name}: ${latest}`, { fill: s.color }));
  });
  return chart;
}

// One stacked bar of parts that add up to a whole: [{label, value, color}] (the latency split of an answer).
export function splitBar(parts, { width = 320 } = {}) {
  const total = parts.reduce((sum, p) => sum + p.value, 0) || 1;
  const chart = svg("svg", { viewBox: `0 0 ${width} 14`, class: "chart split", role: "img" });
  let x = 0;
  for (const part of parts) {
    const w = (part.value / total) * width;
    chart.append(svg("rect", { x, y: 0, width: w, height: 14, fill: part.color }, svg("title", {}, part.label)));
    x += w;
  }
  return chart;
}

// A thumb icon drawn here rather than an emoji: headless and minimal systems often have no emoji font.
export function thumbIcon(down = false) {
  // The hand, from the wrist up to the thumb's tip and round the fingers; the cuff is the rectangle beside it.
  const hand = [
    "M8 10 L11.5 3.2 C12.4 1.8 14.9 2.6 14.5 4.6 L13.6 9 H19.6",
    "C21.2 9 22.3 10.5 21.8 12 L19.6 19.4 C19.3 20.4 18.4 21 17.4 21 H8 Z",
  ].join(" ");
  const flip = down ? { transform: "translate(0 24) scale(1 -1)" } : {};
  return svg(
    "svg",
    { viewBox: "0 0 24 24", class: "icon", "aria-hidden": "true" },
    svg("g", flip, svg("rect", { x: 2, y: 10, width: 4, height: 11, rx: 1 }), svg("path", { d: hand })),
  );
}
