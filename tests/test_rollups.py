"""Rollups: kept as results are stored, exact counts, a sketch within its error, what reads them."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
import textwrap
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import delete, func, select

from app.extensions import db
from app.core.config import PROJECT_ROOT
from app.models import ProbeResult, ProbeRollup
from app.services import latency_sketch, result_store, retention, rollups
from app.services.results import chart, probe_stats
from tests.api import assert_error
from tests.conftest import make_probe, make_tenant, subprocess_environ

pytestmark = pytest.mark.timeout(120)

NOW = datetime.now(UTC).replace(second=0, microsecond=0)


def row(probe: Any, at: datetime, status: str = "success", ms: float | None = 10.0, **fields: Any) -> dict[str, Any]:
    return {"tenant_id": probe.tenant_id, "probe_id": probe.id, "run_key": f"manual:{uuid.uuid4().hex}",
            "probe_type": "manual", "status": status, "response_time_ms": ms, "status_code": None, "error": None,
            "dns_ms": None, "connect_ms": None, "tls_ms": None, "processing_ms": None, "transfer_ms": None,
            "cert_expires_at": None, "bytes_read": 0, "details": None, "scheduled_for": None,
            "started_at": at, "created_at": at, **fields}


def store(rows: list[dict[str, Any]]) -> None:
    result_store.store([result_store.MeasuredRun(row=dict(item)) for item in rows])


def exact_rank(values: list[float], percent: int) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(percent * len(ordered) / 100)) - 1]


@pytest.fixture
def probe(app: Flask) -> Any:
    return make_probe(make_tenant().id, "http://127.0.0.1:9/")


def rollup(probe: Any, level: int) -> list[ProbeRollup]:
    return list(db.session.scalars(select(ProbeRollup).where(ProbeRollup.probe_id == probe.id,
                                                             ProbeRollup.level == level).order_by(ProbeRollup.bucket)))


def sketches(probe: Any, level: int) -> dict[int, dict[int, int]]:
    """Per bucket of the level, its stored sketch (bin -> count)."""
    db.session.expire_all()
    return {r.bucket: latency_sketch.decode(r.rt_sketch) for r in rollup(probe, level)}


def sketched(probe: Any, level: int) -> int:
    """Response times counted by the level's sketches."""
    return sum(sum(sketch.values()) for sketch in sketches(probe, level).values())


class TestWriting:
    def test_totals_per_level_equal_the_stored_results_across_boundaries(self, probe: Any) -> None:
        midnight = datetime(2025, 3, 1, tzinfo=UTC)
        moments = [midnight - timedelta(seconds=1), midnight, midnight + timedelta(seconds=59),
                   midnight + timedelta(minutes=1), midnight + timedelta(hours=1, seconds=5)]
        store([row(probe, moments[0], ms=5.0, dns_ms=1.0), row(probe, moments[1], "failed", ms=7.0, dns_ms=3.0),
               row(probe, moments[2], ms=None), row(probe, moments[3], "timeout", ms=40.0, in_maintenance=True),
               row(probe, moments[4], ms=20.0)])

        minutes = {r.bucket: (r.count, r.failures, r.timed_count) for r in rollup(probe, rollups.MINUTE)}
        stamp = int(midnight.timestamp())
        assert minutes == {stamp - 60: (1, 0, 1), stamp: (2, 1, 1), stamp + 60: (1, 1, 1), stamp + 3600: (1, 0, 1)}
        hours = {r.bucket: r.count for r in rollup(probe, rollups.HOUR)}
        assert hours == {stamp - 3600: 1, stamp: 3, stamp + 3600: 1}
        days = rollup(probe, rollups.DAY)
        assert [(d.bucket, d.count, d.failures) for d in days] == [(stamp - 86400, 1, 0), (stamp, 4, 2)]
        today = days[1]
        assert (today.rt_sum, today.rt_min, today.rt_max, today.timed_count) == (67.0, 7.0, 40.0, 3)
        assert (today.dns_sum, today.dns_count) == (3.0, 1)
        # maintenance was set by the store from the windows (none here), not by the caller
        assert today.maintenance_count == 0

    def test_a_response_time_that_is_not_a_number_is_left_out(self, probe: Any) -> None:
        store([row(probe, NOW, ms=float("inf")), row(probe, NOW, ms=10.0, dns_ms=float("nan"))])

        day = rollup(probe, rollups.DAY)[0]
        assert (day.count, day.timed_count, day.rt_sum, day.rt_max, day.dns_count) == (2, 1, 10.0, 10.0, 0)
        assert sketched(probe, rollups.DAY) == 1

    def test_a_run_stored_twice_counts_once(self, probe: Any) -> None:
        first = row(probe, NOW)
        store([first])
        store([first, row(probe, NOW + timedelta(seconds=1))])
        store([first])

        assert [r.count for r in rollup(probe, rollups.MINUTE)] == [2]
        assert sketched(probe, rollups.DAY) == 2

    def test_the_same_run_twice_in_one_batch_counts_once(self, probe: Any) -> None:
        first = row(probe, NOW)
        store([first, first])

        assert [r.count for r in rollup(probe, rollups.HOUR)] == [1]


