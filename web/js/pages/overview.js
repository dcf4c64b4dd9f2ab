// Overview: every probe as one row (status, heartbeat, uptime, response time, certificate), filtered in
// memory and rendered virtually (only the rows in view exist), updated by the overview feed.
import { post } from "../api.js";
import { debounce, delegate, esc, toast } from "../dom.js";
import { ago, daysLeft, ms, percent } from "../format.js";
import { heartbeat } from "../components/heartbeat.js";
import { sparkline } from "../components/sparkline.js";
import { badge, LABELS, STATE_ORDER, stateOf } from "../components/status.js";
import { OverviewFeed } from "../overview-feed.js";
import { go, setQuery } from "../router.js";
import { canOperate } from "../session.js";

const ROW_HEIGHT = 40;
const OVERSCAN = 10;
export const metrics = (window.__consoleMetrics = window.__consoleMetrics || {});

function matches(tile, filter, needle) {
  if (filter.group && String(tile.group_id ?? "none") !== filter.group) return false;
  if (filter.protocol && tile.protocol !== filter.protocol) return false;
  if (filter.status && stateOf(tile) !== filter.status) return false;
  if (needle && !tile._text.includes(needle)) return false;
  return true;
}

function compare(a, b) {
  return (STATE_ORDER[stateOf(a)] - STATE_ORDER[stateOf(b)]) || a.name.localeCompare(b.name) || a.id - b.id;
}

function rowHtml(tile, operate) {
  const state = stateOf(tile);
  const spark = sparkline((tile.beats || []).map((b) => b.response_time_ms));
  const cert = tile.cert_days_left;
  const certClass = cert !== null && cert !== undefined && cert < 14 ? "warn" : "";
  return `<div class="tr st-${state}" data-id="${tile.id}" data-state="${state}" role="row">` +
    `<span class="c-state">${badge(state)}</span>` +
    `<span class="c-name"><a href="#/probes/${tile.id}">${esc(tile.name)}</a><small>${esc(tile.target)}</small></span>` +
    `<span class="c-group">${esc(tile.group_name || "–")}</span>` +
    `<span class="c-proto">${esc(tile.protocol)}</span>` +
    `<span class="c-beats">${heartbeat(tile.beats)}</span>` +
    `<span class="c-up" data-up="24h">${percent(tile.uptime_24h)}</span><span class="c-up" data-up="7d">${percent(tile.uptime_7d)}</span>` +
    `<span class="c-up" data-up="30d">${percent(tile.uptime_30d)}</span>` +
    `<span class="c-rt">${ms(tile.response_time_ms)}${spark}</span>` +
    `<span class="c-cert ${certClass}">${daysLeft(cert)}</span>` +
    `<span class="c-when" title="${esc(tile.error || "")}">${ago(tile.checked_at)}</span>` +
    `<span class="c-act">${operate ? '<button type="button" class="small" data-action="run">Run</button>' : ""}</span>` +
    "</div>";
}

