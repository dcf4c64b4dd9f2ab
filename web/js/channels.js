// Notification channels by id (GET /notification-channels), fetched once per page and only when needed.
import { get } from "./api.js";

/** A loader for this page: the first call fetches the names, later calls reuse them. */
export function channelNames() {
  let names = null;
  return () => {
    if (!names) {
      names = get("/notification-channels")
        .then((data) => new Map(data.items.map((c) => [c.id, c.name])))
        .catch(() => { names = null; return new Map(); });
    }
    return names;
  };
}

/** A channel's name; a channel deleted since shows its id. */
export function channelLabel(names, id) {
  return (names && names.get(id)) || `channel ${id}`;
}