def test_concurrent_writers_give_exact_counts(pg_app: Flask) -> None:
    probe = make_probe(make_tenant().id, "http://127.0.0.1:9/")
    ids = (probe.id, probe.tenant_id)
    errors: list[BaseException] = []

    def write(seed: int) -> None:
        try:
            with pg_app.app_context():
                rng = random.Random(seed)
                for batch in range(20):
                    store([{**row(probe, NOW + timedelta(seconds=rng.random() * 50), ms=rng.uniform(1, 100)),
                            "probe_id": ids[0], "tenant_id": ids[1]} for _ in range(10)])
                db.session.remove()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    db.session.expire_all()
    for level in rollups.LEVELS:
        assert [r.count for r in rollup(probe, level)] == [800]
    assert sketched(probe, rollups.MINUTE) == 800
    assert sketched(probe, rollups.DAY) == 800


class TestSketch:
    def test_percentiles_are_within_the_stated_error_of_the_nearest_rank(self) -> None:
        rng = random.Random(7)
        values = [rng.lognormvariate(3.5, 1.0) for _ in range(5000)] + [0.0, 0.0005, 12000.0]
        sketch: dict[int, int] = {}
        for value in values:
            sketch[latency_sketch.bin_of(value)] = sketch.get(latency_sketch.bin_of(value), 0) + 1
        estimates = latency_sketch.quantiles(sketch, (1, 50, 95, 99, 100))
        for percent, estimate in estimates.items():
            exact = max(exact_rank(values, percent), latency_sketch.MIN_VALUE)
            assert abs(estimate - exact) <= exact * latency_sketch.RELATIVE_ERROR + 0.0005


