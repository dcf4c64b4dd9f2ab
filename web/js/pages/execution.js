// One execution: status, per-host summary, its output live from the SSE stream, cancel (operators).
import { get, post } from "../api.js";
import { esc, html, raw, render, toast } from "../dom.js";
import { duration, when } from "../format.js";
import { canOperate } from "../session.js";
import { follow } from "../sse.js";
import { seconds } from "./ansible.js";

const RUNNING = ["pending", "running"];
// eslint-disable-next-line no-control-regex
const ANSI = /\x1b\[[0-9;]*m/g;

function summaryHtml(e, operate) {
  const hosts = Object.entries(e.hosts);
  return html`<div class="row between"><h1>Execution ${e.id} <span class="badge x-${e.status}" id="exec-status">${e.status}</span></h1>
    ${raw(operate && RUNNING.includes(e.status) ? '<button type="button" id="cancel" class="danger">Cancel</button>' : "")}</div>
    <p class="muted">${e.playbook_name} · created ${when(e.created_at)} · took ${duration(seconds(e.started_at, e.finished_at))}
    ${e.rc !== null ? ` · rc ${e.rc}` : ""}${e.reason ? ` · ${e.reason}` : ""}</p>
    ${hosts.length ? html`<table class="grid" id="hosts"><thead><tr><th>Host</th><th>ok</th><th>changed</th><th>failed</th><th>unreachable</th>
      <th>skipped</th><th>rescued</th><th>ignored</th></tr></thead><tbody>${hosts.map(([name, s]) => html`<tr><td>${name}</td>
      <td>${s.ok}</td><td>${s.changed}</td><td class="${s.failed ? "bad" : ""}">${s.failed}</td><td class="${s.unreachable ? "bad" : ""}">${s.unreachable}</td>
      <td>${s.skipped}</td><td>${s.rescued}</td><td>${s.ignored}</td></tr>`)}</tbody></table>` : raw('<p class="muted">Per-host summary when the run ends.</p>')}`;
}

export default {
  title: "Execution",
  async mount(root, { params }) {
    const id = Number(params.id);
    const operate = canOperate();
    root.innerHTML = '<section class="execution"><div class="card" id="summary"></div><div class="card"><h2>Output</h2>' +
      '<pre class="output" id="output" aria-live="polite"></pre></div></section>';
    const summary = root.querySelector("#summary");
    const output = root.querySelector("#output");
    let execution = await get(`/ansible/executions/${id}`);
    const show = () => render(summary, summaryHtml(execution, operate));
    show();
    summary.addEventListener("click", async (event) => {
      if (event.target.id !== "cancel") return;
      try { execution = await post(`/ansible/executions/${id}/cancel`); show(); toast("Cancel requested"); } catch (error) { toast(error.message, "error"); }
    });
    let count = 0;
    const stop = follow(`/ansible/executions/${id}/stream`, {
      onEvent(event) {
        if (!event.stdout) return;
        const atBottom = output.scrollTop + output.clientHeight >= output.scrollHeight - 20;
        output.insertAdjacentHTML("beforeend", `<span class="ev ev-${esc(event.event)}" data-seq="${event.seq}">${esc(event.stdout.replace(ANSI, ""))}\n</span>`);
        count += 1;
        output.dataset.events = count;
        if (atBottom) output.scrollTop = output.scrollHeight;
      },
      async onEnd(end) {
        output.dataset.ended = end.status;
        execution = await get(`/ansible/executions/${id}`);
        show();
      },
    });
    // While it runs, the summary (status, cancel) follows the execution row too.
    const timer = setInterval(async () => {
      if (!RUNNING.includes(execution.status)) return;
      try { execution = await get(`/ansible/executions/${id}`); show(); } catch { /* next tick */ }
    }, 3000);
    return () => { stop(); clearInterval(timer); };
  },
};
