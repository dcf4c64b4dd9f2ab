// Probe page: state, the response-time chart over a range, uptime per day, recent results, its alerts
// with their notifications; run now, edit and enable/disable for operators.
import { get, patch, post, qs } from "../api.js";
import { delegate, esc, formData, html, raw, render, toast } from "../dom.js";
import { ago, ms, percent, when } from "../format.js";
import { responseChart } from "../components/chart.js";
import { badge, stateOf } from "../components/status.js";
import { uptimeBars } from "../components/uptime-bars.js";
import { chartPoints, dailyUptime, RANGES, windowOf } from "../probe-history.js";
import { setQuery } from "../router.js";
import { canOperate } from "../session.js";
import { channelLabel, channelNames } from "../channels.js";

function resultsTable(items) {
  if (!items.length) return raw('<p class="empty">No results yet.</p>');
  return html`<table class="grid" id="results"><thead><tr><th>When</th><th>Status</th><th>Code</th><th>Response</th>
    <th>Error</th></tr></thead><tbody>${items.map((r) => html`<tr class="${r.status === "success" ? "" : "bad"}">
    <td>${when(r.created_at)}</td><td>${raw(badge(r.status === "success" ? "up" : "down"))} ${r.status}${r.in_maintenance ? " (maintenance)" : ""}</td>
    <td>${r.status_code ?? "–"}</td><td>${ms(r.response_time_ms)}</td><td class="err">${r.error || ""}</td></tr>`)}</tbody></table>`;
}

function alertsList(items) {
  if (!items.length) return raw('<p class="empty">No alerts.</p>');
  return html`<ul class="alerts-mini">${items.map((a) => html`<li data-alert="${a.id}">
    <span class="badge a-${a.status}">${a.status}</span> <a href="#/alerts?alert=${a.id}">${a.rule_name}</a>
    <span class="muted">opened ${ago(a.opened_at)}${a.resolved_at ? `, resolved ${ago(a.resolved_at)}` : ""}</span>
    <button type="button" class="link" data-action="notifications">notifications</button>
    <div class="notes" hidden></div></li>`)}</ul>`;
}

export function notificationsHtml(items, names) {
  if (!items.length) return '<p class="muted">No notifications.</p>';
  return html`<table class="grid small"><thead><tr><th>Event</th><th>Channel</th><th>Status</th><th>Attempts</th>
    <th>Sent</th><th>Last error</th></tr></thead><tbody>${items.map((n) => html`<tr><td>${n.event}</td>
    <td data-channel="${n.channel_id}">${channelLabel(names, n.channel_id)}</td><td>${n.status}</td><td>${n.attempts}</td><td>${when(n.sent_at)}</td>
    <td class="err">${n.last_error || ""}</td></tr>`)}</tbody></table>`.__raw;
}

function editForm(probe, groups) {
  return html`<form id="edit-form" class="card stack" hidden>
    <h3>Edit probe</h3>
    <label>Name <input name="name" value="${probe.name}" required></label>
    <label>Target <input name="target" value="${probe.target}" required></label>
    <label>Interval (s) <input name="interval_seconds" type="number" min="1" value="${probe.interval_seconds}"></label>
    <label>Timeout (s) <input name="timeout_seconds" type="number" step="0.1" min="0.1" value="${probe.timeout_seconds}"></label>
    <label>Group <select name="group_id"><option value="">No group</option>${groups.map((g) =>
      html`<option value="${g.id}" ${g.id === probe.group_id ? "selected" : ""}>${g.name}</option>`)}</select></label>
    <div class="row"><button class="primary" type="submit">Save</button><button type="button" data-action="cancel-edit">Cancel</button></div>
  </form>`;
}