class TestStats:
    def test_a_long_window_mixing_every_level_equals_the_raw_computation(self, probe: Any, monkeypatch: Any) -> None:
        monkeypatch.setattr("app.services.results.RAW_EXACT_LIMIT", 10)  # force the rollup path
        rng = random.Random(11)
        start = NOW - timedelta(days=3, hours=5, minutes=7, seconds=13)
        rows = []
        for n in range(400):
            at = start + timedelta(seconds=rng.uniform(0, 3 * 86400 + 9 * 3600))
            rows.append(row(probe, at, rng.choice(["success"] * 9 + ["failed"]),
                            ms=None if n % 17 == 0 else rng.uniform(5, 500)))
        store(rows)
        since, until = start + timedelta(seconds=31), NOW - timedelta(seconds=17)
        inside = [r for r in rows if since <= r["created_at"] < until]

        stats = probe_stats(probe.tenant_id, probe.id, since=since, until=until)

        timed = [r["response_time_ms"] for r in inside if r["response_time_ms"] is not None]
        assert stats["percentile_method"] == "sketch"
        assert stats["count"] == len(inside)
        assert stats["success_count"] == sum(r["status"] == "success" for r in inside)
        assert stats["avg_response_time_ms"] == pytest.approx(sum(timed) / len(timed), abs=0.001)
        assert (stats["min_response_time_ms"], stats["max_response_time_ms"]) == (min(timed), max(timed))
        for percent in (50, 95, 99):
            exact = exact_rank(timed, percent)
            assert abs(stats[f"p{percent}_response_time_ms"] - exact) <= exact * latency_sketch.RELATIVE_ERROR + 0.0005
        newest_failure = max((r for r in inside if r["status"] != "success"), key=lambda r: r["created_at"])
        assert stats["last_failure"]["at"] == newest_failure["created_at"]

    def test_a_small_window_is_exact_from_the_results(self, probe: Any) -> None:
        store([row(probe, NOW - timedelta(minutes=3), ms=ms) for ms in (1.0, 2.0, 3.0, 100.0)])

        stats = probe_stats(probe.tenant_id, probe.id, since=NOW - timedelta(hours=1))

        assert (stats["percentile_method"], stats["p50_response_time_ms"], stats["p99_response_time_ms"]) == (
            "nearest_rank", 2.0, 100.0)

    def test_history_survives_raw_retention(self, probe: Any) -> None:
        old = NOW - timedelta(days=40)
        store([row(probe, old + timedelta(minutes=n), "failed" if n % 4 == 0 else "success") for n in range(8)])
        before = [(r.level, r.bucket, r.count, r.failures) for level in rollups.LEVELS for r in rollup(probe, level)]

        assert retention.cleanup_old_results(30)["deleted"] == 8
        after = [(r.level, r.bucket, r.count, r.failures) for level in rollups.LEVELS for r in rollup(probe, level)]
        assert after == before
        stats = probe_stats(probe.tenant_id, probe.id, since=old - timedelta(days=1), until=NOW)
        assert (stats["count"], stats["success_count"], stats["last_failure"]) == (8, 6, None)
        totals = rollups.uptime_by_probe(probe.tenant_id, None, since=old - timedelta(days=1))
        assert totals[probe.id] == rollups.RunTotals(8, 2, 0)
        assert totals[probe.id].uptime_percent == 75.0
        # A few minutes, their results gone: percentiles from the minute rollups' sketches.
        minutes = probe_stats(probe.tenant_id, probe.id, since=old, until=old + timedelta(minutes=8))
        assert (minutes["count"], minutes["percentile_method"]) == (8, "sketch")
        assert abs(minutes["p50_response_time_ms"] - 10.0) <= 10.0 * latency_sketch.RELATIVE_ERROR


class TestRetention:
    def test_each_level_is_pruned_after_its_own_retention(self, probe: Any) -> None:
        for days in (10, 100, 800):
            store([row(probe, NOW - timedelta(days=days))])

        report = retention.prune_rollups()

        assert report["deleted"] == {"minute": 2, "hour": 1, "day": 0}
        kept = {level: len(rollup(probe, level)) for level in rollups.LEVELS}
        assert kept == {rollups.MINUTE: 1, rollups.HOUR: 2, rollups.DAY: 3}
        assert sketched(probe, rollups.MINUTE) == 1


class TestDaily:
    def test_one_entry_per_day_oldest_first_with_empty_days(self, probe: Any) -> None:
        today = NOW.date()
        store([row(probe, NOW - timedelta(days=2)), row(probe, NOW - timedelta(days=2), "failed"),
               row(probe, datetime(today.year, today.month, today.day, tzinfo=UTC))])
        other = make_probe(make_tenant().id, "http://127.0.0.1:9/")
        store([row(other, NOW)])

        days = rollups.daily(probe.tenant_id, probe.id, 4)

        assert [d.day for d in days] == [today - timedelta(days=n) for n in (3, 2, 1, 0)]
        assert [(d.count, d.failures, d.uptime_percent) for d in days] == [
            (0, 0, None), (2, 1, 50.0), (0, 0, None), (1, 0, 100.0)]
        many = rollups.daily_many(probe.tenant_id, [probe.id, other.id], 1, today=today)
        assert [d.count for d in many[other.id]] == [0]  # another tenant's probe counts nothing here


