#!/usr/bin/env python
"""The console's overview and changes feed on a large tenant, on PostgreSQL.

    .venv/bin/python bench/console_overview_api.py
    .venv/bin/python bench/console_overview_api.py --probes 10000 --runs 50 --repeat 10

Migrates a scratch PostgreSQL database (on the server of ``ADMIN_MIT_TEST_POSTGRES_URL``,
dropped at the end), loads one tenant with ``--probes`` probes in 20 groups and ``--runs``
results each, stored through the status cache and the rollups as a worker stores them
(``result_store.store``), analyzes the tables, then times through Flask's test client:

- ``GET /console/overview`` (warm: the uptime block cached; cold: its cache dropped),
  with 50 and with 10 beats per probe, and after a Redis FLUSHDB (rebuilt from the database);
- ``GET /console/overview/changes`` with nothing new, and after 100 probes got a result;
- the status cache write itself (``status_cache.store``) per result, in batches of 50.

Redis database ``--redis-db`` is flushed at start.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Callable

from bench_env import BenchError, point_app_at, scratch_postgres  # bench/ is on sys.path when run as a script

API = "/api/v1"
PASSWORD = "bench-password-0123"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probes", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=50, help="stored results per probe")
    parser.add_argument("--repeat", type=int, default=10, help="timed requests per row")
    parser.add_argument("--redis-db", type=int, default=11)
    return parser.parse_args()


def result_row(tenant_id: int, probe_id: int, at: datetime, n: int) -> dict[str, Any]:
    status = "failed" if (probe_id + n) % 17 == 0 else "success"
    return {"tenant_id": tenant_id, "probe_id": probe_id, "run_key": f"auto:{int(at.timestamp() * 1000)}",
            "probe_type": "auto", "status": status, "response_time_ms": 40.0 + (probe_id * 7 + n) % 90,
            "status_code": 200 if status == "success" else 503, "error": None if status == "success" else "503",
            "dns_ms": 1.0, "connect_ms": 2.0, "tls_ms": 3.0, "processing_ms": 30.0, "transfer_ms": 1.0,
            "cert_expires_at": at + timedelta(days=40), "bytes_read": 100, "details": None,
            "scheduled_for": at, "started_at": at, "created_at": at}


def load(args: argparse.Namespace) -> tuple[int, list[int], str]:
    from sqlalchemy import insert, select, text

    from app.extensions import db
    from app.models import Probe, ProbeGroup
    from app.services import result_store, users
    from app.services.tenants import create_tenant

    tenant = create_tenant(f"bench-{uuid.uuid4().hex[:6]}")
    db.session.execute(insert(ProbeGroup), [{"tenant_id": tenant.id, "name": f"g{n}", "description": ""}
                                            for n in range(20)])
    groups = list(db.session.scalars(select(ProbeGroup.id).where(ProbeGroup.tenant_id == tenant.id)))
    db.session.execute(insert(Probe), [
        {"tenant_id": tenant.id, "name": f"probe-{n:05d}", "protocol": "http",
         "target": f"https://127.0.0.1:9/{n}", "interval_seconds": 60, "timeout_seconds": 5.0,
         "auto_probe": True, "enabled": True, "spec": {}, "conditions": {}, "group_id": groups[n % 20]}
        for n in range(args.probes)])
    db.session.commit()
    ids = list(db.session.scalars(select(Probe.id).where(Probe.tenant_id == tenant.id).order_by(Probe.id)))
    start = datetime.now(UTC) - timedelta(minutes=args.runs + 1)
    began = time.monotonic()
    for n in range(args.runs):
        at = start + timedelta(minutes=n)
        for first in range(0, len(ids), 500):
            result_store.store([result_store.MeasuredRun(row=result_row(tenant.id, pid, at, n))
                                for pid in ids[first:first + 500]])
    log(f"stored {len(ids) * args.runs:,} results in {time.monotonic() - began:.0f} s")
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE probes, probe_results"))  # as autovacuum would shortly after a load
    username = f"bench-{uuid.uuid4().hex[:6]}"
    users.grant(tenant.id, users.create_user(username, PASSWORD), "viewer")
    return tenant.id, ids, username


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def timed(call: Callable[[], Any], repeat: int, before: Callable[[], Any] | None = None) -> tuple[float, float]:
    samples = []
    for _ in range(repeat):
        if before is not None:
            before()
        began = time.perf_counter()
        call()
        samples.append((time.perf_counter() - began) * 1000)
    return statistics.median(samples), max(samples)


def measure(app: Any, args: argparse.Namespace) -> None:
    from app.core.redis_client import get_redis
    from app.services import overview, status_cache
    from app.services.result_store import MeasuredRun, store

    with app.app_context():
        tenant_id, ids, username = load(args)
    client = app.test_client()
    token = client.post(f"{API}/auth/login", json={"username": username, "password": PASSWORD,
                                                   "tenant_id": tenant_id}).json["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    sizes: dict[str, int] = {}

    def get(path: str, query: dict[str, Any] | None = None, label: str = "") -> Any:
        response = client.get(f"{API}{path}", query_string=query, headers=headers)
        if response.status_code != 200:
            raise BenchError(f"GET {path} answered {response.status_code}: {response.get_data(as_text=True)[:200]}")
        if label:
            sizes[label] = len(response.get_data())
        return response

    def drop_uptime() -> None:
        get_redis().delete(overview.UPTIME_KEY.format(tenant_id))

    rows = []
    get("/console/overview")  # warm up
    rows.append(("`GET /console/overview` (50 beats, uptime cached)",
                 timed(lambda: get("/console/overview", label="o50"), args.repeat), "o50"))
    rows.append(("… uptime not cached (3 rollup queries)",
                 timed(lambda: get("/console/overview"), args.repeat, drop_uptime), "o50"))
    rows.append(("… `?beats=10`", timed(lambda: get("/console/overview", {"beats": 10}, "o10"), args.repeat), "o10"))
    rows.append(("… after Redis FLUSHDB (statuses and beats rebuilt from the database)",
                 timed(lambda: get("/console/overview"), 3, lambda: get_redis().flushdb()), "o50"))
    cursor = get("/console/overview").json["cursor"]
    rows.append(("`GET /console/overview/changes`, nothing new",
                 timed(lambda: get("/console/overview/changes", {"cursor": cursor}, "c0"), args.repeat), "c0"))
    with app.app_context():
        now = datetime.now(UTC)
        store([MeasuredRun(row=result_row(tenant_id, pid, now, 999)) for pid in ids[:100]])
    rows.append(("… 100 probes with a new result",
                 timed(lambda: get("/console/overview/changes", {"cursor": cursor}, "c100"), args.repeat), "c100"))

    with app.app_context():
        cpu = []
        now = datetime.now(UTC)
        batches = [[{**result_row(tenant_id, pid, now + timedelta(seconds=n), n), "id": n * 100000 + pid}
                    for pid in ids[first:first + 50]] for n, first in enumerate(range(0, min(len(ids), 5000), 50))]
        wall_began, cpu_began = time.perf_counter(), time.process_time()
        for batch in batches:
            status_cache.store(tenant_id, batch)
        wall, cpu_s = time.perf_counter() - wall_began, time.process_time() - cpu_began
        stored = sum(len(batch) for batch in batches)
        cpu.append((wall / stored * 1e6, cpu_s / stored * 1e6))

    print(f"| request ({len(ids):,} probes, {args.runs} results each, PostgreSQL) | median ms | max ms | body |")
    print("|---|---:|---:|---:|")
    for label, (median, worst), size in rows:
        print(f"| {label} | {median:.0f} | {worst:.0f} | {sizes.get(size, 0) / 1e6:.2f} MB |")
    print(f"| `status_cache.store`, batches of 50 (per result: wall / CPU) | {cpu[0][0]:.1f} µs | {cpu[0][1]:.1f} µs | |")


def main() -> int:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="admin-mit-console-") as tmp, scratch_postgres() as url:
        point_app_at(args.redis_db, tmp, url)
        from flask_migrate import upgrade

        from app import create_app
        from app.core.redis_client import get_redis

        app = create_app()
        with app.app_context():
            upgrade()
            get_redis().flushdb()
        measure(app, args)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"console_overview_api: {exc}", file=sys.stderr)
        sys.exit(2)
