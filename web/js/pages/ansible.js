// Ansible: the executions, and starting a run from a template (operators).
import { get, post, qs } from "../api.js";
import { delegate, html, render, toast } from "../dom.js";
import { ago, duration } from "../format.js";
import { go } from "../router.js";
import { canOperate } from "../session.js";

export function seconds(start, end) {
  if (!start) return null;
  return ((end ? Date.parse(end) : Date.now()) - Date.parse(start)) / 1000;
}

function executionsHtml(items) {
  if (!items.length) return html`<p class="empty">No executions yet.</p>`;
  return html`<table class="grid" id="executions"><thead><tr><th>#</th><th>Status</th><th>Playbook</th><th>Hosts</th><th>Started</th>
    <th>Took</th><th>Reason</th></tr></thead><tbody>${items.map((e) => html`<tr data-execution="${e.id}" class="clickable">
    <td><a href="#/ansible/executions/${e.id}">${e.id}</a></td><td><span class="badge x-${e.status}">${e.status}</span></td>
    <td>${e.playbook_name}</td><td>${Object.keys(e.hosts).length || "–"}</td><td>${ago(e.started_at || e.created_at)}</td>
    <td>${duration(seconds(e.started_at, e.finished_at))}</td><td class="err">${e.reason || ""}</td></tr>`)}</tbody></table>`;
}

export default {
  title: "Ansible",
  async mount(root) {
    const operate = canOperate();
    root.innerHTML = `<section class="ansible">
      ${operate ? '<div class="card"><h2>Run a template</h2><form id="run-form" class="inline-form"><select name="template" id="template" aria-label="Template"></select><button class="primary small">Run</button></form></div>' : ""}
      <div class="card"><h2>Executions</h2><div id="list"></div></div></section>`;
    const list = root.querySelector("#list");
    async function load() { render(list, executionsHtml((await get(`/ansible/executions${qs({ limit: 50 })}`)).items)); }
    if (operate) {
      const templates = (await get("/ansible/templates")).items;
      render(root.querySelector("#template"), templates.length
        ? html`${templates.map((t) => html`<option value="${t.id}">${t.name}</option>`)}` : html`<option value="">No templates</option>`);
      root.querySelector("#run-form").addEventListener("submit", async (event) => {
        event.preventDefault();
        const id = root.querySelector("#template").value;
        if (!id) return;
        try {
          const execution = await post(`/ansible/templates/${id}/executions`);
          go(`/ansible/executions/${execution.id}`);
        } catch (error) { toast(error.message, "error"); }
      });
    }
    delegate(list, "click", "tr[data-execution]", (event, row) => {
      if (!event.target.closest("a")) go(`/ansible/executions/${row.dataset.execution}`);
    });
    await load();
    const timer = setInterval(() => load().catch(() => {}), 5000);
    return () => clearInterval(timer);
  },
};