class TestChart:
    def test_short_ranges_are_raw_and_long_ones_rollups(self, probe: Any) -> None:
        base = NOW - timedelta(hours=2)
        store([row(probe, base + timedelta(minutes=n), "failed" if n == 3 else "success", ms=10.0 + n,
                   dns_ms=1.0 + n) for n in range(6)])

        raw = chart(probe.tenant_id, probe.id, since=base, until=NOW)
        assert (raw["level"], raw["step_seconds"], len(raw["points"])) == ("raw", None, 6)
        assert raw["points"][3] | {} == {**raw["points"][3], "count": 1, "failures": 1, "avg_ms": 13.0,
                                         "p95_ms": 13.0, "dns_ms": 4.0}

        assert chart(probe.tenant_id, probe.id, since=NOW - timedelta(days=7), until=NOW)["level"] == "raw"  # 6 results
        # Starting before the raw results' retention (30 days): the rollups, hours for 40 days.
        week = chart(probe.tenant_id, probe.id, since=NOW - timedelta(days=40), until=NOW)
        assert (week["level"], week["step_seconds"]) == ("hour", 3600)
        assert sum(p["count"] for p in week["points"]) == 6
        assert sum(p["failures"] for p in week["points"]) == 1
        year = chart(probe.tenant_id, probe.id, since=NOW - timedelta(days=300), until=NOW)
        assert year["level"] == "day" and len(year["points"]) <= 2
        assert sum(p["count"] for p in year["points"]) == 6
        hour_points = [p for p in week["points"] if p["count"]]
        merged_min = min(p["min_ms"] for p in hour_points)
        merged_max = max(p["max_ms"] for p in hour_points)
        assert (merged_min, merged_max) == (10.0, 15.0)
        assert sum(p["dns_ms"] * p["count"] for p in hour_points) == pytest.approx(21.0)  # 1+2+...+6

    def test_a_day_of_minutes_is_the_minute_level(self, probe: Any) -> None:
        store([row(probe, NOW - timedelta(minutes=30, seconds=s)) for s in range(0, 1600)])

        day = chart(probe.tenant_id, probe.id, since=NOW - timedelta(hours=20), until=NOW)

        assert (day["level"], day["step_seconds"]) == ("minute", 60)
        assert len(day["points"]) <= 1500 and sum(p["count"] for p in day["points"]) == 1600


class TestApi:
    def test_chart_daily_and_stats_through_the_api(self, api: Any, probe: Any) -> None:
        store([row(probe, NOW - timedelta(minutes=5), ms=12.0)])
        viewer = api.as_role(probe.tenant_id, "viewer")

        body = viewer.get(f"/api/v1/probes/{probe.id}/chart").get_json()
        assert body["level"] == "raw" and [p["avg_ms"] for p in body["points"]] == [12.0]
        days = viewer.get(f"/api/v1/probes/{probe.id}/uptime/daily?days=3").get_json()
        assert [d["count"] for d in days] == [0, 0, 1] and days[-1]["day"] == NOW.date().isoformat()
        assert len(viewer.get(f"/api/v1/probes/{probe.id}/uptime/daily").get_json()) == 90
        stats = viewer.get(f"/api/v1/probes/{probe.id}/stats").get_json()
        assert (stats["count"], stats["percentile_method"], stats["max_response_time_ms"]) == (1, "nearest_rank", 12.0)

    def test_foreign_probes_are_not_found_and_bad_input_names_the_field(self, api: Any, probe: Any) -> None:
        foreign = make_probe(make_tenant().id, "http://127.0.0.1:9/")
        viewer = api.as_role(probe.tenant_id, "viewer")
        for path in (f"/api/v1/probes/{foreign.id}/chart", f"/api/v1/probes/{foreign.id}/uptime/daily"):
            assert_error(viewer.get(path), 404)
        assert_error(viewer.get(f"/api/v1/probes/{probe.id}/uptime/daily?days=0"), 422, field="days")
        assert_error(viewer.get(f"/api/v1/probes/{probe.id}/uptime/daily?days=401"), 422, field="days")
        assert_error(viewer.get(f"/api/v1/probes/{probe.id}/chart?since=2025-01-02T00:00:00Z"
                                "&until=2025-01-01T00:00:00Z"), 422, field="until")
        assert_error(viewer.get(f"/api/v1/probes/{probe.id}/chart?since=yesterday"), 422, field="since")


