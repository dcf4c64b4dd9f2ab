// Status colours and words, shared by every page: one place decides what "down" looks like.

export const STATE_ORDER = { down: 0, maintenance: 1, unknown: 2, paused: 3, up: 4 };

/** The state a person reads off a probe tile: up, down, maintenance, paused or unknown. */
export function stateOf(tile) {
  if (tile.enabled === false) return "paused";
  if (tile.in_maintenance) return "maintenance";
  if (!tile.status) return "unknown";
  return tile.status === "success" ? "up" : "down";
}

/** The colour class of one run's status (success, failed, timeout, error, or none). */
export function runClass(status) {
  if (!status) return "s-none";
  return status === "success" ? "s-up" : "s-down";
}

export const LABELS = { up: "Up", down: "Down", maintenance: "Maintenance", paused: "Paused", unknown: "No data" };

export function badge(state) {
  return `<span class="badge b-${state}" data-state="${state}">${LABELS[state] || state}</span>`;
}
