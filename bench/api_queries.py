#!/usr/bin/env python
"""REST API latency on a large tenant: what one API client feels, on PostgreSQL and SQLite.

Run it from the project root:

    .venv/bin/python bench/api_queries.py
    .venv/bin/python bench/api_queries.py --database postgres --probes 10000 --results 500000
    .venv/bin/python bench/api_queries.py --help

For each database it migrates a fresh one (a scratch PostgreSQL database on the server of
``ADMIN_MIT_TEST_POSTGRES_URL``, dropped at the end, or a temporary SQLite file), bulk-loads
one tenant with ``--probes`` probes and ``--results`` results over the last 7 days (one "hot"
probe holds ``--hot-results`` of them), fills the Redis status cache (database ``--redis-db``,
flushed at start and at the end), logs in as a tenant admin through the API and times the
read requests a dashboard makes through Flask's test client: median, p95 and requests/s for
one client, plus the SQL statements each request runs. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
import random
import re
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench_env import REDIS_SERVER, BenchError, scratch_postgres  # bench/ is on sys.path when run as a script

API = "/api/v1"
PASSWORD = "bench-password-0123"
WEEK = timedelta(days=7)
DAY = timedelta(hours=24)
CHUNK = 5000  # rows per insert() call
WARMUP = 3  # untimed requests before each measurement (plan and statement caches)
PAGE_SIZE = 50
DEEP_PAGE = 80
STATUS_IDS = 100
RESULTS_LIMIT = 100
CURSOR_PAGES = 20  # pages followed through next_cursor after the first
# Latest-status mix of the generated results: (status, weight).
STATUS_MIX = (("success", 0.93), ("failed", 0.05), ("timeout", 0.015), ("error", 0.005))


# --- options ---------------------------------------------------------------------------------

def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time the REST API's read requests on one large tenant, on PostgreSQL and SQLite.")
    parser.add_argument("--probes", type=int, default=5000, help="probes in the tenant (default: %(default)s)")
    parser.add_argument("--results", type=int, default=200_000,
                        help="results over the last 7 days, all probes together (default: %(default)s)")
    parser.add_argument("--hot-results", type=int, default=50_000,
                        help="of those, results of the one hot probe (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=100,
                        help="timed requests per row; login and cursor walks use repeat/5 "
                             "(default: %(default)s)")
    parser.add_argument("--database", choices=("postgres", "sqlite", "both"), default="both",
                        help="where the tenant lives (default: %(default)s)")
    parser.add_argument("--redis-db", type=int, default=11,
                        help="Redis database for the status cache, flushed at start (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.probes < 2:
        parser.error("--probes must be at least 2 (one hot probe and the others)")
    if not 0 < args.hot_results < args.results or args.results - args.hot_results < args.probes - 1:
        parser.error("need 0 < --hot-results < --results, and at least one result for every other probe")
    if args.repeat < 5:
        parser.error("--repeat must be at least 5")
    if not 0 <= args.redis_db <= 15:
        parser.error("--redis-db must be 0..15")
    return args


# --- environment and databases ---------------------------------------------------------------

def configure_environment(redis_db: int, tmp: Path) -> None:
    """Point the application at the benchmark's Redis and instance directory (before it is imported)."""
    host, _, port = REDIS_SERVER.rpartition(":")
    os.environ.update({
        "ADMIN_MIT_REDIS__EMBEDDED": "false",
        "ADMIN_MIT_REDIS__HOST": host,
        "ADMIN_MIT_REDIS__PORT": port,
        "ADMIN_MIT_REDIS__DB": str(redis_db),
        "ADMIN_MIT_APP__INSTANCE_PATH": str(tmp),
        "ADMIN_MIT_APP__LOG_LEVEL": "WARNING",
        "ADMIN_MIT_DATABASE__URL": f"sqlite:///{tmp / 'unused.db'}",
    })


@contextlib.contextmanager
def database_url(kind: str, tmp: Path) -> Iterator[str]:
    """A fresh, empty database of ``kind`` that lives only for the run."""
    if kind == "sqlite":
        path = tmp / "api-bench.db"
        try:
            yield f"sqlite:///{path}"
        finally:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    with scratch_postgres() as url:
        yield url


