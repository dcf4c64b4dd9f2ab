// Wall view for a big screen: dark, no controls, probes that are down first as big tiles, the rest small.
import { esc } from "../dom.js";
import { ago, ms } from "../format.js";
import { heartbeat } from "../components/heartbeat.js";
import { LABELS, STATE_ORDER, stateOf } from "../components/status.js";
import { OverviewFeed } from "../overview-feed.js";
import { go } from "../router.js";

const BIG_LIMIT = 200;
const SMALL_NAMED = 150; // more healthy probes than this show as dots

function bigTile(tile, state) {
  return `<div class="wtile st-${state}" data-id="${tile.id}" data-state="${state}">` +
    `<div class="wname">${esc(tile.name)}</div><div class="wstate">${LABELS[state]}</div>` +
    `<div class="wmeta">${ms(tile.response_time_ms)} · ${ago(tile.checked_at)}</div>` +
    `<div class="werr">${esc(tile.error || "")}</div>${heartbeat(tile.beats, 20)}</div>`;
}

export default {
  title: "Wall",
  async mount(root) {
    root.innerHTML = '<section class="wall"><header class="wall-head"><span id="w-summary"></span><span id="w-clock"></span></header>' +
      '<div class="wgrid" id="w-big"></div><div class="wdots" id="w-small"></div></section>';
    const big = root.querySelector("#w-big");
    const small = root.querySelector("#w-small");
    const summary = root.querySelector("#w-summary");
    const clock = root.querySelector("#w-clock");
    function paint() {
      const tiles = [...feed.tiles.values()].map((t) => [stateOf(t), t])
        .sort((a, b) => STATE_ORDER[a[0]] - STATE_ORDER[b[0]] || a[1].name.localeCompare(b[1].name));
      const tally = {};
      tiles.forEach(([s]) => { tally[s] = (tally[s] || 0) + 1; });
      // Every probe that needs a look gets a big tile; healthy ones too while they fit.
      const loud = tiles.filter(([s]) => s === "down" || s === "maintenance");
      const bigOnes = loud.length ? loud : tiles.slice(0, BIG_LIMIT);
      const rest = loud.length ? tiles.filter(([s]) => s !== "down" && s !== "maintenance") : tiles.slice(BIG_LIMIT);
      big.innerHTML = bigOnes.slice(0, BIG_LIMIT).map(([s, t]) => bigTile(t, s)).join("");
      small.className = rest.length <= SMALL_NAMED ? "wsmall" : "wdots";
      small.innerHTML = rest.length <= SMALL_NAMED
        ? rest.map(([s, t]) => `<span class="st-${s}" data-id="${t.id}" data-state="${s}">${esc(t.name)}</span>`).join("")
        : rest.map(([s, t]) => `<i class="st-${s}" title="${esc(t.name)}: ${LABELS[s]}"></i>`).join("");
      summary.innerHTML = Object.entries(tally).sort((a, b) => STATE_ORDER[a[0]] - STATE_ORDER[b[0]])
        .map(([s, n]) => `<span class="wcount st-${s}">${n} ${LABELS[s].toLowerCase()}</span>`).join("");
      clock.textContent = new Date().toLocaleTimeString();
    }
    const feed = new OverviewFeed(paint);
    await feed.start();
    const ticker = setInterval(() => { clock.textContent = new Date().toLocaleTimeString(); }, 1000);
    const leave = (event) => { if (event.key === "Escape") go("/"); }; // no controls on the wall: Esc goes back
    window.addEventListener("keydown", leave);
    return () => { feed.stop(); clearInterval(ticker); window.removeEventListener("keydown", leave); };
  },
};
