// The public status page (/status/<slug>): no login, reads GET /api/v1/public/status/<slug>.
import { esc, html, raw, render } from "./dom.js";
import { ago, percent, when } from "./format.js";
import { uptimeBars } from "./components/uptime-bars.js";

const OVERALL = {
  operational: "All systems operational", degraded: "Some systems are having problems",
  down: "Major outage", unknown: "Status unknown",
};
const REFRESH_MS = 60_000;

function probeState(status) {
  if (!status) return "unknown";
  return status === "success" ? "up" : "down";
}

function pageHtml(data) {
  return html`<header class="sp-head"><h1>${data.title}</h1>${data.description ? html`<p>${data.description}</p>` : ""}</header>
    <div class="sp-overall o-${data.overall_status}" data-overall="${data.overall_status}">${OVERALL[data.overall_status] || data.overall_status}</div>
    <section class="sp-probes">${data.probes.map((p) => html`<div class="sp-probe" data-probe="${p.id}">
      <div class="row between"><strong>${p.name}</strong><span class="sp-state st-${probeState(p.status)}">${probeState(p.status) === "up" ? "Operational" : probeState(p.status) === "down" ? "Down" : "No data"}</span></div>
      ${raw(uptimeBars(p.days))}
      <div class="row between muted small"><span>90 days ago</span><span>${percent(p.uptime_90d)} uptime</span><span>today</span></div></div>`)}</section>
    <section class="sp-incidents"><h2>Incidents</h2>${data.incidents.length ? data.incidents.map((i) => html`<article class="incident i-${i.status}">
      <h3>${i.title} <span class="badge">${i.status}</span></h3><p>${i.message}</p>
      <p class="muted small">${when(i.created_at)}${i.resolved_at ? ` · resolved ${when(i.resolved_at)}` : ` · updated ${ago(i.updated_at)}`}</p></article>`)
      : raw('<p class="muted">No incidents in the last 90 days.</p>')}</section>
    <footer class="muted small">Updated ${when(data.generated_at)}</footer>`;
}

async function load(root, slug) {
  const response = await fetch(`/api/v1/public/status/${encodeURIComponent(slug)}`, { headers: { Accept: "application/json" } });
  if (response.status === 404) {
    root.innerHTML = '<p class="empty" id="not-found">There is no status page here.</p>';
    return false;
  }
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  const data = await response.json();
  document.title = `${data.title} · status`;
  render(root, pageHtml(data));
  root.dataset.loaded = "1";
  return true;
}

const root = document.getElementById("status");
const slug = decodeURIComponent(location.pathname.replace(/^\/status\//, "").replace(/\/$/, ""));
load(root, slug).then((found) => {
  if (found) setInterval(() => load(root, slug).catch(() => {}), REFRESH_MS);
}).catch((error) => { root.innerHTML = `<p class="empty">${esc(error.message)}</p>`; });
