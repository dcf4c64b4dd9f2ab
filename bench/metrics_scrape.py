#!/usr/bin/env python
"""``GET /metrics`` scrape time with 10,000 probes whose latest results are in the status cache.

Run it from the project root:

    .venv/bin/python bench/metrics_scrape.py
    .venv/bin/python bench/metrics_scrape.py --probes 10000 --repeat 30 --database postgres

It migrates a scratch database (PostgreSQL on the server of ``ADMIN_MIT_TEST_POSTGRES_URL``,
dropped at the end, or a temporary SQLite file), bulk-loads one tenant with ``--probes`` HTTPS
probes (a tenth of them in groups) and one result each (phases, status code, certificate
expiry; 5 % failing), fills the Redis status cache (database ``--redis-db``, flushed at start
and at the end) and times scrapes with a tenant's API token through Flask's test client and
through a real HTTP server on 127.0.0.1 (werkzeug's, in a thread), and with the scrape
credential (``metrics.token``: every tenant plus the queues) over HTTP; over HTTP each without
and with ``Accept-Encoding: gzip`` (Prometheus sends it). Prints median and p95, the SQL
statements per scrape, the bytes sent and the size of the text, the number of samples, how long
prometheus-client's ``generate_latest`` takes to render the same samples, and what gzip's
levels 1, 6 and 9 make of the body (the API uses ``app.api.metrics.GZIP_LEVEL``).
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import logging
import math
import os
import random
import secrets
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from api_queries import (StatementLog, analyze_tables, configure_environment, create_admin,  # bench/ on sys.path
                         database_url, insert_chunked, insert_probes, migrated_app)
from bench_env import BenchError

WARMUP = 3


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Time GET /metrics with many probes in the status cache.")
    parser.add_argument("--probes", type=int, default=10_000, help="probes in the tenant (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=20, help="timed scrapes per row (default: %(default)s)")
    parser.add_argument("--database", choices=("postgres", "sqlite", "both"), default="postgres",
                        help="where the tenant lives (default: %(default)s)")
    parser.add_argument("--redis-db", type=int, default=11,
                        help="Redis database for the status cache, flushed at start (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.probes < 1 or args.repeat < 3 or not 0 <= args.redis_db <= 15:
        parser.error("need --probes >= 1, --repeat >= 3 and --redis-db 0..15")
    return args


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def load(app: Any, probes: int) -> tuple[int, str]:
    """One tenant with ``probes`` probes and one cached result each; returns (tenant id, API token)."""
    from sqlalchemy import select, update

    from app.extensions import db
    from app.models import Probe, ProbeGroup, ProbeResult
    from app.services import api_tokens, status_cache
    from app.services.auth import Principal
    from app.services.tenants import create_tenant

    rng = random.Random(20240601)
    now = datetime.now(UTC)
    with app.app_context():
        tenant_id = create_tenant("bench-metrics").id
        probe_ids = insert_probes(tenant_id, probes, now)
        db.session.execute(update(Probe).where(Probe.tenant_id == tenant_id).values(protocol="https"))
        groups = [ProbeGroup(tenant_id=tenant_id, name=f"group-{index}") for index in range(10)]
        db.session.add_all(groups)
        db.session.flush()
        for index, group in enumerate(groups):  # a tenth of the probes in groups
            db.session.execute(update(Probe).where(Probe.id.in_(probe_ids[index::100])).values(group_id=group.id))
        db.session.commit()
        expiry = now + timedelta(days=40)

        def rows() -> Any:
            for probe_id in probe_ids:
                ok = rng.random() >= 0.05
                total = round(rng.lognormvariate(math.log(80), 0.6), 3)
                yield {"tenant_id": tenant_id, "probe_id": probe_id, "run_key": f"auto:{int(now.timestamp() * 1000)}",
                       "probe_type": "auto", "status": "success" if ok else "failed", "response_time_ms": total,
                       "status_code": 200 if ok else 503, "error": None if ok else "expected status 200, got 503",
                       "dns_ms": round(total * 0.05, 3), "connect_ms": round(total * 0.1, 3),
                       "tls_ms": round(total * 0.25, 3), "processing_ms": round(total * 0.5, 3),
                       "transfer_ms": round(total * 0.1, 3), "cert_expires_at": expiry, "bytes_read": 512,
                       "scheduled_for": now, "started_at": now, "created_at": now}

        insert_chunked(ProbeResult.__table__, rows())
        analyze_tables()
        stored = [dict(row) for row in db.session.execute(
            select(ProbeResult.__table__).where(ProbeResult.tenant_id == tenant_id)).mappings()]
        for first in range(0, len(stored), 1000):
            status_cache.store(tenant_id, stored[first:first + 1000])
        username = create_admin(tenant_id)
        from app.models import User

        user = db.session.scalar(select(User).where(User.username == username))
        _, secret = api_tokens.create_token(Principal(user.id, username, tenant_id, "admin", False), "prometheus",
                                            role="viewer")
    return tenant_id, secret


def timed(call: Callable[[], bytes], repeat: int) -> tuple[list[float], bytes]:
    for _ in range(WARMUP):
        body = call()
    samples = []
    for _ in range(repeat):
        began = time.perf_counter()
        body = call()
        samples.append((time.perf_counter() - began) * 1000)
    return samples, body


def test_client_scrape(app: Any, token: str) -> Callable[[], bytes]:
    client = app.test_client()

    def call() -> bytes:
        response = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
        if response.status_code != 200:
            raise BenchError(f"/metrics answered {response.status_code}: {response.get_data(as_text=True)[:200]}")
        return response.get_data()

    return call


def http_scrape(port: int, token: str, encoding: str) -> Callable[[], bytes]:
    """A scrape over HTTP asking for ``encoding``; returns the bytes as sent (gzip-compressed or not)."""
    def call() -> bytes:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request("GET", "/metrics", headers={"Authorization": f"Bearer {token}",
                                                       "Accept-Encoding": encoding})
        response = connection.getresponse()
        body = response.read()
        connection.close()
        if response.status != 200:
            raise BenchError(f"/metrics over HTTP answered {response.status}")
        if (response.getheader("Content-Encoding") == "gzip") != (encoding == "gzip"):
            raise BenchError(f"asked for {encoding}, got Content-Encoding {response.getheader('Content-Encoding')}")
        return body

    return call


def text_of(body: bytes) -> bytes:
    return gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body


def gzip_levels(body: bytes) -> list[str]:
    """Size and time (median of 3) of gzip at levels 1, 6 and 9 on the text ``body``."""
    rows = []
    for level in (1, 6, 9):
        times = []
        for _ in range(3):
            began = time.perf_counter()
            packed = gzip.compress(body, compresslevel=level, mtime=0)
            times.append((time.perf_counter() - began) * 1000)
        rows.append(f"| gzip level {level} | {statistics.median(times):.0f} | {len(packed) / 1e6:.2f} MB | "
                    f"{len(body) / len(packed):.0f}× |")
    return rows


def generate_latest_ms(body: bytes) -> float:
    """What rendering the same samples with prometheus-client's ``generate_latest`` takes (median of 3)."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families
    from prometheus_client.registry import Collector

    families = list(text_string_to_metric_families(body.decode()))

    class Replay(Collector):
        def collect(self) -> Any:
            return iter(families)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Replay())
    samples = []
    for _ in range(3):
        began = time.perf_counter()
        generate_latest(registry)
        samples.append((time.perf_counter() - began) * 1000)
    return statistics.median(samples)


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def run_database(kind: str, args: argparse.Namespace, tmp: Path) -> tuple[list[str], bytes]:
    from sqlalchemy import event
    from werkzeug.serving import make_server

    from app.core.redis_client import get_redis
    from app.extensions import db

    with database_url(kind, tmp) as url:
        app = migrated_app(url)
        with app.app_context():
            get_redis().flushdb()
        began = time.monotonic()
        _, token = load(app, args.probes)
        credential = os.environ["ADMIN_MIT_METRICS__TOKEN"]
        log(f"{kind}: loaded {args.probes:,} probes with cached results in {time.monotonic() - began:.1f} s")
        statements = StatementLog()
        with app.app_context():
            event.listen(db.engine, "before_cursor_execute", statements)
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no access log line per scrape
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        lines = []
        try:
            port = server.server_port
            for label, call in (("API token, Flask test client", test_client_scrape(app, token)),
                                ("API token, HTTP", http_scrape(port, token, "identity")),
                                ("API token, HTTP, gzip", http_scrape(port, token, "gzip")),
                                ("scrape credential, HTTP", http_scrape(port, credential, "identity")),
                                ("scrape credential, HTTP, gzip", http_scrape(port, credential, "gzip"))):
                before = statements.count
                samples, body = timed(call, args.repeat)
                per_scrape = (statements.count - before) / (args.repeat + WARMUP)
                text = text_of(body)
                count = sum(1 for line in text.splitlines() if line and not line.startswith(b"#"))
                lines.append(f"| {kind} | {label} | {statistics.median(samples):.0f} | "
                             f"{percentile(samples, 0.95):.0f} | {per_scrape:.0f} | {len(body) / 1e6:.2f} MB | "
                             f"{len(text) / 1e6:.1f} MB | {count:,} |")
                log(lines[-1])
            lines.append(f"| {kind} | the same text through prometheus-client's generate_latest (render only) | "
                         f"{generate_latest_ms(text):.0f} | | | | | |")
            log(lines[-1])
        finally:
            server.shutdown()
            with app.app_context():
                get_redis().flushdb()
                db.session.remove()
                db.engine.dispose()
    return lines, text


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    kinds = ("postgres", "sqlite") if args.database == "both" else (args.database,)
    with tempfile.TemporaryDirectory(prefix="admin-mit-metrics-bench-") as tmp:
        configure_environment(args.redis_db, Path(tmp))
        os.environ["ADMIN_MIT_METRICS__TOKEN"] = secrets.token_hex(32)
        rows: list[str] = []
        try:
            for kind in kinds:
                found, text = run_database(kind, args, Path(tmp))
                rows.extend(found)
        except BenchError as exc:
            log(f"bench: {exc}")
            return 2
    print(f"{args.probes:,} probes, {args.repeat} scrapes per row after {WARMUP} untimed\n")
    print("| database | scrape | median ms | p95 ms | SQL statements | bytes sent | text | samples |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))
    print(f"\ngzip of the last text ({len(text) / 1e6:.1f} MB), the API's level: {gzip_level()}\n")
    print("| level | ms | size | ratio |")
    print("|---|---:|---:|---:|")
    print("\n".join(gzip_levels(text)))
    return 0


def gzip_level() -> int:
    from app import create_app

    return create_app().config["COMPRESS_LEVEL"]


if __name__ == "__main__":
    sys.exit(main())
