// Uptime per day as a row of bars (the probe page and the public status page).
import { esc } from "../dom.js";

export function dayClass(day) {
  if (!day.count) return "d-none";
  const up = day.uptime_percent;
  if (up === null || up === undefined) return "d-none";
  if (up >= 99.9) return "d-up";
  if (up >= 95) return "d-warn";
  return "d-down";
}

export function uptimeBars(days) {
  let out = '<div class="daybars">';
  for (const day of days || []) {
    const text = day.count
      ? `${day.day}: ${day.uptime_percent === null ? "–" : day.uptime_percent.toFixed(2)}% of ${day.count} runs, ${day.failures} failed`
      : `${day.day}: no data`;
    out += `<i class="${dayClass(day)}" title="${esc(text)}"></i>`;
  }
  return `${out}</div>`;
}