def migrated_app(url: str) -> Any:
    """``create_app(settings)`` for ``url``, with ``flask_migrate.upgrade()`` run in its context."""
    from flask_migrate import upgrade

    from app import create_app
    from app.core.config import load_settings

    app = create_app(load_settings(environ={**os.environ, "ADMIN_MIT_DATABASE__URL": url}))
    with app.app_context():
        upgrade()
    return app


# --- data ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Tenant:
    id: int
    probe_ids: list[int]
    hot_id: int
    typical_id: int
    username: str


def probe_row(tenant_id: int, index: int, now: datetime) -> dict[str, Any]:
    return {
        "tenant_id": tenant_id, "name": f"probe-{index:06d}", "protocol": "http",
        "target": f"http://127.{index // 65536 % 256}.{index // 256 % 256}.{index % 256}/health",
        "spec": {"method": "GET", "headers": {}, "secret_headers": [], "body": None, "expect": None,
                 "verify_tls": True, "follow_redirects": True},
        "timeout_seconds": 5.0, "interval_seconds": 60, "enabled": True,
        "auto_probe": True, "conditions": {}, "group_id": None,
        "next_run_at": int(now.timestamp() * 1000) + index % 60 * 1000, "missed_runs": 0,
        "created_at": now - WEEK - DAY, "updated_at": now - WEEK - DAY,
    }


def insert_chunked(table: Any, rows: Iterator[dict[str, Any]]) -> int:
    """Insert rows with SQLAlchemy Core, ``CHUNK`` at a time, one transaction per chunk."""
    from sqlalchemy import insert

    from app.extensions import db

    count, chunk = 0, []
    for row in rows:
        chunk.append(row)
        if len(chunk) == CHUNK:
            count += _insert(db, insert(table), chunk)
            chunk = []
    if chunk:
        count += _insert(db, insert(table), chunk)
    return count


def _insert(db: Any, statement: Any, chunk: list[dict[str, Any]]) -> int:
    with db.engine.begin() as conn:
        conn.execute(statement, chunk)
    return len(chunk)


def insert_probes(tenant_id: int, count: int, now: datetime) -> list[int]:
    from sqlalchemy import select

    from app.extensions import db
    from app.models import Probe

    insert_chunked(Probe.__table__, (probe_row(tenant_id, index, now) for index in range(count)))
    return list(db.session.scalars(select(Probe.id).where(Probe.tenant_id == tenant_id).order_by(Probe.id)))


def result_times(probe_ids: list[int], hot_id: int, total: int, hot: int, now: datetime,
                 rng: random.Random) -> list[tuple[float, int]]:
    """(epoch seconds, probe id) of every result, oldest first: each probe's results evenly
    spaced over the last 7 days with a random phase, the hot probe holding ``hot`` of them."""
    others = [pid for pid in probe_ids if pid != hot_id]
    base, extra = divmod(total - hot, len(others))
    counts = {pid: base + (index < extra) for index, pid in enumerate(others)}
    counts[hot_id] = hot
    start = (now - WEEK).timestamp()
    times = []
    for pid, count in counts.items():
        spacing = WEEK.total_seconds() / count
        phase = rng.uniform(0, spacing)
        times += [(start + phase + index * spacing, pid) for index in range(count)]
    times.sort()
    return times


def result_row(tenant_id: int, probe_id: int, epoch: float, rng: random.Random) -> dict[str, Any]:
    """One plausible stored HTTP result at ``epoch``."""
    created = datetime.fromtimestamp(epoch, UTC)
    status = rng.choices([name for name, _ in STATUS_MIX], [weight for _, weight in STATUS_MIX])[0]
    response = round(rng.lognormvariate(math.log(80), 0.6), 3) if status in ("success", "failed") else None
    parts = ({"dns_ms": round(response * 0.1, 3), "connect_ms": round(response * 0.2, 3), "tls_ms": None,
              "processing_ms": round(response * 0.6, 3), "transfer_ms": round(response * 0.1, 3)}
             if response is not None else dict.fromkeys(("dns_ms", "connect_ms", "tls_ms", "processing_ms",
                                                           "transfer_ms")))
    errors = {"success": None, "failed": "expected status 200, got 503", "timeout": "timed out after 5.0 s",
              "error": "connection refused"}
    return {
        "tenant_id": tenant_id, "probe_id": probe_id, "run_key": f"auto:{int(epoch * 1000)}",
        "probe_type": "auto", "status": status, "response_time_ms": response,
        "status_code": {"success": 200, "failed": 503}.get(status), "error": errors[status],
        **parts, "cert_expires_at": None, "bytes_read": 512 if response is not None else 0,
        "scheduled_for": created - timedelta(milliseconds=300),
        "started_at": created - timedelta(milliseconds=(response or 5000) + 50), "created_at": created,
    }


