// The response-time chart (uPlot): the phases stacked (DNS, connect, TLS, processing, transfer), the
// total as a line, failed runs marked in red along the top, maintenance shaded.
import uPlot from "../../vendor/uplot/uPlot.esm.js";

export const PHASES = [
  ["dns_ms", "DNS", "#8e7cc3"], ["connect_ms", "Connect", "#3d85c6"], ["tls_ms", "TLS", "#45818e"],
  ["processing_ms", "Processing", "#e69138"], ["transfer_ms", "Transfer", "#6aa84f"],
];

function shade(u, points) {
  const { ctx } = u;
  const { top, height } = u.bbox;
  const xs = u.data[0];
  ctx.save();
  for (let i = 0; i < points.length; i += 1) {
    const p = points[i];
    if (p.maintenance_count > 0) {
      const left = u.valToPos(xs[i], "x", true);
      const right = i + 1 < xs.length ? u.valToPos(xs[i + 1], "x", true) : left + 4;
      ctx.fillStyle = "rgba(120, 144, 156, 0.25)";
      ctx.fillRect(left, top, Math.max(2, right - left), height);
    }
  }
  ctx.restore();
}

function markFailures(u, points) {
  const { ctx } = u;
  const xs = u.data[0];
  ctx.save();
  ctx.fillStyle = "#d93025";
  for (let i = 0; i < points.length; i += 1) {
    if (points[i].failures > 0) {
      const x = u.valToPos(xs[i], "x", true);
      ctx.fillRect(x - 1.5 * devicePixelRatio, u.bbox.top, 3 * devicePixelRatio, 8 * devicePixelRatio);
    }
  }
  ctx.restore();
}

/** Draw `points` (normalised: at (epoch s), response_ms, phases, failures, maintenance_count) into `element`. */
export function responseChart(element, points, width, [since, until]) {
  const xs = points.map((p) => p.at);
  const phaseKeys = PHASES.filter(([key]) => points.some((p) => p[key] !== null && p[key] !== undefined));
  // uPlot has no stacking of its own: each series is the sum of itself and those below it.
  const stacked = [];
  const running = points.map(() => 0);
  for (const [key] of phaseKeys) {
    stacked.push(points.map((p, i) => {
      const v = p[key];
      if (v === null || v === undefined) return null;
      running[i] += v;
      return running[i];
    }));
  }
  // Off the plot the legend shows the newest point rather than dashes.
  const at = (i) => (i === null || i === undefined ? points.length - 1 : i);
  const series = [{ value: (u, v, si, i) => (points[at(i)] ? new Date(points[at(i)].at * 1000).toLocaleString() : "–") }];
  const data = [xs];
  // The highest stack first, so each lower band paints over it.
  for (let k = phaseKeys.length - 1; k >= 0; k -= 1) {
    const [, label, colour] = phaseKeys[k];
    series.push({ label, stroke: colour, fill: `${colour}cc`, width: 1, points: { show: false },
      value: (u, v, si, i) => (points[at(i)] === undefined ? "–" : fmt(points[at(i)][phaseKeys[k][0]])) });
    data.push(stacked[k]);
  }
  series.push({ label: "Response", stroke: "#202124", width: 1.5, points: { show: points.length < 80 },
    value: (u, v, si, i) => (points[at(i)] === undefined ? "–" : fmt(points[at(i)].response_ms)) });
  data.push(points.map((p) => p.response_ms));
  const opts = {
    width: width || element.clientWidth || 900, height: 280,
    series,
    axes: [{}, { label: "ms", size: 60 }],
    scales: {
      // The whole chosen range, so a probe that started an hour ago does not look like a day of data.
      // (auto: false, or uPlot fits x to the data on every setData.)
      x: { time: true, auto: false, range: () => [since, until] },
      y: { range: (u, min, max) => [0, Math.max(1, max * 1.1)] },
    },
    legend: { live: true },
    cursor: { drag: { x: true, y: false } },
    hooks: { drawClear: [(u) => shade(u, points)], draw: [(u) => markFailures(u, points)] },
  };
  element.innerHTML = "";
  const chart = new uPlot(opts, data, element);
  chart.setScale("x", { min: since, max: until });
  return chart;
}

function fmt(v) { return v === null || v === undefined ? "–" : `${v.toFixed(1)} ms`; }