def test_rebuild_is_idempotent_and_matches_the_results(probe: Any) -> None:
    store([row(probe, NOW - timedelta(hours=h, seconds=7), "failed" if h % 3 == 0 else "success", ms=float(h + 1))
           for h in range(30)])
    expected = {level: [(r.bucket, r.count, r.failures, r.rt_sum, latency_sketch.decode(r.rt_sketch))
                        for r in rollup(probe, level)] for level in rollups.LEVELS}
    db.session.execute(delete(ProbeRollup))
    db.session.commit()

    for _ in range(2):
        rollups.rebuild(probe_id=probe.id)
        db.session.expire_all()
        got = {level: [(r.bucket, r.count, r.failures, r.rt_sum, latency_sketch.decode(r.rt_sketch))
                       for r in rollup(probe, level)] for level in rollups.LEVELS}
        assert got == expected
    assert db.session.scalar(select(func.count()).select_from(ProbeResult)) == 30


def test_results_stored_by_a_real_worker_are_rolled_up(pg_app: Flask, worker: object, targets: Any) -> None:
    from app.tasks.network_probe_tasks import execute_probe

    probe = make_probe(make_tenant().id, f"{targets.http_url}/ok", auto_probe=False)
    for _ in range(3):
        execute_probe.apply_async(kwargs={"probe_id": probe.id, "tenant_id": probe.tenant_id,
                                          "probe_type": "manual"}).get(timeout=30)

    db.session.expire_all()
    days = rollups.daily(probe.tenant_id, probe.id, 1)
    assert (days[0].count, days[0].failures) == (3, 0)
    assert sketched(probe, rollups.HOUR) == 3


def test_batches_merge_their_sketches_into_the_stored_one(app: Flask, probe: Any) -> None:
    rng = random.Random(3)
    values = [rng.lognormvariate(3.5, 0.8) for _ in range(120)]
    for start in range(0, 120, 7):  # 18 batches into the same minute, hour and day
        store([row(probe, NOW + timedelta(seconds=n % 60), ms=value)
               for n, value in enumerate(values[start:start + 7], start)])

    expected: dict[int, int] = {}
    for value in values:
        expected[latency_sketch.bin_of(value)] = expected.get(latency_sketch.bin_of(value), 0) + 1
    for level in rollups.LEVELS:
        assert list(sketches(probe, level).values()) == [expected]


# --- two processes, one probe, one minute (PostgreSQL) ----------------------------------------------

_WRITER = textwrap.dedent("""
    import random, sys, uuid
    from datetime import datetime, timedelta, timezone

    from app import create_app
    from app.services import result_store

    probe_id, tenant_id, base, seed = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
    flask_app = create_app()
    with flask_app.app_context():
        print("ready", flush=True)
        sys.stdin.readline()  # both processes start storing together
        rng = random.Random(seed)
        start = datetime.fromtimestamp(base, timezone.utc)
        for batch in range(25):
            rows = [{"probe_id": probe_id, "run_key": f"manual:{uuid.uuid4().hex}",
                     "response_time_ms": rng.uniform(1, 500), "status": rng.choice(["success", "failed"]),
                     "created_at": start + timedelta(seconds=rng.random() * 59)} for _ in range(8)]
            # one run both processes store (a re-issued slot): it must count once
            rows.append({"probe_id": probe_id, "run_key": f"auto:{batch}", "response_time_ms": 42.0,
                         "status": "success", "created_at": start + timedelta(seconds=batch)})
            result_store.store([result_store.MeasuredRun(row={
                "tenant_id": tenant_id, "probe_type": "manual", "status_code": None, "error": None,
                "bytes_read": 0, "started_at": item["created_at"], **item}) for item in rows])
    print("done", flush=True)
""")


