"""Scheduling: due probes are claimed exactly once, at their own interval, by any number of dispatchers."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from celery import signals
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy import func, select, update

from app.core.config import PROJECT_ROOT, active_settings
from app.extensions import db
from app.models import Probe, ProbeLease
from app.services import dispatch, scheduling
from app.services.dispatch import dispatch_due, queue_length
from app.services.probes import update_probe
from tests.conftest import make_probe, make_tenant

pytestmark = pytest.mark.timeout(120)

INTERVAL_MS = 60_000


def _set_next_run(probe_id: int, value: int | None) -> None:
    db.session.execute(update(Probe).where(Probe.id == probe_id).values(next_run_at=value))
    db.session.commit()


def _probe(probe_id: int) -> Probe:
    db.session.expire_all()
    probe = db.session.get(Probe, probe_id)
    assert probe is not None
    return probe


def queued_runs(client: redis.Redis, queue: str = "network_probes") -> list[dict[str, Any]]:
    """The kwargs of every message waiting in ``queue`` (every priority bucket)."""
    runs = []
    for key in [queue, *client.keys(f"{queue}:*")]:
        for raw in client.lrange(key, 0, -1):
            message = json.loads(raw)
            args, kwargs, _ = json.loads(base64.b64decode(message["body"]))
            runs.append({"task": message["headers"]["task"], "expires": message["headers"]["expires"], **kwargs})
    return runs


class TestClaim:
    def test_a_due_probe_is_claimed_once_and_moves_one_interval_on(self, app: Flask) -> None:
        tenant = make_tenant()
        probe = make_probe(tenant.id, "http://127.0.0.1:9/")
        not_due = make_probe(tenant.id, "http://127.0.0.1:9/")
        now = scheduling.now_ms()
        _set_next_run(probe.id, now - 100)
        _set_next_run(not_due.id, now + 5_000)

        [run] = scheduling.claim_due(now, limit=100)
        db.session.commit()
        again = scheduling.claim_due(now, limit=100)
        db.session.commit()

        assert (run.probe_id, run.tenant_id, run.slot_ms) == (probe.id, tenant.id, now - 100)
        assert again == []
        assert _probe(probe.id).next_run_at == now - 100 + INTERVAL_MS
        assert _probe(not_due.id).next_run_at == now + 5_000

    def test_moving_along_the_schedule_is_not_a_change_to_the_probe(self, app: Flask) -> None:
        tenant = make_tenant()
        probe = make_probe(tenant.id, "http://127.0.0.1:9/")
        now = scheduling.now_ms()
        _set_next_run(probe.id, now - 100)
        changed_at = _probe(probe.id).updated_at

        scheduling.claim_due(now, limit=100)
        db.session.commit()
        scheduling.restart([probe.id])
        scheduling.reconcile()

        assert _probe(probe.id).next_run_at != now - 100
        assert _probe(probe.id).updated_at == changed_at  # what the API shows as the last change

    def test_missed_slots_are_skipped_and_counted_not_replayed(self, app: Flask) -> None:
        tenant = make_tenant()
        probe = make_probe(tenant.id, "http://127.0.0.1:9/")
        now = scheduling.now_ms()
        first_missed = now - int(3.5 * INTERVAL_MS)
        _set_next_run(probe.id, first_missed)

        runs = scheduling.claim_due(now, limit=100)
        db.session.commit()

        assert [run.slot_ms for run in runs] == [first_missed + 3 * INTERVAL_MS]  # only the latest slot
        stored = _probe(probe.id)
        assert stored.missed_runs == 3
        assert stored.next_run_at == first_missed + 4 * INTERVAL_MS > now

    def test_disabled_and_manual_only_probes_are_never_claimed(self, app: Flask) -> None:
        tenant = make_tenant()
        disabled = make_probe(tenant.id, "http://127.0.0.1:9/", enabled=False)
        manual = make_probe(tenant.id, "http://127.0.0.1:9/", auto_probe=False)
        now = scheduling.now_ms()
        for probe in (disabled, manual):  # a stale slot, as if written before the change
            _set_next_run(probe.id, now - 1)

        assert scheduling.claim_due(now, limit=100) == []

    def test_interval_change_and_disable_take_effect_at_once(self, app: Flask) -> None:
        tenant = make_tenant()
        probe = make_probe(tenant.id, "http://127.0.0.1:9/", interval_seconds=3600, timeout_seconds=5)
        before = scheduling.now_ms()

        update_probe(tenant.id, probe.id, {"interval_seconds": 10})
        assert before <= _probe(probe.id).next_run_at <= scheduling.now_ms() + 10_000

        update_probe(tenant.id, probe.id, {"enabled": False})
        assert _probe(probe.id).next_run_at is None
        update_probe(tenant.id, probe.id, {"enabled": True})
        assert _probe(probe.id).next_run_at is not None

    def test_slots_of_probes_created_together_are_spread_over_the_interval(self, app: Flask) -> None:
        tenant = make_tenant()
        now = scheduling.now_ms()
        probes = [make_probe(tenant.id, "http://127.0.0.1:9/", interval_seconds=60) for _ in range(60)]
        seconds = {(_probe(p.id).next_run_at - now) // 1000 for p in probes}
        assert len(seconds) > 30  # not one burst: most probes fall due in different seconds

    def test_concurrent_dispatchers_never_claim_the_same_slot(self, app: Flask) -> None:
        tenant = make_tenant()
        probes = [make_probe(tenant.id, "http://127.0.0.1:9/") for _ in range(300)]
        now = scheduling.now_ms()
        db.session.execute(update(Probe).values(next_run_at=now - 1000))
        db.session.commit()
        claimed: list[list[int]] = [[], []]
        start = threading.Barrier(2)

        def dispatcher(index: int) -> None:
            with app.app_context():
                start.wait()
                while runs := scheduling.claim_due(now, limit=25):
                    claimed[index].extend(run.probe_id for run in runs)
                    db.session.commit()
                db.session.remove()

        threads = [threading.Thread(target=dispatcher, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)

        counts = Counter(claimed[0] + claimed[1])
        assert sorted(counts) == sorted(p.id for p in probes)
        assert set(counts.values()) == {1}


class TestDispatch:
    def test_due_runs_are_published_in_batches_per_tenant(self, app: Flask, clean_redis: redis.Redis,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(active_settings().probes, "dispatch_batch_size", 4)
        first, second = make_tenant(), make_tenant()
        mine = [make_probe(first.id, "http://127.0.0.1:9/") for _ in range(6)]
        theirs = [make_probe(second.id, "http://127.0.0.1:9/", interval_seconds=30) for _ in range(2)]
        now = scheduling.now_ms()
        db.session.execute(update(Probe).values(next_run_at=now - 10))
        db.session.commit()

        report = dispatch_due(now)

        assert (report.claimed, report.messages) == (8, 3)
        runs = queued_runs(clean_redis)
        assert {run["task"] for run in runs} == {"app.tasks.network_probe_tasks.execute_batch_probes"}
        by_tenant: dict[int, list[int]] = {}
        for run in runs:
            assert run["probe_type"] == "auto" and len(run["probe_ids"]) <= 4
            assert all(run["scheduled_for"][str(pid)] == now - 10 for pid in run["probe_ids"])
            by_tenant.setdefault(run["tenant_id"], []).extend(run["probe_ids"])
        assert sorted(by_tenant[first.id]) == [p.id for p in mine]
        assert sorted(by_tenant[second.id]) == [p.id for p in theirs]
        # A batch not started by its probes' next slot is dropped by the worker.
        expiry = {run["tenant_id"]: round(datetime.fromisoformat(run["expires"]).timestamp() * 1000) for run in runs}
        assert expiry == {first.id: now - 10 + 60_000, second.id: now - 10 + 30_000}

    def test_a_message_is_published_only_once_its_leases_are_committed(self, app: Flask,
                                                                      clean_redis: redis.Redis) -> None:
        """A fast worker starts a message's slots on their leases: they must be visible when it arrives."""
        tenant = make_tenant()
        probes = [make_probe(tenant.id, "http://127.0.0.1:9/") for _ in range(3)]
        now = scheduling.now_ms()
        db.session.execute(update(Probe).values(next_run_at=now - 10))
        db.session.commit()
        visible_at_publish: list[int] = []

        def count_committed_leases(**_: Any) -> None:
            with db.engine.connect() as other:  # another connection sees committed rows only
                visible_at_publish.append(other.execute(select(func.count()).select_from(ProbeLease)).scalar_one())

        signals.before_task_publish.connect(count_committed_leases, weak=False)
        try:
            dispatch_due(now)
        finally:
            signals.before_task_publish.disconnect(count_committed_leases)

        assert visible_at_publish == [len(probes)]

    def test_slots_whose_message_could_not_be_sent_are_reissued_after_their_lease(
        self, app: Flask, clean_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        tenant = make_tenant()
        probe = make_probe(tenant.id, "http://127.0.0.1:9/", timeout_seconds=5)
        now = scheduling.now_ms()
        _set_next_run(probe.id, now - 10)

        def broker_gone(messages: object) -> None:
            raise RedisConnectionError("Connection refused")

        monkeypatch.setattr(dispatch, "publish_all", broker_gone)
        with pytest.raises(RedisConnectionError):
            dispatch_due(now)
        monkeypatch.undo()
        assert queued_runs(clean_redis) == []
        db.session.expire_all()
        [lease] = db.session.scalars(select(ProbeLease)).all()  # the claim stands: the slot is not claimed again
        assert (lease.slot_ms, lease.attempt, lease.started_ms) == (now - 10, 0, None)

        assert dispatch_due(now + lease.lease_ms - 1).reissued == 0  # the lease has not expired yet
        report = dispatch_due(now + lease.lease_ms + 1)

        assert (report.claimed, report.reissued) == (0, 1)
        [run] = queued_runs(clean_redis)
        assert run["scheduled_for"] == {str(probe.id): now - 10} and run["attempts"] == {str(probe.id): 1}

    def test_nothing_is_claimed_while_the_queue_is_backed_up(self, app: Flask, clean_redis: redis.Redis,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(active_settings().probes, "max_queue_backlog", 1)
        tenant = make_tenant()
        probe = make_probe(tenant.id, "http://127.0.0.1:9/")
        now = scheduling.now_ms()
        _set_next_run(probe.id, now - 10)
        from app.tasks.network_probe_tasks import execute_probe

        execute_probe.apply_async(kwargs={"probe_id": probe.id, "tenant_id": tenant.id})

        report = dispatch_due(now)

        assert report.skipped_for_backlog and report.claimed == 0
        assert _probe(probe.id).next_run_at == now - 10  # still due: counted as missed when the queue drains
        assert queue_length("network_probes") == 1


def _start_beat(env: dict[str, str], schedule_file: Path, log_file: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "celery_worker.celery", "beat", "--loglevel=info",
         "-s", str(schedule_file)],
        cwd=PROJECT_ROOT, env=env, stdout=log_file.open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
    )


class TestTwoBeats:
    def test_two_beats_send_each_slot_once_and_a_disabled_probe_stops(
        self, pg_app: Flask, postgres_url: str, clean_redis: redis.Redis, tmp_path: Path
    ) -> None:
        tenant = make_tenant()
        probes = [make_probe(tenant.id, "http://127.0.0.1:9/", interval_seconds=5, timeout_seconds=2)
                  for _ in range(20)]
        stopped = probes[0]
        env = {**os.environ, "ADMIN_MIT_DATABASE__URL": postgres_url}
        beats = [_start_beat(env, tmp_path / f"beat-{i}", tmp_path / f"beat-{i}.log") for i in range(2)]
        try:
            time.sleep(7)
            update_probe(tenant.id, stopped.id, {"enabled": False})
            disabled_at = scheduling.now_ms()
            time.sleep(7)
        finally:
            for beat in beats:
                os.killpg(beat.pid, signal.SIGTERM)
            for beat in beats:
                beat.wait(30)
        logs = "".join((tmp_path / f"beat-{i}.log").read_text() for i in range(2))
        assert "Traceback" not in logs

        runs = queued_runs(clean_redis)
        # No worker runs here, so each lease expires and is re-issued as a new attempt: a slot
        # may be sent again only as a higher attempt, never twice as the same one.
        issued = [(pid, run["scheduled_for"][str(pid)], run.get("attempts", {}).get(str(pid), 0))
                  for run in runs for pid in run["probe_ids"]]
        assert {run["task"] for run in runs} == {"app.tasks.network_probe_tasks.execute_batch_probes"}
        assert len(issued) == len(set(issued)), "a slot was sent twice as the same attempt"
        slots = sorted({(pid, slot) for pid, slot, _ in issued})
        per_probe: dict[int, list[int]] = {}
        for pid, slot in slots:
            per_probe.setdefault(pid, []).append(slot)
        for pid, probe_slots in per_probe.items():
            gaps = {b - a for a, b in zip(probe_slots, probe_slots[1:])}
            assert gaps <= {5000}, f"probe {pid} ran off its 5 s interval: {probe_slots}"
        running = [p for p in probes if p.id != stopped.id]
        assert all(len(per_probe.get(p.id, [])) >= 2 for p in running)  # ~14 s at a 5 s interval
        # Nothing is claimed after the change; a slot claimed ahead of time (the lookahead)
        # just before it is dropped by the worker, which finds the probe disabled.
        lookahead_ms = int(active_settings().probes.dispatch_lookahead_seconds * 1000)
        assert all(slot <= disabled_at + lookahead_ms for slot in per_probe.get(stopped.id, []))
        assert db.session.scalar(select(Probe.next_run_at).where(Probe.id == stopped.id)) is None
