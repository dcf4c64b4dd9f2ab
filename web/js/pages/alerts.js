// Alerts: firing / acknowledged / resolved with their history; acknowledge with a note, resolve;
// silences and maintenance windows, created and removed by operators.
import { del, get, post, qs } from "../api.js";
import { delegate, esc, formData, html, raw, render, toast } from "../dom.js";
import { ago, when } from "../format.js";
import { setQuery } from "../router.js";
import { canOperate } from "../session.js";
import { notificationsHtml } from "./probe.js";
import { channelNames } from "../channels.js";

const TABS = [["open", "Open"], ["firing", "Firing"], ["acknowledged", "Acknowledged"], ["resolved", "Resolved"], ["", "All"]];

function alertRow(a, operate) {
  const open = a.status !== "resolved";
  return html`<div class="alert-row a-${a.status}" data-alert="${a.id}" data-status="${a.status}">
    <div class="row between"><div><span class="badge a-${a.status}">${a.status}</span>
      <a href="#/probes/${a.probe_id}"><strong>${a.probe_name}</strong></a> · ${a.rule_name}
      <span class="muted">${a.reason}</span></div>
      <div class="muted">opened ${ago(a.opened_at)}${a.acknowledged_by ? ` · acknowledged by ${a.acknowledged_by}` : ""}</div></div>
    <div class="row">
      <button type="button" class="link" data-action="history">history</button>
      ${raw(operate && open ? `<input class="note" placeholder="Note" aria-label="Note for alert ${a.id}">
        ${a.status === "firing" ? '<button type="button" data-action="ack" class="primary small">Acknowledge</button>' : ""}
        <button type="button" data-action="resolve" class="small">Resolve</button>` : "")}
    </div><div class="detail" hidden></div></div>`;
}

function historyHtml(alert, notifications, channels) {
  return html`<ol class="history">${alert.history.map((h) => html`<li><span class="muted">${when(h.at)}</span>
    ${h.from_status || "–"} → <strong>${h.to_status}</strong> by ${h.actor}${h.note ? html` — <em class="note-text">${h.note}</em>` : ""}</li>`)}</ol>
    <h4>Notifications</h4>${raw(notificationsHtml(notifications, channels))}`;
}

function silencesHtml(items, operate) {
  if (!items.length) return raw('<p class="empty">No current silences.</p>');
  return html`<table class="grid"><thead><tr><th>State</th><th>Comment</th><th>Matches</th><th>From</th><th>Until</th><th>By</th><th></th></tr></thead>
    <tbody>${items.map((s) => html`<tr data-silence="${s.id}"><td>${s.state}</td><td>${s.comment}</td>
    <td>${[s.probe_ids.length ? `probes ${s.probe_ids.join(", ")}` : "", s.group_ids.length ? `groups ${s.group_ids.join(", ")}` : "",
      s.rule_ids.length ? `rules ${s.rule_ids.join(", ")}` : ""].filter(Boolean).join("; ") || "everything"}</td>
    <td>${when(s.starts_at)}</td><td>${when(s.ends_at)}</td><td>${s.created_by_name}</td>
    <td>${raw(operate ? '<button type="button" class="small" data-action="delete-silence">Delete</button>' : "")}</td></tr>`)}</tbody></table>`;
}

function windowsHtml(items, operate) {
  if (!items.length) return raw('<p class="empty">No maintenance windows.</p>');
  return html`<table class="grid"><thead><tr><th>Name</th><th>Open now</th><th>Next</th><th>Covers</th><th>Schedule</th><th></th></tr></thead>
    <tbody>${items.map((w) => html`<tr data-window="${w.id}"><td>${w.name}</td><td>${w.open_now ? "yes" : "no"}</td>
    <td>${w.next_occurrence ? `${when(w.next_occurrence.starts_at)} – ${when(w.next_occurrence.ends_at)}` : "–"}</td>
    <td>${w.all_probes ? "all probes" : [w.probe_ids.length ? `probes ${w.probe_ids.join(", ")}` : "", w.group_ids.length ? `groups ${w.group_ids.join(", ")}` : ""].filter(Boolean).join("; ")}</td>
    <td>${w.cron ? `${w.cron} (${w.timezone}), ${w.duration_seconds} s` : "once"}</td>
    <td>${raw(operate ? '<button type="button" class="small" data-action="delete-window">Delete</button>' : "")}</td></tr>`)}</tbody></table>`;
}

const ids = (text) => (text || "").split(/[\s,]+/).filter(Boolean).map(Number).filter((n) => Number.isInteger(n) && n > 0);

