"""The operator console in a real browser against a real running system.

Debian's headless Chromium (driven by Playwright) opens the console served by gunicorn,
which serves the API from the same process; a worker process runs probes and alerts, a
second one playbooks, beat dispatches the schedule, all on the test PostgreSQL and Redis.
Targets are loopback servers. Each test writes a screenshot of its page to
``ADMIN_MIT_SCREENSHOTS_DIR`` (default: the test's temporary directory).
"""

from __future__ import annotations

import math
import os
import re
import sys
import tempfile
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask

from app.core.config import PROJECT_ROOT
from tests.api import PASSWORD, Api
from tests.browser import Rest, Server, launch, require_chromium, screenshots_dir
from tests.conftest import _bound, make_tenant, wait_for
from tests.pipeline import DISPATCHING, Processes, wait_for_worker
from tests.targets import LoopbackTargets, free_port

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(120)]

LOCAL = f"ansible_connection=local ansible_python_interpreter={sys.executable}"
STEP_MS = 15_000  # the longest a page condition is waited for


@dataclass
class System:
    app: Flask
    api: Api
    server: Server
    processes: Processes
    shots: Path


@pytest.fixture(scope="module")
def system(_postgres_app: Flask, postgres_url: str, redis_client: redis.Redis,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    """gunicorn, a probe/alert worker, a playbook worker and beat, shared by the module's tests."""
    require_chromium()
    directory = tmp_path_factory.mktemp("console")
    redis_client.flushdb()
    bound = _bound(_postgres_app)
    flask_app = next(bound)
    (directory / "runs").mkdir()
    env = {**os.environ, "ADMIN_MIT_DATABASE__URL": postgres_url,
           # Probes every 2 s, so a target going down shows within seconds.
           "ADMIN_MIT_PROBES__MIN_INTERVAL_SECONDS": "2",
           "ADMIN_MIT_ANSIBLE__RUNS_DIR": str(directory / "runs")}
    processes = Processes(env, directory)
    probes, playbooks = (f"{name}-{uuid.uuid4().hex[:6]}" for name in ("console-w", "console-a"))
    server = None
    try:
        processes.worker(probes, "--concurrency=2", queues="network_probes,alerts,celery")
        processes.worker(playbooks, "--pool=prefork", "--concurrency=1", queues="ansible")
        processes.beat()
        server = Server(env, directory)
        wait_for_worker(probes)
        wait_for_worker(playbooks)
        wait_for(lambda: DISPATCHING in processes.log("beat"), timeout=60, what="beat dispatching")
        yield System(flask_app, Api(flask_app), server, processes, screenshots_dir(directory / "screenshots"))
    finally:
        if server is not None:
            server.stop()
        processes.stop_all()
        bound.close()


@pytest.fixture(scope="module")
def browser(system: System, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = launch(playwright, tmp_path_factory.mktemp("chromium-profile"))
        context.set_default_timeout(STEP_MS)
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A new tab (its own sessionStorage: logged out); an error thrown by the page's scripts fails the test."""
    tab = browser.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    yield tab
    tab.close()
    assert errors == [], errors


class StoppableTarget:
    """An HTTP server on 127.0.0.1 that answers 200 until stopped."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        if self.thread.is_alive():
            self.server.shutdown()
            self.server.server_close()


def user(system: System, tenant_id: int, role: str) -> str:
    username = f"{role}-{uuid.uuid4().hex[:6]}"
    system.api.user(tenant_id, role, username)
    return username


def probe(rest: Rest, name: str, target: str, **fields: Any) -> dict[str, Any]:
    return rest.call("POST", "/probes", {"name": name, "protocol": "http", "target": target, "interval_seconds": 2,
                                         "timeout_seconds": 1, **fields}, expect=201)


def log_in(page: Any, system: System, username: str, tenant_id: int | None = None) -> None:
    page.goto(system.server.url + "/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("#login-form button[type=submit]")
    if tenant_id is not None:
        page.wait_for_selector("#tenant-field:not([hidden])")
        page.select_option("#tenant-field select", str(tenant_id))
        page.click("#login-form button[type=submit]")
    page.wait_for_selector("[data-testid=user]")


def row(tile_id: int, state: str | None = None) -> str:
    return f'.rows .tr[data-id="{tile_id}"]' + (f'[data-state="{state}"]' if state else "")


def shoot(page: Any, system: System, name: str) -> None:
    page.screenshot(path=str(system.shots / f"{name}.png"))


def history(tile: dict[str, Any], tenant_id: int, *, step: timedelta, span: timedelta, ms: float = 40.0,
            failing: float = 0.0, ending: timedelta = timedelta(0)) -> int:
    """Past results of an HTTP probe, one every ``step`` over ``span`` before now (minus ``ending``), with
    their phases, written with their rollups as the result store writes them; about ``failing`` of them
    failed. Nothing goes to the status cache: the tiles show the live runs."""
    from app.extensions import db
    from app.models import ProbeResult
    from app.services import rollups

    now = datetime.now(UTC) - ending
    count = int(span / step)
    batch = uuid.uuid4().hex[:8]
    rows = []
    for i in range(count, 0, -1):
        at = now - i * step
        wobble = (math.sin(i / 7) + 1) / 2  # a steady, realistic-looking swing
        failed = failing > 0 and (i * 7919) % 1000 < failing * 1000
        phases = {"dns_ms": None, "connect_ms": 0.4 + wobble, "tls_ms": None,
                  "processing_ms": ms * (0.8 + 0.5 * wobble), "transfer_ms": 1.5 + 3 * wobble}
        rows.append({"tenant_id": tenant_id, "probe_id": tile["id"], "run_key": f"history:{batch}:{i}", "probe_type": "scheduled",
                     "status": "timeout" if failed else "success",
                     "response_time_ms": None if failed else sum(v for v in phases.values() if v is not None),
                     "status_code": None if failed else 200, "error": "timed out after 1 s" if failed else None,
                     **(dict.fromkeys(phases) if failed else phases), "cert_expires_at": None, "bytes_read": 2,
                     "details": None, "scheduled_for": None, "started_at": at, "created_at": at})
    db.session.execute(ProbeResult.__table__.insert(), rows)
    rollups.record(rows)
    db.session.commit()
    return count


def test_log_in_and_see_a_probe_go_down_without_reloading(system: System, page: Any,
                                                          targets: LoopbackTargets) -> None:
    tenant = make_tenant()
    operator = user(system, tenant.id, "operator")
    rest = Rest(system.server, operator)
    group = rest.call("POST", "/probe-groups", {"name": "web"}, expect=201)
    shop_target = StoppableTarget()
    try:
        shop = probe(rest, "shop", shop_target.url, group_id=group["id"])
        api = probe(rest, "api", f"{targets.http_url}/ok", group_id=group["id"])
        search = probe(rest, "search", f"{targets.http_url}/slow?ms=120")
        docs = probe(rest, "docs", f"{targets.http_url}/json")
        # A month behind them, so the uptime columns have something to say.
        for tile, ms, failing in ((shop, 30, 0.01), (api, 5, 0.0), (search, 120, 0.04), (docs, 8, 0.002)):
            history(tile, tenant.id, step=timedelta(minutes=20), span=timedelta(days=30), ms=ms, failing=failing)
        for tile in (shop, api, search, docs):
            wait_for(lambda t=tile: not rest.call("GET", f"/probes/{t['id']}/results?limit=1")["items"][0]["run_key"]
                     .startswith("history:"), timeout=30, what=f"{tile['name']} to run")

        log_in(page, system, operator)
        page.wait_for_selector(row(shop["id"], "up"))
        page.wait_for_function("() => document.querySelectorAll('.rows .tr[data-state=up]').length === 4")
        # A probe with results shows its uptime: the month behind it, and its live runs.
        uptime = page.inner_text(f'{row(search["id"])} [data-up="24h"]')
        assert re.fullmatch(r"\d+(\.\d+)?%", uptime), uptime
        assert float(uptime.rstrip("%")) < 100
        for window in ("7d", "30d"):
            assert re.fullmatch(r"\d+(\.\d+)?%", page.inner_text(f'{row(api["id"])} [data-up="{window}"]'))
        page.evaluate("window.__sameDocument = true")
        shop_target.stop()

        # The row turns red by itself: the overview polls its changes feed, no reload.
        page.wait_for_selector(row(shop["id"], "down"))
        assert page.evaluate("window.__sameDocument") is True
        page.wait_for_selector(f'{row(shop["id"])} .beats i.s-down')
        assert page.locator(".counts [data-count=down]").inner_text() == "1 down"
        shoot(page, system, "overview")

        # Filters apply in the page and are kept in the address.
        page.select_option("#f-status", "down")
        page.wait_for_function("() => document.querySelectorAll('.rows .tr').length === 1")
        assert "status=down" in page.url
        page.select_option("#f-status", "")
        page.fill("#f-q", "sea")
        page.wait_for_selector(".rows .tr .c-name a:text-is('search')")
        assert page.locator(".rows .tr").count() == 1
        assert "q=sea" in page.url

        page.goto(f"{system.server.url}/#/wall")
        page.wait_for_selector(f'.wtile[data-id="{shop["id"]}"][data-state="down"]')
        assert page.locator(".wtile").count() == 1  # only what needs a look gets a big tile
        shoot(page, system, "wall")
    finally:
        shop_target.stop()


def test_acknowledge_a_firing_alert_with_a_note(system: System, page: Any) -> None:
    tenant = make_tenant()
    operator = user(system, tenant.id, "operator")
    rest = Rest(system.server, operator)
    dead = probe(rest, "billing", f"http://127.0.0.1:{free_port()}/")
    admin = Rest(system.server, user(system, tenant.id, "admin"))
    channel = admin.call("POST", "/notification-channels", {"name": "on-call hook", "kind": "webhook",
                                                           "settings": {"url": f"http://127.0.0.1:{free_port()}/hook"}},
                        expect=201)
    rest.call("POST", "/alert-rules", {"name": "billing down", "kind": "down", "probe_id": dead["id"], "threshold": 1,
                                       "channel_ids": [channel["id"]]}, expect=201)
    alert = wait_for(lambda: rest.call("GET", f"/alerts?status=firing&probe_id={dead['id']}")["items"],
                     timeout=30, what="the alert to fire")[0]

    log_in(page, system, operator)
    page.goto(f"{system.server.url}/#/alerts")
    item = f'[data-alert="{alert["id"]}"]'
    page.wait_for_selector(f'{item}[data-status="firing"]')
    page.fill(f"{item} .note", "looking into the billing host")
    page.click(f"{item} [data-action=ack]")
    page.wait_for_selector(f'{item}[data-status="acknowledged"]')

    stored = rest.call("GET", f"/alerts/{alert['id']}")
    assert stored["status"] == "acknowledged" and stored["acknowledged_by"] == operator
    assert any(h["note"] == "looking into the billing host" for h in stored["history"])
    wait_for(lambda: rest.call("GET", f"/alerts/{alert['id']}/notifications")["items"], timeout=30,
             what="a notification")
    page.click(f"{item} [data-action=history]")
    page.wait_for_selector(f"{item} .note-text:has-text('looking into the billing host')")
    # Notifications name their channel.
    assert page.inner_text(f'{item} td[data-channel="{channel["id"]}"]') == "on-call hook"
    shoot(page, system, "alerts")


def test_the_probe_page_charts_its_runs_and_edits_the_probe(system: System, page: Any,
                                                            targets: LoopbackTargets) -> None:
    tenant = make_tenant()
    operator = user(system, tenant.id, "operator")
    rest = Rest(system.server, operator)
    web = probe(rest, "storefront", f"{targets.http_url}/slow?ms=40")
    # 90 days behind it: every 30 s over the last hour, every 10 min over the week, hourly before.
    history(web, tenant.id, step=timedelta(seconds=30), span=timedelta(hours=1), failing=0.02)
    history(web, tenant.id, step=timedelta(minutes=10), span=timedelta(days=7), ending=timedelta(hours=1),
            failing=0.01)
    history(web, tenant.id, step=timedelta(hours=1), span=timedelta(days=83), ending=timedelta(days=7, hours=1),
            failing=0.03)
    wait_for(lambda: not rest.call("GET", f"/probes/{web['id']}/results?limit=1")["items"][0]["run_key"]
             .startswith("history:"), timeout=30, what="a live result")

    log_in(page, system, operator)
    page.goto(f"{system.server.url}/#/probes/{web['id']}")
    page.wait_for_selector("#chart[data-range='24h'] canvas")
    assert int(page.get_attribute("#chart", "data-points") or 0) >= 100
    assert page.locator("#chart .u-legend").inner_text().count("Response") == 1
    assert page.locator("#results tbody tr").count() >= 4
    assert page.locator("#daily .daybars i").count() == 90
    # The x axis spans exactly the range chosen, ending now; the phases are stacked with values.
    ranges = {"1h": 3600, "7d": 7 * 86400, "90d": 90 * 86400, "24h": 86400}
    for chosen, seconds in ranges.items():
        page.click(f"[data-range='{chosen}']")
        page.wait_for_selector(f"#chart[data-range='{chosen}'] canvas")
        shown = page.evaluate("""() => { const u = document.querySelector('#chart').uplot;
            const series = Object.fromEntries(u.series.slice(1).map((s, i) => [s.label, u.data[i + 1]]));
            return { min: u.scales.x.min, max: u.scales.x.max, first: u.data[0][0], now: Date.now() / 1000,
                     processing: series.Processing.filter((v) => v !== null).length,
                     connect: series.Connect.filter((v) => v !== null).length,
                     stacked: series.Transfer.every((v, i) => v === null || v >= series.Processing[i]) }; }""")
        assert abs((shown["max"] - shown["min"]) - seconds) <= 5, (chosen, shown)
        assert abs(shown["max"] - shown["now"]) <= 60, (chosen, shown)
        # The data fills the range from its start (a rollup bucket may start up to a day before it).
        assert -86400 <= shown["first"] - shown["min"] < seconds * 0.05, (chosen, shown)
        assert shown["processing"] > 10 and shown["connect"] > 10 and shown["stacked"], (chosen, shown)
        assert "range=" + chosen in page.url
    page.click("[data-range='1h']")
    page.wait_for_selector("#chart[data-range='1h'][data-level='raw'] canvas")
    legend = page.inner_text("#chart .u-legend")
    assert re.search(r"Processing:?\s*\d+\.\d ms", legend), legend
    shoot(page, system, "probe")

    page.click("[data-action=edit]")
    page.fill("#edit-form input[name=name]", "storefront-eu")
    page.click("#edit-form button[type=submit]")
    page.wait_for_selector(".probe-head h1:has-text('storefront-eu')")
    assert rest.call("GET", f"/probes/{web['id']}")["name"] == "storefront-eu"
    page.click("[data-action=toggle]")
    page.wait_for_selector("[data-action=toggle]:has-text('Enable')")
    assert rest.call("GET", f"/probes/{web['id']}")["enabled"] is False


def test_an_ansible_run_shows_its_output_live(system: System, page: Any) -> None:
    tenant = make_tenant()
    operator = user(system, tenant.id, "operator")
    rest = Rest(system.server, operator)
    content = ("- hosts: web\n  gather_facts: false\n  tasks:\n"
               "    - name: before\n      ansible.builtin.debug: {msg: starting}\n"
               "    - name: wait a little\n      ansible.builtin.command: sleep 6\n"
               "    - name: after\n      ansible.builtin.debug: {msg: done}\n")
    playbook = rest.call("POST", "/ansible/playbooks", {"name": "site", "source": "content", "content": content},
                         expect=201)
    inventory = rest.call("POST", "/ansible/inventories", {"name": "lab", "kind": "text", "format": "ini",
                                                           "content": f"[web]\nweb1 {LOCAL}\n"}, expect=201)
    rest.call("POST", "/ansible/templates", {"name": "deploy", "playbook_id": playbook["id"],
                                             "inventory_id": inventory["id"]}, expect=201)

    log_in(page, system, operator)
    page.goto(f"{system.server.url}/#/ansible")
    page.select_option("#template", label="deploy")
    page.click("#run-form button")
    page.wait_for_url(re.compile(r"#/ansible/executions/\d+$"))
    execution_id = int(page.url.rsplit("/", 1)[1])

    # The first task's output is on the page while the playbook is still running.
    page.wait_for_selector("#output:has-text('TASK [before]')")
    assert rest.call("GET", f"/ansible/executions/{execution_id}")["status"] == "running"
    assert "TASK [after]" not in page.inner_text("#output")
    page.wait_for_selector("#output[data-ended=successful]", timeout=60_000)
    assert "TASK [after]" in page.inner_text("#output")
    page.wait_for_selector("#hosts td:has-text('web1')")
    page.wait_for_selector("#exec-status:has-text('successful')")
    # No warning with a path of the machine opens the output (runs start with PYTHONWARNINGS=ignore).
    output = page.inner_text("#output")
    for machine_path in (str(PROJECT_ROOT), sys.prefix, tempfile.gettempdir() + os.sep):
        assert machine_path not in output, machine_path
    assert "Warning" not in output
    shoot(page, system, "ansible")


def test_the_public_status_page_opens_logged_out(system: System, page: Any, targets: LoopbackTargets) -> None:
    tenant = make_tenant()
    admin = user(system, tenant.id, "admin")
    rest = Rest(system.server, admin)
    shown = probe(rest, "Checkout", f"{targets.http_url}/ok")
    hidden = probe(rest, "internal-admin", f"{targets.http_url}/json")
    wait_for(lambda: rest.call("GET", f"/probes/{shown['id']}/results?limit=1")["items"], timeout=30,
             what="a result")
    slug = f"shop-{uuid.uuid4().hex[:6]}"
    status_page = rest.call("POST", "/status-pages", {"slug": slug, "title": "Shop status", "public": True,
                                                      "description": "Our shop and its checkout.",
                                                      "probe_ids": [shown["id"]]}, expect=201)
    rest.call("POST", f"/status-pages/{status_page['id']}/incidents",
              {"title": "Slow checkout", "message": "Payments took longer than usual.", "status": "monitoring"},
              expect=201)

    page.goto(f"{system.server.url}/status/{slug}")
    page.wait_for_selector("[data-overall]")
    text = page.inner_text("body")
    assert "Shop status" in text and "Checkout" in text and "Slow checkout" in text
    assert "internal-admin" not in text and targets.http_url not in text and hidden["name"] not in text
    assert page.locator(f'[data-probe="{shown["id"]}"] .daybars i').count() == 90
    shoot(page, system, "status-page")

    page.goto(f"{system.server.url}/status/no-such-page-{uuid.uuid4().hex[:6]}")
    page.wait_for_selector("#not-found")


def test_a_viewer_sees_no_edit_run_or_acknowledge_buttons(system: System, page: Any) -> None:
    tenant = make_tenant()
    operator = Rest(system.server, user(system, tenant.id, "operator"))
    dead = probe(operator, "mail", f"http://127.0.0.1:{free_port()}/")
    operator.call("POST", "/alert-rules", {"name": "mail down", "kind": "down", "probe_id": dead["id"],
                                           "threshold": 1}, expect=201)
    wait_for(lambda: operator.call("GET", f"/alerts?status=firing&probe_id={dead['id']}")["items"], timeout=30,
             what="the alert to fire")
    viewer = user(system, tenant.id, "viewer")

    log_in(page, system, viewer)
    page.wait_for_selector(row(dead["id"], "down"))
    assert page.locator("[data-action=run]").count() == 0
    page.goto(f"{system.server.url}/#/probes/{dead['id']}")
    page.wait_for_selector("#chart[data-points]")
    for label in ("Run now", "Edit", "Disable", "Enable"):
        assert page.locator("button", has_text=label).count() == 0, label
    shoot(page, system, "viewer-probe")
    page.goto(f"{system.server.url}/#/alerts")
    page.wait_for_selector('[data-status="firing"]')
    assert page.locator("[data-action=ack], [data-action=resolve], #silence-form, #window-form").count() == 0
    page.goto(f"{system.server.url}/#/ansible")
    page.wait_for_selector("#list")
    assert page.locator("#run-form").count() == 0
    # The API refuses anyway.
    assert Rest(system.server, viewer).call("POST", f"/probes/{dead['id']}/run", expect=403)


def test_a_user_of_two_tenants_chooses_one_and_switches(system: System, page: Any,
                                                        targets: LoopbackTargets) -> None:
    first, second = make_tenant(), make_tenant()
    username = user(system, first.id, "viewer")
    from app.extensions import db
    from app.models import User
    from app.services import users

    users.grant(second.id, db.session.query(User).filter_by(username=username).one(), "operator")
    db.session.commit()
    alpha = probe(Rest(system.server, user(system, first.id, "operator")), "alpha", f"{targets.http_url}/ok")
    beta = probe(Rest(system.server, user(system, second.id, "operator")), "beta", f"{targets.http_url}/ok")

    log_in(page, system, username, tenant_id=first.id)
    page.wait_for_selector(row(alpha["id"]))
    assert page.locator(row(beta["id"])).count() == 0
    assert page.inner_text("[data-testid=role]").startswith("viewer")

    before = page.evaluate("JSON.parse(sessionStorage.getItem('admin-mit.tokens'))")
    # No password again: the session moves to the other tenant (POST /auth/switch).
    page.select_option("#tenant-select", str(second.id))
    page.wait_for_selector(row(beta["id"]))
    assert page.locator("dialog").count() == 0
    assert page.locator(row(alpha["id"])).count() == 0
    assert page.inner_text("[data-testid=role]").startswith("operator")
    assert system.server.request("GET", "/api/v1/auth/me", token=before["access_token"])[0] == 401


def test_the_operations_page_shows_workers_and_queues_to_a_platform_admin(system: System, page: Any) -> None:
    tenant = make_tenant()
    username = f"root-{uuid.uuid4().hex[:6]}"
    system.api.user(tenant.id, "admin", username, platform_admin=True)

    log_in(page, system, username)
    page.goto(f"{system.server.url}/#/ops")
    page.wait_for_selector("#workers td:has-text('console-w-')")
    page.wait_for_selector("#workers td:has-text('console-a-')")
    page.wait_for_selector("#queues tr[data-queue=network_probes]")
    page.wait_for_selector("#run-stats")
    shoot(page, system, "operations")

    # An access token the API no longer takes is refreshed once, and the page carries on.
    before = page.evaluate("JSON.parse(sessionStorage.getItem('admin-mit.tokens'))")
    page.evaluate("""() => { const t = JSON.parse(sessionStorage.getItem('admin-mit.tokens'));
                             t.access_token = 'expired'; sessionStorage.setItem('admin-mit.tokens', JSON.stringify(t)); }""")
    page.goto(f"{system.server.url}/#/alerts")
    page.wait_for_selector("#alert-list[data-loaded]")
    after = page.evaluate("JSON.parse(sessionStorage.getItem('admin-mit.tokens'))")
    assert after["access_token"] not in ("expired", before["access_token"])
    assert after["refresh_token"] != before["refresh_token"]


def test_the_console_is_served_with_its_cache_and_security_headers(system: System) -> None:
    def fetch(path: str, **headers: str) -> tuple[int, Any, bytes]:
        request = urllib.request.Request(system.server.url + path, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.headers, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers, exc.read()

    status, headers, body = fetch("/")
    assert status == 200 and b"/console/js/main.js" in body
    assert headers["Cache-Control"] == "no-cache"
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    status, headers, _ = fetch("/console/js/main.js")
    assert status == 200 and headers["Content-Type"].startswith("text/javascript")
    assert headers["Cache-Control"] == "no-cache"
    assert fetch("/console/js/main.js", **{"If-None-Match": headers["ETag"]})[0] == 304
    status, headers, _ = fetch("/console/vendor/uplot/uPlot.esm.js")
    assert status == 200 and "max-age=86400" in headers["Cache-Control"]
    assert fetch("/console/index.html")[0] == 404
    assert fetch("/console/../app/web.py")[0] == 404
    status, _, body = fetch("/status/anything")
    assert status == 200 and b"/console/js/status-page.js" in body
