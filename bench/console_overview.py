#!/usr/bin/env python
"""The console's overview with many probes, in a real browser: how long until it shows, how long
a filter takes, and the longest task that blocks the page's main thread.

Run it from the project root (needs Debian's Chromium at /usr/bin/chromium and playwright):

    .venv/bin/python bench/console_overview.py
    .venv/bin/python bench/console_overview.py --probes 10000 --database postgres

It migrates a fresh database (a temporary SQLite file, or a scratch PostgreSQL database on the
server of ``ADMIN_MIT_TEST_POSTGRES_URL``), bulk-loads one tenant with ``--probes`` probes in 20
groups, fills the Redis status cache (database ``--redis-db``, flushed at start and at the end)
with ``--beats`` runs per probe (3 % of the probes failing), starts gunicorn on it and opens the
console in headless Chromium. Measured in the page: from navigation to the first rendered rows
(``performance.now()``), the ``GET /console/overview`` request, and the filter's own work (filter,
sort and render of the visible rows); measured from outside: the wall time from typing or
choosing until the rows show (it includes the 150 ms input debounce). Long tasks come from a
``PerformanceObserver`` of type ``longtask`` (tasks over 50 ms).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from api_queries import configure_environment, database_url, insert_chunked, migrated_app, probe_row
from bench_env import BenchError

PASSWORD = "bench-password-0123"
GROUPS = 20
FAILING_EVERY = 33  # one probe in 33 (3 %) is down
LONGTASKS = """
window.__longtasks = [];
new PerformanceObserver((list) => list.getEntries().forEach((e) => window.__longtasks.push(e.duration)))
  .observe({ type: "longtask", buffered: true });
"""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--probes", type=int, default=10_000)
    parser.add_argument("--beats", type=int, default=30, help="runs per probe in the status cache")
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--redis-db", type=int, default=15)
    parser.add_argument("--repeat", type=int, default=3, help="page loads and filters measured")
    return parser.parse_args()


def seed(tenant_id: int, probes: int, beats: int) -> tuple[list[int], str]:
    """Groups, probes and their cached runs; the admin's username."""
    from sqlalchemy import select, update

    from app.extensions import db
    from app.models import Probe, ProbeGroup
    from app.services import status_cache, users

    now = datetime.now(UTC)
    db.session.add_all([ProbeGroup(tenant_id=tenant_id, name=f"group-{g:02d}") for g in range(GROUPS)])
    db.session.commit()
    group_ids = list(db.session.scalars(select(ProbeGroup.id).where(ProbeGroup.tenant_id == tenant_id)))
    insert_chunked(Probe.__table__, (probe_row(tenant_id, index, now) for index in range(probes)))
    ids = list(db.session.scalars(select(Probe.id).where(Probe.tenant_id == tenant_id).order_by(Probe.id)))
    for position, group_id in enumerate(group_ids):
        db.session.execute(update(Probe).where(Probe.id.in_(ids[position::GROUPS])).values(group_id=group_id))
    username = f"admin-{uuid.uuid4().hex[:6]}"
    users.grant(tenant_id, users.create_user(username, PASSWORD), "admin")
    db.session.commit()

    rows, result_id = [], 0
    for index, probe_id in enumerate(ids):
        failing = index % FAILING_EVERY == 0
        for beat in range(beats):
            result_id += 1
            rows.append({"id": result_id, "probe_id": probe_id, "created_at": now - timedelta(seconds=60 * (beats - beat)),
                         "status": "failed" if failing and beat >= beats - 3 else "success", "status_code": 200,
                         "response_time_ms": 20 + (index * 7 + beat * 13) % 180, "error": None, "probe_type": "http"})
        if len(rows) >= 20_000:
            status_cache.store(tenant_id, rows)
            rows = []
    status_cache.store(tenant_id, rows)
    return ids, username