def insert_results(tenant_id: int, times: list[tuple[float, int]], rng: random.Random) -> int:
    from app.models import ProbeResult

    return insert_chunked(ProbeResult.__table__,
                          (result_row(tenant_id, pid, epoch, rng) for epoch, pid in times))


def fill_status_cache(tenant_id: int) -> int:
    """Store every probe's newest result in the Redis status cache, as the workers do."""
    from sqlalchemy import func, select

    from app.extensions import db
    from app.models import ProbeResult
    from app.services import status_cache

    table = ProbeResult.__table__
    newest = select(func.max(table.c.id)).where(table.c.tenant_id == tenant_id).group_by(table.c.probe_id)
    rows = list(db.session.execute(select(table).where(table.c.id.in_(newest))).mappings())
    status_cache.store(tenant_id, rows)
    return len(rows)


def analyze_tables() -> None:
    """Give PostgreSQL's planner statistics, as autovacuum would shortly after a load.
    SQLite is left as the application leaves it (it never runs ANALYZE)."""
    from sqlalchemy import text

    from app.extensions import db

    if db.engine.dialect.name == "postgresql":
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE probes, probe_results"))


def create_admin(tenant_id: int) -> str:
    from app.services import users

    username = f"bench-admin-{uuid.uuid4().hex[:6]}"
    users.grant(tenant_id, users.create_user(username, PASSWORD), "admin")  # grant commits
    return username


def load_tenant(app: Any, args: argparse.Namespace) -> Tenant:
    from app.services.tenants import create_tenant

    rng = random.Random(20240601)
    now = datetime.now(UTC)
    with app.app_context():
        tenant_id = create_tenant(f"bench-{uuid.uuid4().hex[:8]}").id
        began = time.monotonic()
        probe_ids = insert_probes(tenant_id, args.probes, now)
        hot_id, typical_id = probe_ids[0], probe_ids[len(probe_ids) // 2]
        times = result_times(probe_ids, hot_id, args.results, args.hot_results, now, rng)
        stored = insert_results(tenant_id, times, rng)
        loaded = time.monotonic() - began
        analyze_tables()
        cached = fill_status_cache(tenant_id)
        username = create_admin(tenant_id)
    log(f"  loaded {len(probe_ids):,} probes and {stored:,} results in {loaded:.1f} s; "
        f"{cached:,} statuses cached")
    return Tenant(tenant_id, probe_ids, hot_id, typical_id, username)


# --- measuring -------------------------------------------------------------------------------

@dataclass
class StatementLog:
    """SQL statements the app's engine runs (a ``before_cursor_execute`` listener)."""

    count: int = 0
    recent: list[tuple[str, Any]] = field(default_factory=list)

    def __call__(self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any,
                 executemany: bool) -> None:
        self.count += 1
        self.recent.append((statement, parameters))
        del self.recent[:-20]


@dataclass
class Measurement:
    label: str
    samples_ms: list[float]
    statements: float  # SQL statements per request
    note: str = ""

    def percentile(self, fraction: float) -> float:
        """Nearest rank."""
        ordered = sorted(self.samples_ms)
        return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]

    @property
    def per_second(self) -> float:
        return 1000 / statistics.fmean(self.samples_ms)