export default {
  title: "Alerts",
  async mount(root, { query }) {
    const operate = canOperate();
    const names = channelNames();
    let tab = TABS.some(([k]) => k === (query.status ?? "open")) ? (query.status ?? "open") : "open";
    root.innerHTML = `<section class="alerts">
      <div class="tabs" id="tabs">${TABS.map(([k, v]) => `<button type="button" data-tab="${k}">${v}</button>`).join("")}</div>
      <div id="alert-list" class="stack"></div>
      <div class="cols">
        <div class="card"><h2>Silences</h2><div id="silences"></div>${operate ? `<form id="silence-form" class="inline-form">
          <input name="comment" placeholder="Why" required aria-label="Silence comment">
          <input name="probe_ids" placeholder="Probe ids (empty: all)" aria-label="Silence probe ids">
          <select name="hours" aria-label="Silence length"><option value="1">1 h</option><option value="4">4 h</option><option value="24">24 h</option></select>
          <button class="primary small">Add silence</button></form>` : ""}</div>
        <div class="card"><h2>Maintenance windows</h2><div id="windows"></div>${operate ? `<form id="window-form" class="inline-form">
          <input name="name" placeholder="Name" required aria-label="Window name">
          <input name="starts_at" type="datetime-local" required aria-label="Window start">
          <input name="ends_at" type="datetime-local" required aria-label="Window end">
          <input name="probe_ids" placeholder="Probe ids (empty: all)" aria-label="Window probe ids">
          <button class="primary small">Add window</button></form>` : ""}</div>
      </div></section>`;
    const $ = (sel) => root.querySelector(sel);

    async function loadAlerts() {
      root.querySelectorAll("[data-tab]").forEach((b) => b.classList.toggle("active", b.dataset.tab === tab));
      const page = await get(`/alerts${qs({ status: tab, limit: 100 })}`);
      const list = $("#alert-list");
      // Keep what the user is typing: a poll must not wipe a half-written note.
      if (list.contains(document.activeElement) && document.activeElement.classList.contains("note")) return;
      list.innerHTML = page.items.length ? page.items.map((a) => alertRow(a, operate).__raw).join("") : '<p class="empty">No alerts here.</p>';
      list.dataset.loaded = "1";
    }
    async function loadSide() {
      const [silences, windows] = await Promise.all([get(`/silences${qs({ state: "current", limit: 100 })}`), get("/maintenance-windows")]);
      render($("#silences"), silencesHtml(silences.items, operate));
      render($("#windows"), windowsHtml(windows.items, operate));
    }

    delegate(root, "click", "[data-tab]", (event, button) => { tab = button.dataset.tab; setQuery({ status: tab }); loadAlerts(); });
    delegate(root, "click", "[data-action]", async (event, button) => {
      const action = button.dataset.action;
      try {
        if (action === "history") {
          const row = button.closest("[data-alert]");
          const box = row.querySelector(".detail");
          box.hidden = !box.hidden;
          if (!box.hidden) {
            const [alert, notes, channels] = await Promise.all([get(`/alerts/${row.dataset.alert}`),
              get(`/alerts/${row.dataset.alert}/notifications`), names()]);
            render(box, historyHtml(alert, notes.items, channels));
          }
        } else if (action === "ack" || action === "resolve") {
          const row = button.closest("[data-alert]");
          const note = row.querySelector(".note").value;
          await post(`/alerts/${row.dataset.alert}/${action === "ack" ? "acknowledge" : "resolve"}`, { note });
          toast(action === "ack" ? "Acknowledged" : "Resolved");
          document.activeElement.blur();
          await loadAlerts();
        } else if (action === "delete-silence") {
          await del(`/silences/${button.closest("[data-silence]").dataset.silence}`);
          await loadSide();
        } else if (action === "delete-window") {
          await del(`/maintenance-windows/${button.closest("[data-window]").dataset.window}`);
          await loadSide();
        }
      } catch (error) { toast(error.message, "error"); }
    });
    root.addEventListener("submit", async (event) => {
      event.preventDefault();
      const data = formData(event.target);
      try {
        if (event.target.id === "silence-form") {
          const ends = new Date(Date.now() + Number(data.hours || 1) * 3600_000).toISOString();
          await post("/silences", { comment: data.comment, ends_at: ends, probe_ids: ids(data.probe_ids) });
        } else if (event.target.id === "window-form") {
          const probeIds = ids(data.probe_ids);
          await post("/maintenance-windows", { name: data.name, starts_at: new Date(data.starts_at).toISOString(),
            ends_at: new Date(data.ends_at).toISOString(), probe_ids: probeIds, all_probes: probeIds.length === 0 });
        }
        event.target.reset();
        await loadSide();
        toast("Added");
      } catch (error) { toast(error.message, "error"); }
    });

    await Promise.all([loadAlerts(), loadSide()]);
    const timer = setInterval(() => loadAlerts().catch(() => {}), 5000);
    return () => clearInterval(timer);
  },
};