def measure(url: str, username: str, probes: int, repeat: int) -> dict[str, list[float]]:
    from playwright.sync_api import sync_playwright

    from tests.browser import CHROMIUM, CHROMIUM_ARGS, VIEWPORT

    if not CHROMIUM.is_file():
        raise BenchError(f"{CHROMIUM} is missing (apt-get install chromium)")
    figures: dict[str, list[float]] = {name: [] for name in (
        "first render (page)", "GET /console/overview", "first render (wall)", "text filter (page)",
        "text filter (wall)", "status filter (page)", "status filter (wall)", "clear filters (page)")}
    longest: list[float] = []
    shown: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="console-bench-") as profile, sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(profile, executable_path=str(CHROMIUM), headless=True,
                                                                args=CHROMIUM_ARGS, viewport=VIEWPORT)
        context.add_init_script(LONGTASKS)
        page = context.new_page()
        page.set_default_timeout(120_000)
        page.goto(url + "/")
        page.fill("input[name=username]", username)
        page.fill("input[name=password]", PASSWORD)
        page.click("#login-form button[type=submit]")
        page.wait_for_selector("body[data-overview=ready]")
        for _ in range(repeat):
            started = time.perf_counter()
            page.reload()
            page.wait_for_selector("body[data-overview=ready]")
            figures["first render (wall)"].append((time.perf_counter() - started) * 1000)
            metrics = page.evaluate("window.__consoleMetrics")
            assert metrics["shown"] == probes, metrics
            figures["first render (page)"].append(metrics["readyAt"])
            figures["GET /console/overview"].append(page.evaluate(
                "performance.getEntriesByType('resource').filter((e) => e.name.includes('/console/overview'))[0].duration"))

            def timed(action: Any, name: str) -> int:
                renders = page.evaluate("window.__consoleMetrics.renders")
                started = time.perf_counter()
                action()
                page.wait_for_function(f"() => window.__consoleMetrics.renders > {renders}")
                figures[f"{name} (wall)"].append((time.perf_counter() - started) * 1000)
                figures[f"{name} (page)"].append(page.evaluate("window.__consoleMetrics.filter"))
                return int(page.evaluate("window.__consoleMetrics.shown"))

            matching = timed(lambda: page.fill("#f-q", "probe-0012"), "text filter")
            if matching != sum(1 for index in range(probes) if "probe-0012" in f"probe-{index:06d}"):
                raise BenchError(f"the text filter shows {matching} rows")
            page.fill("#f-q", "")
            page.wait_for_function(f"() => window.__consoleMetrics.shown === {probes}")
            shown["down"] = timed(lambda: page.select_option("#f-status", "down"), "status filter")
            renders = page.evaluate("window.__consoleMetrics.renders")
            page.select_option("#f-status", "")
            page.wait_for_function(f"() => window.__consoleMetrics.renders > {renders}"
                                   f" && window.__consoleMetrics.shown === {probes}")
            figures["clear filters (page)"].append(page.evaluate("window.__consoleMetrics.filter"))
            longest.append(max(page.evaluate("window.__longtasks") or [0]))
        context.close()
    figures["longest main-thread task"] = longest
    print(f"status filter 'down': {shown['down']} rows", flush=True)
    return figures


def main() -> int:
    args = parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="console-bench-"))
    configure_environment(args.redis_db, tmp)
    import redis

    from tests.browser import Server

    client = redis.Redis(host=os.environ["ADMIN_MIT_REDIS__HOST"], port=int(os.environ["ADMIN_MIT_REDIS__PORT"]),
                         db=args.redis_db)
    client.flushdb()
    try:
        with database_url(args.database, tmp) as url:
            app = migrated_app(url)
            with app.app_context():
                from app.services.tenants import create_tenant

                tenant = create_tenant(f"bench-{uuid.uuid4().hex[:6]}")
                started = time.perf_counter()
                ids, username = seed(tenant.id, args.probes, args.beats)
                print(f"seeded {len(ids)} probes and {len(ids) * args.beats} cached runs "
                      f"in {time.perf_counter() - started:.1f} s ({args.database})", flush=True)
            server = Server({**os.environ, "ADMIN_MIT_DATABASE__URL": url}, tmp)
            try:
                figures = measure(server.url, username, len(ids), args.repeat)
            finally:
                server.stop()
    finally:
        client.flushdb()
    print(f"\nconsole overview, {args.probes} probes, {args.database}, Chromium headless, median of {args.repeat} "
          f"(min–max), ms")
    print(f"{'measure':<28} {'median':>8} {'min':>8} {'max':>8}")
    for name, values in figures.items():
        print(f"{name:<28} {statistics.median(values):>8.0f} {min(values):>8.0f} {max(values):>8.0f}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"console_overview: {exc}", file=sys.stderr)
        sys.exit(2)