@dataclass
class Client:
    """Flask's test client with a bearer token. Requests run outside any app context, so each
    gets its own app context and database session, as in a server process."""

    http: Any
    statements: StatementLog
    token: str = ""

    def login(self, username: str, tenant_id: int) -> float:
        began = time.perf_counter()
        response = self.http.post(f"{API}/auth/login",
                                  json={"username": username, "password": PASSWORD, "tenant_id": tenant_id})
        elapsed = (time.perf_counter() - began) * 1000
        self.token = self._json(response, "POST /auth/login")["access_token"]
        return elapsed

    def get(self, path: str, query: dict[str, Any] | None = None) -> tuple[float, dict[str, Any]]:
        """Milliseconds the request took, and its JSON body (parsed after the clock stops)."""
        headers = {"Authorization": f"Bearer {self.token}"}
        began = time.perf_counter()
        response = self.http.get(f"{API}{path}", query_string=query, headers=headers)
        elapsed = (time.perf_counter() - began) * 1000
        return elapsed, self._json(response, f"GET {path}")

    @staticmethod
    def _json(response: Any, what: str) -> dict[str, Any]:
        if response.status_code != 200:
            raise BenchError(f"{what} answered {response.status_code}: {response.get_data(as_text=True)[:300]}")
        return response.get_json()  # type: ignore[no-any-return]


def repeated(client: Client, label: str, call: Callable[[], float], repeat: int, note: str = "") -> Measurement:
    """``call`` (returning its milliseconds) ``WARMUP`` times untimed, then ``repeat`` times."""
    for _ in range(WARMUP):
        call()
    before = client.statements.count
    samples = [call() for _ in range(repeat)]
    return Measurement(label, samples, (client.statements.count - before) / repeat, note)


def timed_get(client: Client, label: str, path: str, query: dict[str, Any] | None, repeat: int,
              note: str = "") -> Measurement:
    return repeated(client, label, lambda: client.get(path, query)[0], repeat, note)


def cursor_walk(client: Client, probe_id: int, walks: int) -> tuple[Measurement, Measurement, Measurement]:
    """Page 1 of a probe's results, then ``CURSOR_PAGES`` pages through ``next_cursor``."""
    path = f"/probes/{probe_id}/results"
    first: list[float] = []
    following: list[float] = []
    last: list[float] = []
    statements = 0
    for walk in range(walks + 1):  # walk 0 warms up
        before = client.statements.count
        elapsed, page = client.get(path, {"limit": RESULTS_LIMIT})
        times = [elapsed]
        for _ in range(CURSOR_PAGES):
            if page["next_cursor"] is None:
                raise BenchError(f"probe {probe_id} ran out of results; raise --hot-results")
            elapsed, page = client.get(path, {"limit": RESULTS_LIMIT, "cursor": page["next_cursor"]})
            times.append(elapsed)
        if walk:
            first.append(times[0])
            following += times[1:]
            last.append(times[-1])
            statements += client.statements.count - before
    per_request = statements / (walks * (CURSOR_PAGES + 1))
    deep = CURSOR_PAGES * RESULTS_LIMIT
    return (
        Measurement(f"`GET /probes/{{hot}}/results?limit={RESULTS_LIMIT}` page 1", first, per_request),
        Measurement(f"… pages 2–{CURSOR_PAGES + 1} through `next_cursor` (each)", following, per_request),
        Measurement(f"… page {CURSOR_PAGES + 1} only (rows {deep + 1:,}–{deep + RESULTS_LIMIT:,})", last,
                    per_request),
    )


def argon2_alone(username: str, repeat: int) -> Measurement:
    """The password check login does, without HTTP or database."""
    from sqlalchemy import select

    from app.extensions import db
    from app.models import User
    from app.services.passwords import verify_password

    stored = db.session.scalar(select(User.password_hash).where(User.username == username))
    samples = []
    for _ in range(repeat):
        began = time.perf_counter()
        verify_password(stored, PASSWORD)
        samples.append((time.perf_counter() - began) * 1000)
    return Measurement("Argon2id `verify_password` alone (no HTTP, no SQL)", samples, 0)


def iso(moment: datetime) -> str:
    return moment.isoformat()


