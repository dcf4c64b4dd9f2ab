// Operations (platform administrators): workers, queues per priority, active tasks, the pipeline's losses.
import { get, post } from "../api.js";
import { html, raw, render, toast } from "../dom.js";
import { duration } from "../format.js";
import { isPlatformAdmin } from "../session.js";

function workersHtml(data) {
  if (!data.workers.length) return html`<p class="empty">No worker answers.</p>`;
  return html`<table class="grid" id="workers"><thead><tr><th>Worker</th><th>Pool</th><th>Concurrency</th><th>Active</th>
    <th>Processed</th><th>Up for</th></tr></thead><tbody>${data.workers.map((w) => html`<tr><td>${w.name}</td><td>${w.pool ? w.pool.split(":")[0].split(".").pop() : "–"}</td>
    <td>${w.max_concurrency ?? "–"}</td><td>${w.active_tasks}</td><td>${w.processed}</td><td>${duration(w.uptime)}</td></tr>`)}</tbody></table>`;
}

function queuesHtml(items) {
  return html`<table class="grid" id="queues"><thead><tr><th>Queue</th><th>Waiting</th><th>Unacked</th><th>By priority (larger first)</th><th></th></tr></thead>
    <tbody>${items.map((q) => html`<tr data-queue="${q.queue}"><td>${q.queue}</td><td>${q.waiting}</td><td>${q.unacked}</td>
    <td>${q.by_priority.filter((b) => b.waiting).map((b) => `${b.priority}: ${b.waiting}`).join(", ") || "–"}</td>
    <td><button type="button" class="small danger" data-purge="${q.queue}">Purge</button></td></tr>`)}</tbody></table>`;
}

function tasksHtml(items) {
  if (!items.length) return html`<p class="empty">No task running.</p>`;
  return html`<table class="grid"><thead><tr><th>Task</th><th>Id</th><th>Worker</th><th>Queue</th><th>Running for</th></tr></thead>
    <tbody>${items.map((t) => html`<tr><td>${t.task_name}</td><td class="mono">${t.task_id}</td><td>${t.worker}</td><td>${t.queue || "–"}</td>
    <td>${t.time_start ? duration(Date.now() / 1000 - t.time_start) : "–"}</td></tr>`)}</tbody></table>`;
}

function statsHtml(s) {
  return html`<dl class="figures" id="run-stats">${[["stored", "stored"], ["in_flight", "in flight"], ["missed", "missed"],
    ["expired", "expired"], ["lost", "lost"], ["unwritten", "unwritten"]].map(([k, label]) =>
    html`<div class="${k !== "stored" && k !== "in_flight" && s[k] ? "bad" : ""}"><dt>${label}</dt><dd>${s[k]}</dd></div>`)}</dl>
    <p class="muted">Scheduled runs of this tenant over the last 24 h.</p>`;
}

async function section(element, load, view) {
  try { render(element, view(await load())); } catch (error) { render(element, raw(`<p class="muted">${error.message}</p>`)); }
}

export default {
  title: "Operations",
  async mount(root) {
    if (!isPlatformAdmin()) {
      root.innerHTML = '<p class="empty">Operations are for platform administrators.</p>';
      return undefined;
    }
    root.innerHTML = `<section class="ops"><div class="cols"><div class="card"><h2>Workers</h2><div id="w"></div></div>
      <div class="card"><h2>Queues</h2><div id="q"></div></div></div>
      <div class="cols"><div class="card"><h2>Active tasks</h2><div id="t"></div></div>
      <div class="card"><h2>Pipeline</h2><div id="s"></div></div></div></section>`;
    const $ = (s) => root.querySelector(s);
    const load = () => Promise.all([
      section($("#w"), () => get("/ops/workers"), workersHtml),
      section($("#q"), () => get("/ops/queues").then((d) => d.items), queuesHtml),
      section($("#t"), () => get("/ops/tasks/active").then((d) => d.items || d), tasksHtml),
      section($("#s"), () => get("/runs/stats"), statsHtml),
    ]);
    root.addEventListener("click", async (event) => {
      const queue = event.target.dataset && event.target.dataset.purge;
      if (!queue || !confirm(`Purge every waiting message of ${queue}?`)) return;
      try { await post(`/ops/queues/${queue}/purge`); toast(`Purged ${queue}`); await load(); } catch (error) { toast(error.message, "error"); }
    });
    await load();
    const timer = setInterval(() => load().catch(() => {}), 5000);
    return () => clearInterval(timer);
  },
};
