// A response-time sparkline as an inline SVG path (a string, so thousands of rows render cheaply).

export function sparkline(values, width = 90, height = 22) {
  const points = (values || []).filter((v) => v !== null && v !== undefined);
  if (points.length < 2) return `<svg class="spark" width="${width}" height="${height}"></svg>`;
  const max = Math.max(...points);
  const min = Math.min(...points);
  const span = max - min || 1;
  const step = width / (points.length - 1);
  let path = "";
  points.forEach((v, i) => {
    const x = (i * step).toFixed(1);
    const y = (height - 2 - ((v - min) / span) * (height - 4)).toFixed(1);
    path += `${i ? "L" : "M"}${x} ${y}`;
  });
  return `<svg class="spark" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" aria-hidden="true">` +
    `<path d="${path}"/></svg>`;
}
