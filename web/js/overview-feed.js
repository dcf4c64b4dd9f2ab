// The overview's data: GET /console/overview once, then /console/overview/changes every few seconds
// (cheap: only probes with a new result since the cursor). A 422 means the cursor expired: load again.
import { ApiError, get, qs } from "./api.js";
import { BEATS } from "./components/heartbeat.js";

export const POLL_MS = 2500;
// The changes feed carries no uptime: a full load this often refreshes it (the API caches it 60 s).
export const RELOAD_MS = 60_000;

export class OverviewFeed {
  constructor(onChange) {
    this.onChange = onChange;
    this.tiles = new Map();
    this.cursor = null;
    this.timer = null;
    this.stopped = false;
  }

  async start() {
    await this.load();
    this.schedule();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  schedule() {
    if (!this.stopped) this.timer = setTimeout(() => this.poll(), POLL_MS);
  }

  async load() {
    this.loadedAt = Date.now();
    const data = await get(`/console/overview${qs({ beats: BEATS })}`); // only as many runs as the strip shows
    this.cursor = data.cursor;
    this.tiles = new Map(data.probes.map((tile) => [tile.id, tile]));
    this.onChange({ full: true });
  }

  async poll() {
    if (this.stopped) return;
    try {
      if (Date.now() - this.loadedAt >= RELOAD_MS) { await this.load(); this.schedule(); return; }
      const data = await get(`/console/overview/changes${qs({ cursor: this.cursor, beats: BEATS })}`);
      this.cursor = data.cursor;
      const changed = [];
      for (const tile of data.probes) {
        const old = this.tiles.get(tile.id);
        // A change carries no uptime figures: those of the last full load stay.
        this.tiles.set(tile.id, old ? { ...old, ...tile } : tile);
        changed.push(tile.id);
      }
      for (const id of data.removed) this.tiles.delete(id);
      if (changed.length || data.removed.length) this.onChange({ changed, removed: data.removed });
    } catch (error) {
      if (error instanceof ApiError && error.status === 422) await this.load().catch(() => {});
      else if (error instanceof ApiError && error.status === 401) return;
    }
    this.schedule();
  }
}