def measure_requests(app: Any, tenant: Tenant, repeat: int, statements: StatementLog) -> list[Measurement]:
    client = Client(app.test_client(), statements)
    few = max(5, repeat // 5)
    n = len(tenant.probe_ids)
    deep_page = min(DEEP_PAGE, math.ceil(n / PAGE_SIZE))
    status_ids = tenant.probe_ids[:: max(1, n // STATUS_IDS)][:STATUS_IDS]
    now = datetime.now(UTC)
    hot, typical = tenant.hot_id, tenant.typical_id

    login = repeated(client, "`POST /auth/login`", lambda: client.login(tenant.username, tenant.id), few,
                     "Argon2id verify, one session row")
    failed_total = client.get("/probes", {"status": "failed", "per_page": PAGE_SIZE})[1]["meta"]["total"]
    hot_day = client.get(f"/probes/{hot}/stats")[1]["count"]
    hot_week = client.get(f"/probes/{hot}/stats", {"since": iso(now - WEEK)})[1]["count"]
    typical_week = client.get(f"/probes/{typical}/stats", {"since": iso(now - WEEK)})[1]["count"]
    with app.app_context():
        argon2 = argon2_alone(tenant.username, few)

    rows = [
        login,
        argon2,
        timed_get(client, "`GET /probes/{id}` (single read)", f"/probes/{typical}", None, repeat,
                  "token + session lookup, one row, one cache read"),
        timed_get(client, f"`GET /probes?per_page={PAGE_SIZE}` (page 1)", "/probes", {"per_page": PAGE_SIZE},
                  repeat, f"count over {n:,} probes"),
        timed_get(client, f"`GET /probes?page={deep_page}&per_page={PAGE_SIZE}`", "/probes",
                  {"page": deep_page, "per_page": PAGE_SIZE}, repeat, f"OFFSET {(deep_page - 1) * PAGE_SIZE:,}"),
        timed_get(client, f"`GET /probes?status=failed&per_page={PAGE_SIZE}`", "/probes",
                  {"status": "failed", "per_page": PAGE_SIZE}, repeat,
                  f"{failed_total:,} of {n:,} probes match"),
        timed_get(client, f"`GET /probes/status?ids=…` ({len(status_ids)} ids)", "/probes/status",
                  {"ids": status_ids}, repeat),
        *cursor_walk(client, hot, few),
        timed_get(client, "`GET /probes/{hot}/stats` (24 h)", f"/probes/{hot}/stats", None, repeat,
                  f"{hot_day:,} results in window"),
        timed_get(client, "`GET /probes/{hot}/stats?since=` (7 d)", f"/probes/{hot}/stats",
                  {"since": iso(now - WEEK)}, repeat, f"{hot_week:,} results in window"),
        timed_get(client, f"`GET /probes/{{typical}}/results?limit={RESULTS_LIMIT}` page 1",
                  f"/probes/{typical}/results", {"limit": RESULTS_LIMIT}, repeat,
                  f"a probe with {typical_week:,} results"),
        timed_get(client, "`GET /probes/{typical}/stats?since=` (7 d)", f"/probes/{typical}/stats",
                  {"since": iso(now - WEEK)}, repeat, f"{typical_week:,} results in window"),
    ]
    return rows


# --- the percentile statement's plan (PostgreSQL) --------------------------------------------

def explain_percentiles(app: Any, tenant: Tenant, statements: StatementLog) -> str | None:
    """EXPLAIN (ANALYZE, BUFFERS) of the percentile statement of the hot probe's 7-day stats,
    captured from a real request. Returns a one-line summary; the plan goes to stderr."""
    from app.extensions import db

    with app.app_context():
        if db.engine.dialect.name != "postgresql":
            return None
    since = iso(datetime.now(UTC) - WEEK)
    client = Client(app.test_client(), statements)
    client.login(tenant.username, tenant.id)
    statements.recent.clear()
    client.get(f"/probes/{tenant.hot_id}/stats", {"since": since})
    found = [(sql, params) for sql, params in statements.recent if "row_number()" in sql.lower()]
    if not found:
        return None
    sql, params = found[-1]
    with app.app_context(), db.engine.connect() as conn:
        plan = [row[0] for row in conn.exec_driver_sql(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", params)]
    log("  EXPLAIN (ANALYZE, BUFFERS) of the percentile statement (hot probe, 7 d):")
    for line in plan:
        log(f"    {line}")
    text = "\n".join(plan)
    execution = re.search(r"Execution Time: ([\d.]+) ms", text)
    planning = re.search(r"Planning Time: ([\d.]+) ms", text)
    buffers = re.search(r"Buffers: (shared [^\n]*)", text)
    sort = re.search(r"Sort Method: ([^\n]*)", text)
    parts = [f"execution {execution.group(1)} ms" if execution else "",
             f"planning {planning.group(1)} ms" if planning else "",
             f"sort: {sort.group(1).strip()}" if sort else "",
             f"buffers: {buffers.group(1).strip()}" if buffers else ""]
    return "; ".join(part for part in parts if part)


# --- one database ----------------------------------------------------------------------------

@dataclass
class Run:
    kind: str
    version: str
    measurements: list[Measurement]
    explain: str | None
    load_before: float


def server_version(app: Any) -> str:
    from sqlalchemy import text

    from app.extensions import db

    with app.app_context():
        if db.engine.dialect.name == "postgresql":
            return "PostgreSQL " + str(db.session.scalar(text("SHOW server_version")))
        import sqlite3

        return f"SQLite {sqlite3.sqlite_version}"


def flush_redis() -> None:
    from app.core.redis_client import get_redis

    get_redis().flushdb()


def run_database(kind: str, args: argparse.Namespace, tmp: Path) -> Run:
    from sqlalchemy import event

    from app.extensions import db

    log(f"{kind}:")
    with database_url(kind, tmp) as url:
        app = migrated_app(url)
        try:
            with app.app_context():
                flush_redis()
                engine = db.engine
            tenant = load_tenant(app, args)
            statements = StatementLog()
            event.listen(engine, "before_cursor_execute", statements)
            load_before = os.getloadavg()[0]
            began = time.monotonic()
            measurements = measure_requests(app, tenant, args.repeat, statements)
            log(f"  measured in {time.monotonic() - began:.0f} s")
            explain = explain_percentiles(app, tenant, statements)
            return Run(kind, server_version(app), measurements, explain, load_before)
        finally:
            with app.app_context():
                flush_redis()
                db.session.remove()
                db.engine.dispose()


# --- report ----------------------------------------------------------------------------------

def machine_facts(runs: list[Run]) -> str:
    from importlib.metadata import version

    from app.core.redis_client import get_redis

    redis_version = "?"
    with contextlib.suppress(Exception):
        redis_version = get_redis().info("server")["redis_version"]
    facts = [
        f"CPU count: {os.cpu_count()}",
        f"Python {platform.python_version()} ({platform.machine()}, {platform.system()})",
        (f"SQLAlchemy {version('sqlalchemy')}, Flask {version('flask')}, psycopg {version('psycopg')}, "
         f"redis-py {version('redis')}, argon2-cffi {version('argon2-cffi')}"),
        f"Redis {redis_version}",
        *(f"{run.kind}: {run.version}, load average before measuring {run.load_before:.2f}" for run in runs),
    ]
    return "\n".join(f"- {fact}" for fact in facts)


def table(run: Run) -> str:
    lines = [
        "| request | median ms | p95 ms | req/s (1 client) | SQL stmts/req | n | notes |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for m in run.measurements:
        lines.append(f"| {m.label} | {m.percentile(.5):,.1f} | {m.percentile(.95):,.1f} | {m.per_second:,.0f} "
                     f"| {m.statements:g} | {len(m.samples_ms)} | {m.note} |")
    if run.explain:
        lines.append("")
        lines.append(f"Percentile statement, hot probe, 7 d — `EXPLAIN (ANALYZE, BUFFERS)`: {run.explain}.")
    return "\n".join(lines)


def report(args: argparse.Namespace, runs: list[Run]) -> str:
    parts = [
        (f"Tenant: {args.probes:,} probes, {args.results:,} results over 7 days "
         f"(hot probe: {args.hot_results:,}); {args.repeat} requests per row "
         f"(login, Argon2 and cursor walks: {max(5, args.repeat // 5)}), after {WARMUP} untimed."),
        "",
        machine_facts(runs),
    ]
    for run in runs:
        parts += ["", f"### {run.version}", "", table(run)]
    return "\n".join(parts)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- main ------------------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the scratch database and the temporary directory go too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    kinds = ("postgres", "sqlite") if args.database == "both" else (args.database,)
    with tempfile.TemporaryDirectory(prefix="admin-mit-api-bench-") as tmp:
        configure_environment(args.redis_db, Path(tmp))
        try:
            runs = [run_database(kind, args, Path(tmp)) for kind in kinds]
        except BenchError as exc:
            log(f"bench: {exc}")
            return 2
        print(report(args, runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