def test_two_writer_processes_give_exact_counts_and_sketches(pg_app: Flask, tmp_path: Any) -> None:
    probe = make_probe(make_tenant().id, "http://127.0.0.1:9/")
    env = subprocess_environ(tmp_path, db.engine.url.render_as_string(hide_password=False))
    base = NOW.timestamp()
    writers = [subprocess.Popen([sys.executable, "-c", _WRITER, str(probe.id), str(probe.tenant_id), str(base),
                                 str(seed)], cwd=PROJECT_ROOT, env=env, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for seed in (1, 2)]
    try:
        for writer in writers:
            assert writer.stdout.readline().strip() == "ready", writer.stderr.read()
        for writer in writers:
            writer.stdin.write("go\n")
            writer.stdin.flush()
        for writer in writers:
            out, err = writer.communicate(timeout=90)
            assert (writer.returncode, out.strip()) == (0, "done"), err
    finally:
        for writer in writers:
            if writer.poll() is None:
                writer.kill()

    db.session.expire_all()
    stored = list(db.session.execute(select(ProbeResult.response_time_ms, ProbeResult.status)
                                     .where(ProbeResult.probe_id == probe.id)))
    assert len(stored) == 2 * 25 * 8 + 25
    expected: dict[int, int] = {}
    for value, _ in stored:
        expected[latency_sketch.bin_of(value)] = expected.get(latency_sketch.bin_of(value), 0) + 1
    failures = sum(status != "success" for _, status in stored)
    for level in rollups.LEVELS:
        rows = rollup(probe, level)
        assert [(r.count, r.failures, r.timed_count) for r in rows] == [(len(stored), failures, len(stored))]
        assert rows[0].rt_sum == pytest.approx(sum(value for value, _ in stored))
        assert latency_sketch.decode(rows[0].rt_sketch) == expected


# --- admin-mit rollups rebuild, as an operator runs it ----------------------------------------------


def admin_mit(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "app", *args], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert "Traceback" not in done.stderr, done.stderr
    return done


def test_rollups_rebuild_command_rolls_up_results_stored_before_the_rollups(tmp_path: Any) -> None:
    import sqlite3

    database = tmp_path / "cli.db"
    env = subprocess_environ(tmp_path, f"sqlite:///{database}")
    assert admin_mit(env, "db", "upgrade").returncode == 0
    assert admin_mit(env, "tenant", "add", "acme").returncode == 0
    added = admin_mit(env, "probe", "add", "--tenant", "acme", "--name", "web", "--protocol", "http",
                      "--target", "http://127.0.0.1:9/", "--manual-only")
    assert added.returncode == 0, added.stderr
    assert admin_mit(env, "rollups", "rebuild").stdout.strip() == "no stored results: nothing to roll up"
    # Results written as a release without rollups wrote them: no rollup rows.
    with sqlite3.connect(database) as conn:
        probe_id, tenant_id = conn.execute("SELECT id, tenant_id FROM probes").fetchone()
        for n in range(5):
            at = f"2025-03-0{1 + n // 3} 10:0{n}:07.000000"
            conn.execute("INSERT INTO probe_results (tenant_id, probe_id, run_key, probe_type, status, "
                         "response_time_ms, bytes_read, started_at, created_at, in_maintenance) "
                         "VALUES (?, ?, ?, 'manual', ?, ?, 0, ?, ?, 0)",
                         (tenant_id, probe_id, f"manual:{n}", "failed" if n == 1 else "success", 10.0 * (n + 1), at, at))

    for _ in range(2):  # running it again changes nothing
        done = admin_mit(env, "rollups", "rebuild")
        assert (done.returncode, done.stdout.strip()) == (0, "rolled up 5 results from 2025-03-01")
        with sqlite3.connect(database) as conn:
            days = conn.execute("SELECT bucket, count, failures, rt_sum, rt_sketch FROM probe_rollups "
                                "WHERE level = 86400 ORDER BY bucket").fetchall()
            assert conn.execute("SELECT count(*), sum(count) FROM probe_rollups WHERE level = 60").fetchone() == (5, 5)
        march_1 = int(datetime(2025, 3, 1, tzinfo=UTC).timestamp())
        assert [row[:4] for row in days] == [(march_1, 3, 1, 60.0), (march_1 + 86400, 2, 0, 90.0)]
        assert sum(json.loads(days[0][4]).values()) == 3

    done = admin_mit(env, "rollups", "rebuild", "--since", "2025-03-02", "--probe", str(probe_id))
    assert done.stdout.strip() == "rolled up 2 results from 2025-03-02"
    bad = admin_mit(env, "rollups", "rebuild", "--since", "yesterday")
    assert bad.returncode != 0 and len(bad.stderr.strip().splitlines()) == 1