export default {
  title: "Overview",
  async mount(root, { query }) {
    const filter = { q: query.q || "", group: query.group || "", protocol: query.protocol || "", status: query.status || "" };
    const operate = canOperate();
    root.innerHTML = `<section class="overview">
      <div class="toolbar" role="search">
        <input type="search" id="f-q" placeholder="Filter by name or target" value="${esc(filter.q)}" aria-label="Text filter">
        <select id="f-group" aria-label="Group"><option value="">All groups</option></select>
        <select id="f-protocol" aria-label="Protocol"><option value="">All protocols</option></select>
        <select id="f-status" aria-label="Status"><option value="">Any status</option>
          ${Object.entries(LABELS).map(([k, v]) => `<option value="${k}">${v}</option>`).join("")}</select>
        <span class="counts" id="counts"></span>
      </div>
      <div class="table" role="table" aria-label="Probes">
        <div class="tr th" role="row"><span class="c-state">Status</span><span class="c-name">Probe</span>
          <span class="c-group">Group</span><span class="c-proto">Protocol</span><span class="c-beats">Recent runs</span>
          <span class="c-up">24 h</span><span class="c-up">7 d</span><span class="c-up">30 d</span><span class="c-rt">Response</span>
          <span class="c-cert">Cert</span><span class="c-when">Checked</span><span class="c-act"></span></div>
        <div class="viewport" id="viewport"><div class="spacer" id="spacer"><div class="rows" id="rows"></div></div></div>
      </div>
      <p class="empty" id="empty" hidden>No probe matches.</p>
    </section>`;
    const viewport = root.querySelector("#viewport");
    const spacer = root.querySelector("#spacer");
    const rows = root.querySelector("#rows");
    const counts = root.querySelector("#counts");
    const empty = root.querySelector("#empty");
    const inputs = {
      q: root.querySelector("#f-q"), group: root.querySelector("#f-group"),
      protocol: root.querySelector("#f-protocol"), status: root.querySelector("#f-status"),
    };
    let visible = [];
    let frame = 0;
    let knownOptions = "";

    function paint() {
      frame = 0;
      const top = viewport.scrollTop;
      const height = viewport.clientHeight || 600;
      const first = Math.max(0, Math.floor(top / ROW_HEIGHT) - OVERSCAN);
      const last = Math.min(visible.length, Math.ceil((top + height) / ROW_HEIGHT) + OVERSCAN);
      let out = "";
      for (let i = first; i < last; i += 1) out += rowHtml(visible[i], operate);
      rows.style.transform = `translateY(${first * ROW_HEIGHT}px)`;
      rows.innerHTML = out;
    }
    const schedulePaint = () => { if (!frame) frame = requestAnimationFrame(paint); };

    function refreshOptions() {
      const groups = new Map();
      const protocols = new Set();
      for (const tile of feed.tiles.values()) {
        groups.set(String(tile.group_id ?? "none"), tile.group_name || "No group");
        protocols.add(tile.protocol);
      }
      const signature = JSON.stringify([[...groups], [...protocols]]);
      if (signature === knownOptions) return;
      knownOptions = signature;
      inputs.group.innerHTML = '<option value="">All groups</option>' + [...groups].sort((a, b) => a[1].localeCompare(b[1]))
        .map(([id, name]) => `<option value="${esc(id)}">${esc(name)}</option>`).join("");
      inputs.protocol.innerHTML = '<option value="">All protocols</option>' + [...protocols].sort()
        .map((p) => `<option value="${esc(p)}">${esc(p)}</option>`).join("");
      inputs.group.value = filter.group;
      inputs.protocol.value = filter.protocol;
    }

    /** Filter, sort and paint: the one path every change goes through (timed for the benchmark). */
    function apply(reason) {
      const started = performance.now();
      const needle = filter.q.trim().toLowerCase();
      const tally = { up: 0, down: 0, maintenance: 0, paused: 0, unknown: 0 };
      visible = [];
      for (const tile of feed.tiles.values()) {
        if (tile._text === undefined) tile._text = `${tile.name} ${tile.target}`.toLowerCase();
        tally[stateOf(tile)] += 1;
        if (matches(tile, filter, needle)) visible.push(tile);
      }
      visible.sort(compare);
      spacer.style.height = `${visible.length * ROW_HEIGHT}px`;
      paint();
      counts.innerHTML = Object.entries(tally).filter(([, n]) => n)
        .map(([k, n]) => `<span class="count b-${k}" data-count="${k}">${n} ${LABELS[k].toLowerCase()}</span>`).join("") +
        `<span class="count">${visible.length} shown</span>`;
      empty.hidden = visible.length > 0;
      metrics[reason] = performance.now() - started;
      metrics.shown = visible.length;
      metrics.renders = (metrics.renders || 0) + 1;
    }

    const feed = new OverviewFeed((change) => {
      if (change.full) refreshOptions();
      else for (const id of change.changed) { const t = feed.tiles.get(id); if (t) delete t._text; }
      apply("update");
    });

    const applyFilter = debounce(() => {
      setQuery(filter);
      apply("filter");
    }, 150);
    inputs.q.addEventListener("input", () => { filter.q = inputs.q.value; applyFilter(); });
    for (const key of ["group", "protocol", "status"]) {
      inputs[key].value = filter[key];
      inputs[key].addEventListener("change", () => { filter[key] = inputs[key].value; applyFilter(); });
    }
    viewport.addEventListener("scroll", schedulePaint, { passive: true });
    window.addEventListener("resize", schedulePaint);
    delegate(rows, "click", "[data-action=run]", async (event, button) => {
      event.stopPropagation();
      const id = button.closest("[data-id]").dataset.id;
      try {
        await post(`/probes/${id}/run`);
        toast("Run queued");
      } catch (error) { toast(error.message, "error"); }
    });
    delegate(rows, "click", ".tr", (event, row) => {
      if (event.target.closest("a,button")) return;
      go(`/probes/${row.dataset.id}`);
    });

    const started = performance.now();
    await feed.start();
    metrics.firstRender = performance.now() - started;
    metrics.readyAt = performance.now(); // since the navigation started
    document.body.dataset.overview = "ready";
    return () => {
      feed.stop();
      window.removeEventListener("resize", schedulePaint);
      delete document.body.dataset.overview;
    };
  },
};
