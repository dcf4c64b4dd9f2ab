"""The pipeline through a PostgreSQL stop and a Redis restart, on private servers of the test's own.

What an operator needs to hold: nothing measured is lost, probing resumes as soon as
the service is back, the slots that passed meanwhile are counted by name (not replayed),
and nothing dispatched after the recovery is dropped.
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator, TypeVar

import pytest
from flask import Flask
from sqlalchemy import func, select

from app.celery_app import celery_init_app
from app.extensions import db
from app.models import ProbeResult, ProbeRollup, ProbeRunLoss
from app.services import scheduling
from tests.conftest import _migrated_app, make_probe, make_tenant, settings_with, wait_for
from tests.pipeline import DISPATCHING, Processes, hold, losses_by_reason, sweep_now, unaccounted_slots
from tests.servers import PrivatePostgres, PrivateRedis, ServerUnavailable
from tests.targets import LoopbackTargets

pytestmark = pytest.mark.timeout(240)

PIPELINE_ENV = {"ADMIN_MIT_PROBES__LEASE_MARGIN_SECONDS": "1", "ADMIN_MIT_PROBES__LOSS_GRACE_SECONDS": "1"}


S = TypeVar("S")


def _available(server: Callable[[], S]) -> S:
    """The private server, or a skip (a failure in CI) when its binaries are missing."""
    try:
        return server()
    except ServerUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(str(exc))
        pytest.skip(str(exc))


@pytest.fixture
def private_postgres(clean_redis: object) -> Iterator[tuple[PrivatePostgres, Flask]]:
    server = _available(PrivatePostgres)
    try:
        server.start()
        flask_app = _migrated_app(settings_with(server.url))
        celery_init_app(flask_app)
        with flask_app.app_context():
            yield server, flask_app
            db.session.remove()
            db.engine.dispose()
    finally:
        server.destroy()


def _stored(probe_ids: list[int], after_ms: int = 0) -> int:
    """Results of ``probe_ids`` that started after ``after_ms`` (epoch ms)."""
    db.session.rollback()
    after = datetime.fromtimestamp(after_ms / 1000, timezone.utc)
    return db.session.scalar(select(func.count(ProbeResult.id)).where(
        ProbeResult.probe_id.in_(probe_ids), ProbeResult.started_at >= after)) or 0


def _rolled_up(probe_ids: list[int]) -> dict[int, int]:
    """Per rollup level, the runs its rows count for ``probe_ids``."""
    db.session.rollback()
    return dict(db.session.execute(select(ProbeRollup.level, func.sum(ProbeRollup.count))
                                   .where(ProbeRollup.probe_id.in_(probe_ids)).group_by(ProbeRollup.level)).all())


def _fleet(tenant_id: int, targets: LoopbackTargets) -> list[int]:
    """Probes that answer at once, and probes that take 1.5 s: those are in flight at any moment."""
    quick = [make_probe(tenant_id, f"{targets.http_url}/ok", interval_seconds=5, timeout_seconds=4).id
             for _ in range(8)]
    slow = [make_probe(tenant_id, f"{targets.http_url}/slow?ms=1500", interval_seconds=5, timeout_seconds=4).id
            for _ in range(8)]
    hold(quick + slow)
    return quick + slow


def _after_recovery(processes: Processes, probes: list[int], timeout: float) -> tuple[int, int]:
    """Once the server is back: wait until every probe ran again, then stop beat and the worker.

    Returns when the service came back and the end of the window every slot must be
    accounted for in (both epoch ms).
    """
    recovered = scheduling.now_ms()
    wait_for(lambda: _stored(probes, after_ms=recovered) >= len(probes), timeout=timeout,
             what="every probe to run again after the recovery")
    until = scheduling.now_ms() - 1500
    processes.stop("beat")
    time.sleep(5)  # the last claimed runs finish and are written
    processes.stop("w1")
    return recovered, until


def _expired_since(probes: list[int], recovered: int) -> int:
    """Slots dispatched after the recovery that were dropped: there must be none."""
    return db.session.scalar(select(func.count()).select_from(ProbeRunLoss).where(
        ProbeRunLoss.probe_id.in_(probes), ProbeRunLoss.reason == "expired", ProbeRunLoss.slot_ms >= recovered)) or 0


def _start(processes: Processes) -> None:
    from app import celery_utils

    processes.worker("w1", "--pool=prefork", "--concurrency=1")
    wait_for(lambda: celery_utils.get_worker_stats()["total_workers"] >= 1, timeout=60, what="the worker")
    processes.beat()
    wait_for(lambda: DISPATCHING in processes.log("beat"), timeout=60, what="beat's first dispatch")


def test_postgres_stopped_mid_run_loses_no_measured_result_and_probing_resumes(
    private_postgres: tuple[PrivatePostgres, Flask], targets: LoopbackTargets, tmp_path: Path
) -> None:
    server, _ = private_postgres
    tenant = make_tenant()
    probes = _fleet(tenant.id, targets)
    processes = Processes({**os.environ, **PIPELINE_ENV, "ADMIN_MIT_DATABASE__URL": server.url}, tmp_path)
    try:
        _start(processes)
        scheduling.restart(probes)
        since = scheduling.now_ms()
        wait_for(lambda: _stored(probes) >= len(probes), timeout=30, what="a first round of results")
        targets.reset()
        wait_for(lambda: targets.hits("/slow") >= 2, timeout=10, what="slow probes in flight")
        db.session.remove()
        db.engine.dispose()
        server.stop()  # while slow probes are in flight: their results cannot be written
        measured_during_outage = targets.hits("/slow")
        time.sleep(8)  # longer than the interval: slots pass while nothing can be claimed
        server.start()
        recovered, until = _after_recovery(processes, probes, timeout=40)
    finally:
        processes.stop_all()
    sweep_now()

    assert measured_during_outage >= 2
    assert unaccounted_slots(probes, since, until) == {}
    losses = losses_by_reason(probes)
    assert losses.get("lost", 0) == 0 and losses.get("unwritten", 0) == 0  # nothing measured was lost
    assert losses.get("missed", 0) > 0  # the outage's slots: counted, not replayed
    assert _expired_since(probes, recovered) == 0  # nothing dispatched after the recovery was dropped
    log = processes.log("w1")
    assert "database unavailable" in log and "database available again" in log
    # The results written after the outage went into their minute, hour and day rollups once each.
    stored = _stored(probes)
    assert _rolled_up(probes) == {60: stored, 3600: stored, 86400: stored}


def test_redis_restarted_mid_run_resumes_and_accounts_for_every_slot(
    pg_app: Flask, postgres_url: str, targets: LoopbackTargets, tmp_path: Path
) -> None:
    server = _available(PrivateRedis)
    tenant = make_tenant()
    probes = _fleet(tenant.id, targets)
    env = {**os.environ, **PIPELINE_ENV, "ADMIN_MIT_DATABASE__URL": postgres_url,
           "ADMIN_MIT_REDIS__PORT": str(server.port), "ADMIN_MIT_REDIS__DB": "0"}
    processes = Processes(env, tmp_path)
    server.start()
    try:
        processes.worker("w1", "--pool=prefork", "--concurrency=1")
        wait_for(lambda: "ready." in processes.log("w1"), timeout=60, what="the worker")
        processes.beat()
        wait_for(lambda: DISPATCHING in processes.log("beat"), timeout=60, what="beat's first dispatch")
        scheduling.restart(probes)
        since = scheduling.now_ms()
        wait_for(lambda: _stored(probes) >= len(probes), timeout=30, what="a first round of results")
        targets.reset()
        wait_for(lambda: targets.hits("/slow") >= 2, timeout=10, what="slow probes in flight")
        server.kill()  # queued messages are gone with it
        # Longer than a probe's interval; and Celery's own consumer, trying again 2, 4, 6 s apart,
        # would be back 5 s after the server: the runs dispatched meanwhile would expire.
        time.sleep(7)
        server.start()
        recovered, until = _after_recovery(processes, probes, timeout=60)
    finally:
        processes.stop_all()
        server.kill()
    sweep_now()

    assert unaccounted_slots(probes, since, until) == {}
    losses = losses_by_reason(probes)
    assert losses.get("lost", 0) == 0 and losses.get("unwritten", 0) == 0  # runs in flight were stored
    assert _expired_since(probes, recovered) == 0  # nothing dispatched after the recovery was dropped


def test_results_beyond_the_buffer_are_counted_as_unwritten_the_rest_are_stored(
    private_postgres: tuple[PrivatePostgres, Flask], targets: LoopbackTargets, tmp_path: Path
) -> None:
    server, _ = private_postgres
    tenant = make_tenant()
    probes = [make_probe(tenant.id, f"{targets.http_url}/slow?ms=3000", interval_seconds=30, timeout_seconds=5).id
              for _ in range(8)]
    hold(probes)
    env = {**os.environ, **PIPELINE_ENV, "ADMIN_MIT_DATABASE__URL": server.url,
           "ADMIN_MIT_PROBES__WRITE_BUFFER_MAX_ROWS": "3"}
    processes = Processes(env, tmp_path)
    try:
        _start(processes)
        targets.reset()
        scheduling.restart(probes, first_in_ms=1000)  # one slot for all eight, at once
        wait_for(lambda: targets.hits("/slow") == 8, timeout=30, what="all eight probes in flight")
        db.session.remove()
        db.engine.dispose()
        server.stop()  # the eight results arrive while the database is down; the buffer holds 3
        processes.stop("beat")
        wait_for(lambda: "dropped 5 measured probe results" in processes.log("w1"), timeout=20,
                 what="the worker to drop what its buffer cannot hold")
        server.start()
        wait_for(lambda: _stored(probes) == 3, timeout=30, what="the buffered results")
        time.sleep(1)
        processes.stop("w1")
    finally:
        processes.stop_all()
    wait_for(lambda: (sweep_now(), losses_by_reason(probes))[1].get("unwritten") == 5, timeout=40,
             what="the dropped slots to be counted")  # once their slot and lease have passed

    assert losses_by_reason(probes) == {"unwritten": 5}
    assert "more than 3 results waited for the database" in processes.log("w1")
