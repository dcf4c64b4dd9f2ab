// Boot: the session, the navigation bar, and the hash router mounting one page at a time.
import * as api from "./api.js";
import { esc, toast } from "./dom.js";
import { fallback, match, parse, route } from "./router.js";
import * as session from "./session.js";
import loginPage from "./pages/login.js";
import overviewPage from "./pages/overview.js";
import wallPage from "./pages/wall.js";
import probePage from "./pages/probe.js";
import alertsPage from "./pages/alerts.js";
import ansiblePage from "./pages/ansible.js";
import executionPage from "./pages/execution.js";
import opsPage from "./pages/ops.js";
import { tenantSwitcher } from "./components/tenant-switch.js";

route("/", overviewPage);
route("/wall", wallPage);
route("/probes/:id", probePage);
route("/alerts", alertsPage);
route("/ansible", ansiblePage);
route("/ansible/executions/:id", executionPage);
route("/ops", opsPage);
fallback({ title: "Not found", mount(root) { root.innerHTML = '<p class="empty">No such page.</p>'; } });

const root = document.getElementById("app");
const nav = document.getElementById("nav");
let unmount = null;
let mountedPath = null;

const LINKS = [
  ["/", "Overview"], ["/wall", "Wall"], ["/alerts", "Alerts"], ["/ansible", "Ansible"], ["/ops", "Operations", "platform"],
];

function renderNav(path) {
  const me = session.current();
  if (!me) { nav.innerHTML = ""; return; }
  const links = LINKS.filter(([, , only]) => !only || session.isPlatformAdmin())
    .map(([href, label]) => {
      const active = href === "/" ? path === "/" || path.startsWith("/probes") : path.startsWith(href);
      return `<a href="#${href}" class="${active ? "active" : ""}">${label}</a>`;
    }).join("");
  nav.innerHTML = `<a class="brand" href="#/">admin-mit</a><nav>${links}</nav>` +
    `<div class="who"><span class="user" data-testid="user">${esc(me.username)}</span>` +
    `<span class="role" data-testid="role">${esc(me.role || "no tenant")}${me.tenant_id ? ` · tenant ${me.tenant_id}` : ""}</span>` +
    '<span id="tenant-switch"></span><button type="button" class="link" id="logout">Log out</button></div>';
  nav.querySelector("#logout").addEventListener("click", async () => { await api.logout(); });
  tenantSwitcher(nav.querySelector("#tenant-switch"), me, () => start());
}

async function show() {
  const { path, query } = parse();
  if (unmount) { unmount(); unmount = null; }
  let page;
  let params = {};
  if (!api.loggedIn()) {
    page = loginPage;
  } else {
    if (!session.current()) {
      try { await session.loadMe(); } catch (error) { if (!api.loggedIn()) return show(); toast(error.message, "error"); return; }
    }
    ({ page, params } = match(path));
  }
  document.body.classList.toggle("wall-mode", page === wallPage);
  renderNav(path);
  document.title = `${page.title || "Console"} · admin-mit`;
  root.innerHTML = "";
  mountedPath = path;
  const cleanup = await page.mount(root, { params, query, done: () => start() });
  if (mountedPath === path && typeof cleanup === "function") unmount = cleanup;
  else if (typeof cleanup === "function" && mountedPath !== path) cleanup();
}

function start() {
  session.forget();
  show();
}

api.onSession((pair) => { if (!pair) start(); });
window.addEventListener("hashchange", show);
window.addEventListener("unhandledrejection", (event) => {
  const error = event.reason;
  if (error && error.status === 401) return;
  toast(error && error.message ? error.message : String(error), "error");
});
show();