export default {
  title: "Probe",
  async mount(root, { params, query }) {
    const id = Number(params.id);
    let range = RANGES[query.range] ? query.range : "24h";
    let chart = null;
    const operate = canOperate();
    const names = channelNames();
    const [probe, groups] = await Promise.all([get(`/probes/${id}`), get("/probe-groups").then((g) => g.items)]);
    document.title = `${probe.name} · admin-mit`;

    function header(p) {
      const latest = p.latest || {};
      const state = stateOf({ enabled: p.enabled, status: latest.status });
      return html`<div class="probe-head"><h1>${p.name}</h1>${raw(badge(state))}
        <span class="muted">${p.protocol} · ${p.target} · every ${p.interval_seconds} s
        ${p.group_id ? ` · ${(groups.find((g) => g.id === p.group_id) || {}).name || ""}` : ""}</span>
        <span class="muted">last run ${ago(latest.checked_at)} ${latest.response_time_ms !== undefined ? ms(latest.response_time_ms) : ""}</span>
        ${raw(operate ? `<span class="actions"><button type="button" data-action="run" class="primary">Run now</button>
          <button type="button" data-action="edit">Edit</button>
          <button type="button" data-action="toggle">${p.enabled ? "Disable" : "Enable"}</button></span>` : "")}</div>`;
    }

    root.innerHTML = `<section class="probe">
      <div id="head"></div>
      <div id="edit"></div>
      <div class="card"><div class="row between"><h2>Response time</h2><div class="ranges" id="ranges">
        ${Object.keys(RANGES).map((r) => `<button type="button" data-range="${r}">${r}</button>`).join("")}</div></div>
        <div id="stats" class="muted"></div><div id="chart" class="chart"></div><p class="legend-note">Red marks: failed runs.
        Grey bands: maintenance.</p></div>
      <div class="card"><h2>Uptime per day (90 days)</h2><div id="daily"></div></div>
      <div class="cols"><div class="card"><h2>Recent results</h2><div id="recent"></div></div>
      <div class="card"><h2>Alerts</h2><div id="alerts"></div></div></div></section>`;
    const $ = (sel) => root.querySelector(sel);
    let current = probe;
    render($("#head"), header(current));
    render($("#edit"), editForm(current, groups));

    let drawn = 0;
    async function loadChart() {
      root.querySelectorAll("[data-range]").forEach((b) => b.classList.toggle("active", b.dataset.range === range));
      // One window for the chart, its scale and the stats; only the newest click's answer is drawn.
      const asked = range;
      const ticket = ++drawn;
      const window = windowOf(asked);
      const [history, stats] = await Promise.all([chartPoints(id, window),
        get(`/probes/${id}/stats${qs({ since: window.sinceIso, until: window.untilIso })}`).catch(() => null)]);
      if (ticket !== drawn) return;
      if (chart) chart.destroy();
      const box = $("#chart");
      box.dataset.points = history.points.length;
      box.dataset.level = history.level;
      chart = history.points.length ? responseChart(box, history.points, box.clientWidth, [window.since, window.until]) : null;
      box.uplot = chart; // read by the browser tests
      if (!chart) box.innerHTML = '<p class="empty">No runs in this range.</p>';
      box.dataset.range = asked;
      if (stats) {
        $("#stats").textContent = `${stats.count} runs · uptime ${percent(stats.uptime_percent)} · avg ${ms(stats.avg_response_time_ms)}` +
          ` · p95 ${ms(stats.p95_response_time_ms)} · p99 ${ms(stats.p99_response_time_ms)}`;
      }
    }

    async function loadRest() {
      const [days, results, alerts] = await Promise.all([
        dailyUptime(id, 90), get(`/probes/${id}/results${qs({ limit: 20 })}`), get(`/alerts${qs({ probe_id: id, limit: 20 })}`),
      ]);
      $("#daily").innerHTML = uptimeBars(days);
      render($("#recent"), resultsTable(results.items));
      render($("#alerts"), alertsList(alerts.items));
    }

    async function reloadProbe() {
      current = await get(`/probes/${id}`);
      render($("#head"), header(current));
    }

    delegate(root, "click", "[data-range]", (event, button) => {
      range = button.dataset.range;
      setQuery({ range });
      loadChart();
    });
    delegate(root, "click", "[data-action]", async (event, button) => {
      const action = button.dataset.action;
      try {
        if (action === "run") {
          await post(`/probes/${id}/run`);
          toast("Run queued");
          setTimeout(() => { reloadProbe(); loadRest(); }, 1500);
        } else if (action === "edit") {
          render($("#edit"), editForm(current, groups));
          $("#edit-form").hidden = false;
        } else if (action === "cancel-edit") {
          $("#edit-form").hidden = true;
        } else if (action === "toggle") {
          await patch(`/probes/${id}`, { enabled: !current.enabled });
          await reloadProbe();
          toast(current.enabled ? "Enabled" : "Disabled");
        } else if (action === "notifications") {
          const item = button.closest("[data-alert]");
          const box = item.querySelector(".notes");
          box.hidden = !box.hidden;
          if (!box.hidden) {
            const [notes, channels] = await Promise.all([get(`/alerts/${item.dataset.alert}/notifications`), names()]);
            box.innerHTML = notificationsHtml(notes.items, channels);
          }
        }
      } catch (error) { toast(error.message, "error"); }
    });
    root.addEventListener("submit", async (event) => {
      if (event.target.id !== "edit-form") return;
      event.preventDefault();
      const data = formData(event.target);
      const body = { name: data.name, target: data.target, group_id: data.group_id ? Number(data.group_id) : null };
      if (data.interval_seconds) body.interval_seconds = Number(data.interval_seconds);
      if (data.timeout_seconds) body.timeout_seconds = Number(data.timeout_seconds);
      try {
        await patch(`/probes/${id}`, body);
        await reloadProbe();
        $("#edit-form").hidden = true;
        toast("Saved");
      } catch (error) { toast(error.message, "error"); }
    });

    await Promise.all([loadChart(), loadRest()]);
    const timer = setInterval(() => { reloadProbe().catch(() => {}); loadRest().catch(() => {}); }, 10000);
    return () => { clearInterval(timer); if (chart) chart.destroy(); };
  },
};
