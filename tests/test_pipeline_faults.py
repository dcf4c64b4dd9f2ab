"""The scheduled-probe pipeline on a bad day: dead targets, killed workers, every pool.

Real worker and beat processes on the test Redis and a scratch PostgreSQL database,
real loopback targets. Each test checks the ledger: every slot in its window is a stored
result or a counted loss, none twice.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Iterator

import pytest
from flask import Flask
from sqlalchemy import select

from app.extensions import db
from app.models import ProbeResult
from app.services import scheduling
from tests.conftest import make_probe, make_tenant, wait_for
from tests.pipeline import (DISPATCHING, Processes, hold, loss_rows, losses_after_dispatch, losses_by_reason,
                            stored_slots, sweep_now, unaccounted_slots, wait_for_worker)
from tests.targets import LoopbackTargets

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def processes(pg_app: Flask, postgres_url: str, tmp_path: Path) -> Iterator[Processes]:
    env = {**os.environ, "ADMIN_MIT_DATABASE__URL": postgres_url,
           # Short leases and grace, so re-issues and losses happen within a test.
           "ADMIN_MIT_PROBES__LEASE_MARGIN_SECONDS": "1", "ADMIN_MIT_PROBES__LOSS_GRACE_SECONDS": "1"}
    running = Processes(env, tmp_path)
    try:
        yield running
    finally:
        running.stop_all()


def _start_beat(processes: Processes) -> None:
    """Start beat and wait until it runs, so the schedules a test starts next are dispatched on time."""
    processes.beat()
    wait_for(lambda: DISPATCHING in processes.log("beat"), timeout=60, what="beat's first dispatch")


def _rows(probe_ids: list[int]) -> list[ProbeResult]:
    db.session.expire_all()
    return list(db.session.scalars(select(ProbeResult).where(ProbeResult.probe_id.in_(probe_ids))))


def test_dead_targets_hold_one_probe_each_and_every_healthy_slot_is_stored(
    processes: Processes, targets: LoopbackTargets
) -> None:
    """One pool process, 30 healthy and 6 dead targets (they accept and never answer) at a 5 s interval.

    With batches held by their slowest probe, one process could run one batch per 4 s
    timeout and most healthy slots would be lost; here a dead target costs only itself.
    """
    tenant = make_tenant()
    healthy = [make_probe(tenant.id, f"{targets.http_url}/ok", interval_seconds=5, timeout_seconds=4).id
               for _ in range(30)]
    dead = [make_probe(tenant.id, f"http://{targets.tcp_silent}/", interval_seconds=5, timeout_seconds=4).id
            for _ in range(6)]
    hold(healthy + dead)
    processes.worker("w1", "--pool=prefork", "--concurrency=1")
    wait_for_worker("w1")
    _start_beat(processes)
    scheduling.restart(healthy + dead)
    since = scheduling.now_ms()
    time.sleep(16)
    until = scheduling.now_ms() - 1500  # the slots beat has claimed by now
    processes.stop("beat")
    wait_for(lambda: len(_rows(dead)) >= 6 * 3, timeout=20, what="the dead probes' timeouts")
    time.sleep(5)  # the last dead runs time out
    processes.stop("w1")
    sweep_now()

    assert unaccounted_slots(healthy + dead, since, until) == {}
    rows = _rows(healthy + dead)
    assert {r.status for r in rows if r.probe_id in healthy} == {"success"}
    assert {r.status for r in rows if r.probe_id in dead} == {"timeout"}
    assert losses_after_dispatch(healthy + dead) == {}, loss_rows(healthy + dead)
    # Written as they complete: a healthy result does not wait for the dead probes of its batch.
    assert max((r.created_at - r.started_at).total_seconds() for r in rows if r.probe_id in healthy) < 2
    assert min((r.created_at - r.started_at).total_seconds() for r in rows if r.probe_id in dead) >= 3.9
    assert "Traceback" not in processes.log("w1")


def test_runs_of_a_killed_worker_run_again_after_their_lease_and_are_stored_once(
    processes: Processes, targets: LoopbackTargets
) -> None:
    tenant = make_tenant()
    probe = make_probe(tenant.id, f"{targets.http_url}/hold", interval_seconds=30, timeout_seconds=4)
    hold([probe.id])
    targets.reset()
    processes.worker("w1", "--pool=prefork", "--concurrency=1")
    wait_for_worker("w1")
    _start_beat(processes)
    scheduling.restart([probe.id], first_in_ms=500)
    wait_for(lambda: targets.hits("/hold") == 1, timeout=30, what="the first worker to start the run")
    processes.stop("w1", signal.SIGKILL)  # no warm shutdown: its run in flight dies with it
    targets.release_hold()
    killed_at = scheduling.now_ms()
    processes.worker("w2", "--pool=prefork", "--concurrency=1")

    [stored] = wait_for(lambda: _rows([probe.id]), timeout=30, what="the re-issued run's result")
    # The lease (4 s timeout + 1 s margin) passed, the dispatcher re-issued the slot, w2 ran it.
    assert stored.status == "success" and stored.run_key.startswith("auto:")
    assert (stored.started_at.timestamp() * 1000) >= killed_at
    assert targets.hits("/hold") == 2
    time.sleep(6)  # a second re-issue, if there were one, would have run by now
    assert stored_slots([probe.id]) == {probe.id: [int(stored.run_key.removeprefix("auto:"))]}
    assert targets.hits("/hold") == 2
    assert losses_by_reason([probe.id]) == {}


@pytest.mark.parametrize("pool", [
    ["--pool=prefork", "--concurrency=2"],
    ["--pool=threads", "--concurrency=8"],
    ["--pool=gevent", "--concurrency=100"],  # the guide's command
    ["--pool=solo"],
], ids=["prefork", "threads", "gevent", "solo"])
def test_every_pool_runs_scheduled_probes(processes: Processes, targets: LoopbackTargets, pool: list[str]) -> None:
    tenant = make_tenant()
    probes = [make_probe(tenant.id, f"{targets.http_url}/ok", interval_seconds=5, timeout_seconds=2).id
              for _ in range(10)]
    probes.append(make_probe(tenant.id, targets.tcp_echo, protocol="tcp", interval_seconds=5, timeout_seconds=2,
                             spec={"body": "ping", "expect": "ping"}).id)
    hold(probes)
    processes.worker("w1", *pool)
    wait_for_worker("w1")
    _start_beat(processes)
    scheduling.restart(probes)
    since = scheduling.now_ms()
    time.sleep(11)
    until = scheduling.now_ms() - 1500
    processes.stop("beat")
    time.sleep(3)
    processes.stop("w1")
    sweep_now()

    assert unaccounted_slots(probes, since, until) == {}
    rows = _rows(probes)
    assert {r.status for r in rows} == {"success"} and {r.probe_id for r in rows} == set(probes)
    assert losses_after_dispatch(probes) == {}, loss_rows(probes)
    log = processes.log("w1")
    assert "Traceback" not in log and "ERROR" not in log


@pytest.mark.parametrize("pool", [["--pool=prefork", "--concurrency=1"], ["--pool=gevent", "--concurrency=100"]],
                         ids=["prefork", "gevent"])
def test_a_warm_shutdown_lets_the_probes_in_flight_finish_and_stores_them(
    processes: Processes, targets: LoopbackTargets, pool: list[str]
) -> None:
    tenant = make_tenant()
    probes = [make_probe(tenant.id, f"{targets.http_url}/slow?ms=3000", interval_seconds=30, timeout_seconds=5).id
              for _ in range(8)]
    hold(probes)
    targets.reset()
    processes.worker("w1", *pool)
    wait_for_worker("w1")
    _start_beat(processes)
    scheduling.restart(probes, first_in_ms=500)
    wait_for(lambda: targets.hits("/slow") == 8, timeout=30, what="the probes in flight")
    processes.stop("beat")
    processes.stop("w1")  # SIGTERM while the eight are 3 s from answering

    rows = _rows(probes)
    assert len(rows) == 8 and {r.status for r in rows} == {"success"}
    assert losses_by_reason(probes) == {}, loss_rows(probes)
