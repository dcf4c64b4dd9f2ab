"""Long-range history on PostgreSQL: /stats and /chart over 90 days of rollups of a 10 s probe.

    .venv/bin/python bench/history_queries.py
    .venv/bin/python bench/history_queries.py --repeat 20 --interval 10

Migrates a scratch PostgreSQL database (on the server of ``ADMIN_MIT_TEST_POSTGRES_URL``,
dropped at the end), generates 90 days of results of one probe at ``--interval`` seconds in
SQL (``generate_series``), rolls them up with ``rollups.rebuild`` (what ``admin-mit rollups
rebuild`` runs), then deletes the results older than 30 days with ``cleanup_old_results(30)``
as the daily task does (259,200 raw results stay at 10 s). It times ``GET /stats`` and
``GET /chart`` through Flask's test client (median and p95 of ``--repeat`` calls after a
warm-up), and ``/stats`` over 30 days computed from the raw results only (the rollups
bypassed), for comparison. Per call it counts the SQL statements, the rows they returned,
and the table rows PostgreSQL read for them: one more call is recorded and each of its
SELECTs run again under ``EXPLAIN (ANALYZE, FORMAT JSON)``, summing the rows every scan node
produced or removed by a filter and the planning plus execution time (the session look-up
of the bearer token included; ``--explain`` prints them per statement). Prints the sizes
of the tables and a markdown table.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from bench_env import point_app_at, scratch_postgres  # bench/ is on sys.path when run as a script

API = "/api/v1"
PASSWORD = "bench-password-0123"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=int, default=10, help="seconds between results (default: %(default)s)")
    parser.add_argument("--days", type=int, default=90, help="days of history (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=20, help="timed calls per row (default: %(default)s)")
    parser.add_argument("--explain", action="store_true",
                        help="print each recorded SELECT's planning and execution time and rows read")
    parser.add_argument("--redis-db", type=int, default=6, help="Redis database (flushed) (default: %(default)s)")
    return parser.parse_args()


def nearest_rank(samples: list[float], percent: int) -> float:
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(percent * len(ordered) / 100) - 1)]


def main() -> int:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="admin-mit-history-") as tmp, scratch_postgres() as url:
        point_app_at(args.redis_db, tmp, url)
        from flask_migrate import upgrade

        from app import create_app

        flask_app = create_app()
        with flask_app.app_context():
            upgrade()
            probe_id, tenant_id = load(args)
        return measure(flask_app, args, probe_id, tenant_id)


def load(args: argparse.Namespace) -> tuple[int, int]:
    from sqlalchemy import text

    from app.extensions import db
    from app.services import retention, rollups, users
    from app.services.probes import create_probe
    from app.services.tenants import create_tenant

    tenant = create_tenant("history-bench")
    probe = create_probe(tenant.id, {"name": "hot", "protocol": "http", "target": "http://127.0.0.1:9/",
                                     "interval_seconds": args.interval, "auto_probe": False})
    users.grant(tenant.id, users.create_user("bench", PASSWORD), "viewer")
    now = datetime.now(UTC)
    began = time.perf_counter()
    # A log-normal response time around 40 ms (Box-Muller), 1 % failures, the five phases.
    db.session.execute(text("""
        INSERT INTO probe_results (tenant_id, probe_id, run_key, probe_type, status, response_time_ms, dns_ms,
                                   connect_ms, tls_ms, processing_ms, transfer_ms, bytes_read, started_at,
                                   created_at, in_maintenance)
        SELECT :tenant, :probe, 'auto:' || n, 'auto', CASE WHEN random() < 0.01 THEN 'failed' ELSE 'success' END,
               rt, rt * 0.1, rt * 0.15, rt * 0.25, rt * 0.4, rt * 0.1, 512, at, at, false
        FROM (SELECT n, CAST(:start AS timestamptz) + n * make_interval(secs => :interval) AS at,
                     exp(ln(40) + 0.4 * sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random())) AS rt
              FROM generate_series(0, :count - 1) AS n) generated
    """), {"tenant": tenant.id, "probe": probe.id, "start": now - timedelta(days=args.days),
           "interval": args.interval, "count": args.days * 86400 // args.interval})
    db.session.commit()
    loaded = time.perf_counter()
    rebuilt = rollups.rebuild(probe_id=probe.id)
    rolled = time.perf_counter()
    deleted = retention.cleanup_old_results(30)["deleted"]
    db.session.execute(text("ANALYZE"))
    db.session.commit()
    raw_left = db.session.execute(text("SELECT count(*) FROM probe_results")).scalar_one()
    levels = db.session.execute(text(
        "SELECT level, count(*), round(avg(coalesce(length(rt_sketch), 0))), "
        "round(avg((SELECT count(*) FROM json_object_keys(CAST(rt_sketch AS json))))) "
        "FROM probe_rollups GROUP BY level ORDER BY level")).all()
    sizes = db.session.execute(text(
        "SELECT pg_size_pretty(pg_total_relation_size('probe_rollups')), "
        "pg_size_pretty(pg_total_relation_size('probe_results'))")).one()
    print(f"loaded {rebuilt['results']} results in {loaded - began:.1f} s, rolled up in {rolled - loaded:.1f} s, "
          f"deleted {deleted} older than 30 days: {raw_left} raw results ({sizes[1]} with indexes); "
          f"probe_rollups {sizes[0]} with indexes:", file=sys.stderr)
    for level, rows, chars, bins in levels:
        print(f"  level {level} s: {rows} rows, sketch {chars} characters and {bins} bins on average",
              file=sys.stderr)
    return probe.id, tenant.id


def measure(flask_app: Any, args: argparse.Namespace, probe_id: int, tenant_id: int) -> int:
    from sqlalchemy import event

    from app.extensions import db
    from app.services import results

    http = flask_app.test_client()
    token = http.post(f"{API}/auth/login", json={"username": "bench", "password": PASSWORD,
                                                 "tenant_id": tenant_id}).get_json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    with flask_app.app_context():
        engine = db.engine
    statements = [0]
    returned = [0]
    recorded: list[tuple[str, Any]] | None = None

    def before(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        statements[0] += 1
        if recorded is not None and statement.lstrip().upper().startswith(("SELECT", "WITH")):
            recorded.append((statement, parameters))

    def after(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        returned[0] += max(cursor.rowcount, 0) if cursor.description is not None else 0

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)

    def rows_read(plan: dict[str, Any]) -> int:
        """Table rows a plan's scan nodes read: produced plus removed by a filter, times loops."""
        own = 0
        if "Scan" in plan["Node Type"] and "Relation Name" in plan:
            own = (plan.get("Actual Rows", 0) + plan.get("Rows Removed by Filter", 0)) * plan.get("Actual Loops", 1)
        return own + sum(rows_read(child) for child in plan.get("Plans", ()))

    def explained(label: str, calls: list[tuple[str, Any]]) -> tuple[int, float]:
        total, milliseconds = 0, 0.0
        with engine.connect() as conn:
            raw = conn.connection.dbapi_connection
            with raw.cursor() as cursor:
                for statement, parameters in calls:
                    cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + statement, parameters)
                    plan = cursor.fetchone()[0][0]
                    read, spent = rows_read(plan["Plan"]), plan["Planning Time"] + plan["Execution Time"]
                    total, milliseconds = total + read, milliseconds + spent
                    if args.explain:
                        print(f"{label}: {spent:7.2f} ms {read:>8} rows  {' '.join(statement.split())[:150]}",
                              file=sys.stderr)
            raw.rollback()
        return total, milliseconds

    rows: list[tuple[str, float, float, int, int, int, float, str]] = []

    def timed(label: str, path: str, window: timedelta) -> None:
        nonlocal recorded
        now = datetime.now(UTC)
        query = {"since": (now - window).isoformat(), "until": now.isoformat()}
        samples = []
        for number in range(args.repeat + 3):
            began = time.perf_counter()
            response = http.get(f"{API}/probes/{probe_id}/{path}", query_string=query, headers=headers)
            elapsed = (time.perf_counter() - began) * 1000
            assert response.status_code == 200, response.get_data(as_text=True)
            if number >= 3:
                samples.append(elapsed)
        count, fetched, recorded = statements[0], returned[0], []
        response = http.get(f"{API}/probes/{probe_id}/{path}", query_string=query, headers=headers)
        count, fetched, calls, recorded = statements[0] - count, returned[0] - fetched, recorded, None
        read, sql_ms = explained(label, calls)
        body = response.get_json()
        note = (f"{body['level']}, {len(body['points'])} points" if path == "chart"
                else f"{body['count']} results, {body['percentile_method']}")
        rows.append((label, statistics.median(samples), nearest_rank(samples, 95), count, fetched, read, sql_ms,
                     note))

    for days in (1, 7, 30, 90):
        timed(f"/stats {days} d", "stats", timedelta(days=days))
    for label, window in (("1 h", timedelta(hours=1)), ("24 h", timedelta(days=1)), ("7 d", timedelta(days=7)),
                          ("30 d", timedelta(days=30)), ("90 d", timedelta(days=90))):
        timed(f"/chart {label}", "chart", window)
    # The same 30-day /stats from the raw results only: every window is "small enough to read raw".
    results.RAW_EXACT_LIMIT = 10**9
    timed("/stats 30 d, raw results only", "stats", timedelta(days=30))

    print(f"| request ({args.days} d at {args.interval} s, PostgreSQL) | median ms | p95 ms | SQL statements "
          "| rows returned | table rows read | SELECTs' SQL ms | answer |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for label, median, p95, count, fetched, read, sql_ms, note in rows:
        print(f"| {label} | {median:.1f} | {p95:.1f} | {count} | {fetched:,} | {read:,} | {sql_ms:.1f} | {note} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
