// The probe page's history: the chart points (GET /probes/{id}/chart) and uptime per day (/uptime/daily).
import { get, qs } from "./api.js";

export const RANGES = { "1h": 3600, "6h": 21600, "24h": 86400, "7d": 604800, "30d": 2592000, "90d": 7776000 };

/** A chart point as the chart draws it: `at` in epoch seconds, the average as `response_ms`. */
export function normalisePoint(p) {
  return {
    at: Date.parse(p.at) / 1000, response_ms: p.avg_ms, min_ms: p.min_ms, max_ms: p.max_ms, p95_ms: p.p95_ms,
    count: p.count, failures: p.failures, maintenance_count: p.maintenance_count,
    dns_ms: p.dns_ms, connect_ms: p.connect_ms, tls_ms: p.tls_ms, processing_ms: p.processing_ms, transfer_ms: p.transfer_ms,
  };
}

/** The window a range names, ending now: epoch seconds and the ISO text the API takes. */
export function windowOf(range, now = Date.now()) {
  const until = Math.ceil(now / 1000);
  const since = until - RANGES[range];
  const iso = (s) => new Date(s * 1000).toISOString();
  return { since, until, sinceIso: iso(since), untilIso: iso(until) };
}

/** The chart's points over the window: raw results for short ranges, rollup buckets for long ones. */
export async function chartPoints(probeId, window) {
  const data = await get(`/probes/${probeId}/chart${qs({ since: window.sinceIso, until: window.untilIso })}`);
  return { level: data.level, step: data.step_seconds, points: data.points.map(normalisePoint) };
}

export function dailyUptime(probeId, days = 90) {
  return get(`/probes/${probeId}/uptime/daily${qs({ days })}`);
}
