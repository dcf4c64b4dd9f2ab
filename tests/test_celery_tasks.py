"""The Celery guide's tasks (docs/celery-guide.zh.md), on a real worker, real Redis and a real database.

Run as the guide says:
    pytest tests/test_celery_tasks.py -v
    pytest tests/test_celery_tasks.py::TestExecuteProbeTask -v
    pytest tests/test_celery_tasks.py --cov=app.tasks --cov=app.celery_app --cov=app.celery_utils
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from celery import signals
from celery.beat import ScheduleEntry
from celery.result import AsyncResult
from flask import Flask
from sqlalchemy import func, select, text, update

from app.celery_app import celery
from app.celery_utils import get_task_status
from app.core.config import active_settings, load_settings
from app.extensions import db
from app.models import Probe, ProbeLease, ProbeResult, TaskFailure
from app.services import probe_runs, run_losses, scheduling, status_cache
from app.services.probes import update_probe
from app.services.dispatch import dispatch_due
from app.services.failures import FailureInfo, register_failure_callback, unregister_failure_callback
from app.tasks.network_probe_tasks import (
    cleanup_old_results,
    execute_batch_probes,
    execute_probe,
    schedule_auto_probes,
)
from tests.conftest import make_probe, make_tenant, wait_for
from tests.targets import LoopbackTargets, free_port

pytestmark = pytest.mark.timeout(90)

SHANGHAI = ZoneInfo("Asia/Shanghai")


def results_of(probe_id: int) -> list[ProbeResult]:
    db.session.expire_all()
    return list(db.session.scalars(select(ProbeResult).where(ProbeResult.probe_id == probe_id)
                                   .order_by(ProbeResult.id)))


def _failure_of(task_id: str) -> TaskFailure | None:
    db.session.expire_all()
    return db.session.scalar(select(TaskFailure).where(TaskFailure.task_id == task_id))


class TestExecuteProbeTask:
    def test_guide_example_runs_the_probe_and_reports_success(
        self, pg_app: Flask, worker: object, targets: LoopbackTargets
    ) -> None:
        tenant = make_tenant()
        probe = make_probe(tenant.id, f"{targets.http_url}/ok")
        assert (tenant.id, probe.id) == (1, 1)  # the ids the guide's example uses

        # --- the guide's example, as written ---
        from app.tasks.network_probe_tasks import execute_probe

        # 异步执行
        task = execute_probe.apply_async(
            kwargs={
                'probe_id': 1,
                'tenant_id': 1,
                'probe_type': 'manual'
            }
        )

        # 获取任务 ID
        task_id = task.id

        # 获取任务状态
        from app.celery_utils import get_task_status
        status = get_task_status(task_id)
        # --- end of the example ---

        assert status["task_id"] == task_id
        assert status["state"] in {"PENDING", "STARTED", "SUCCESS"}
        task.get(timeout=20)
        status = get_task_status(task_id)
        assert status["state"] == "SUCCESS"
        assert status["ready"] is True and status["successful"] is True
        assert status["result"]["success"] is True and status["result"]["probe_id"] == 1
        assert status["result"]["status"] == "success"

        [stored] = results_of(1)
        assert stored.status == "success" and stored.status_code == 200
        assert stored.probe_type == "manual" and stored.run_key == f"manual:{task_id}"
        assert stored.connect_ms is not None and stored.processing_ms is not None

    def test_result_is_cached_as_latest_status(self, pg_app: Flask, worker: object,
                                               targets: LoopbackTargets) -> None:
        tenant = make_tenant()
        probe = make_probe(tenant.id, f"{targets.http_url}/status/503")
        execute_probe.apply_async(kwargs={"probe_id": probe.id, "tenant_id": tenant.id}).get(timeout=20)

        cached = status_cache.latest(tenant.id, [probe.id])[probe.id]
        assert cached["status"] == "failed" and cached["status_code"] == 503
        assert "503" in cached["error"]

    def test_down_target_is_a_stored_result_not_a_task_failure(self, pg_app: Flask, worker: object) -> None:
        tenant = make_tenant()
        probe = make_probe(tenant.id, f"127.0.0.1:{free_port()}", protocol="tcp")
        result = execute_probe.apply_async(kwargs={"probe_id": probe.id, "tenant_id": tenant.id}).get(timeout=20)

        assert result["success"] is True and result["status"] == "failed"
        assert "refused" in result["error"]
        assert [r.status for r in results_of(probe.id)] == ["failed"]
        assert db.session.scalar(select(func.count()).select_from(TaskFailure)) == 0

    @pytest.mark.parametrize("case", ["missing", "foreign"])
    def test_missing_or_foreign_probe_ends_at_once_with_a_clear_result(
        self, pg_app: Flask, worker: object, targets: LoopbackTargets, case: str
    ) -> None:
        owner, other = make_tenant(), make_tenant()
        probe = make_probe(owner.id, f"{targets.http_url}/ok")
        probe_id = probe.id if case == "foreign" else 999
        task = execute_probe.apply_async(kwargs={"probe_id": probe_id, "tenant_id": other.id})

        result = task.get(timeout=20)
        assert result == {"success": False, "probe_id": probe_id, "error": f"probe {probe_id} not found"}
        assert task.state == "SUCCESS"  # no retries for a permanent error
        assert results_of(probe.id) == []

    def test_unknown_probe_type_fails_without_retrying(self, pg_app: Flask, worker: object) -> None:
        tenant = make_tenant()
        task = execute_probe.apply_async(kwargs={"probe_id": 1, "tenant_id": tenant.id, "probe_type": "sometimes"})
        with pytest.raises(Exception, match="probe_type: must be one of manual, auto"):
            task.get(timeout=20)
        failure = wait_for(lambda: _failure_of(task.id), what="the failure row")
        assert failure.retries == 0 and "probe_type" in failure.error


class TestExecuteBatchProbesTask:
    def test_guide_example_runs_every_probe_concurrently(
        self, pg_app: Flask, worker: object, targets: LoopbackTargets
    ) -> None:
        tenant = make_tenant()
        make_probe(tenant.id, f"{targets.http_url}/ok")
        make_probe(tenant.id, f"{targets.http_url}/status/500")
        make_probe(tenant.id, targets.udp_echo, protocol="udp", spec={"body": "ping", "expect": "ping"})

        # --- the guide's example, as written ---
        from app.tasks.network_probe_tasks import execute_batch_probes

        result = execute_batch_probes.apply_async(
            kwargs={
                'probe_ids': [1, 2, 3],
                'tenant_id': 1,
                'probe_type': 'auto'
            }
        )
        # --- end of the example ---

        summary = result.get(timeout=30)
        assert summary["total"] == 3
        assert [entry["status"] for entry in summary["results"]] == ["success", "failed", "success"]
        db.session.expire_all()
        stored = db.session.scalars(select(ProbeResult).order_by(ProbeResult.probe_id)).all()
        assert [(r.probe_id, r.status, r.probe_type) for r in stored] == [
            (1, "success", "auto"), (2, "failed", "auto"), (3, "success", "auto")
        ]

    def test_a_dispatched_slot_delivered_twice_runs_and_is_stored_once(
        self, pg_app: Flask, worker: object, targets: LoopbackTargets, clean_redis: Any
    ) -> None:
        tenant = make_tenant()
        probe = make_probe(tenant.id, f"{targets.http_url}/ok")
        slot = _make_due(probe)
        targets.reset()

        report = dispatch_due()  # claims the slot, writes its lease, publishes the message
        assert (report.claimed, report.messages) == (1, 1)
        # The same message again, as Redis hands back a message whose worker died after running it.
        kwargs = {"probe_ids": [probe.id], "tenant_id": tenant.id, "probe_type": "auto",
                  "scheduled_for": {str(probe.id): slot}}
        again = execute_batch_probes.apply_async(kwargs=kwargs).get(timeout=20)

        [stored] = wait_for(lambda: results_of(probe.id), what="the scheduled result")
        assert stored.run_key == f"auto:{slot}" and stored.probe_type == "auto"
        assert stored.scheduled_for == datetime.fromtimestamp(slot / 1000, timezone.utc)
        assert again["started"] == 0 and again["skipped"] == 1
        assert targets.hits("/ok") == 1
        assert db.session.scalar(select(func.count()).select_from(ProbeLease)) == 0  # closed with the result

    def test_a_slot_due_before_the_next_tick_is_dispatched_now_and_starts_at_its_slot(
        self, pg_app: Flask, worker: object, targets: LoopbackTargets, clean_redis: Any
    ) -> None:
        tenant = make_tenant()
        probe = make_probe(tenant.id, f"{targets.http_url}/ok")
        now = scheduling.now_ms()
        slot = now + int(active_settings().probes.dispatch_lookahead_seconds * 1000) - 200
        db.session.execute(update(Probe).where(Probe.id == probe.id).values(next_run_at=slot))
        db.session.commit()

        assert dispatch_due(now).claimed == 1  # within the lookahead: this tick hands it out
        [stored] = wait_for(lambda: results_of(probe.id), what="the scheduled result")

        assert stored.run_key == f"auto:{slot}"
        assert stored.started_at >= datetime.fromtimestamp(slot / 1000, timezone.utc)  # not before its slot
        assert dispatch_due(now).claimed == 0  # the slot is not handed out twice

    def test_a_slot_claimed_before_its_probe_was_disabled_is_not_run_nor_counted_lost(
        self, pg_app: Flask, targets: LoopbackTargets, clean_redis: Any
    ) -> None:
        tenant = make_tenant()
        probe = make_probe(tenant.id, f"{targets.http_url}/ok")
        slot = _make_due(probe)
        targets.reset()
        dispatch_due()  # claimed and published; no worker has it yet
        update_probe(tenant.id, probe.id, {"enabled": False})

        report = probe_runs.start_scheduled(tenant.id, [probe.id], {str(probe.id): slot})

        assert (report["started"], report["skipped"]) == (0, 1)
        assert targets.hits("/ok") == 0 and results_of(probe.id) == []
        assert db.session.scalar(select(func.count()).select_from(ProbeLease)) == 0  # nothing left to count as lost

    def test_a_slot_nobody_started_before_its_next_slot_is_counted_as_expired(
        self, pg_app: Flask, targets: LoopbackTargets, clean_redis: Any
    ) -> None:
        tenant = make_tenant()
        probes = [make_probe(tenant.id, f"{targets.http_url}/ok") for _ in range(3)]
        slots = {probe.id: _make_due(probe) for probe in probes}
        targets.reset()
        dispatch_due()  # published, but no worker runs

        settings = active_settings().probes
        later = max(slots.values()) + 60_000 + int(settings.loss_grace_seconds * 1000) + 1
        dispatch_due(later)  # the sweep of a dispatcher running past the next slot and the grace

        totals = run_losses.totals(datetime.now(timezone.utc) - timedelta(minutes=1),
                                   datetime.now(timezone.utc) + timedelta(minutes=1), tenant.id)
        assert totals.lost_by_reason.get("expired") == 3
        # The late message, picked up now, runs nothing: its slots are no longer current.
        assert probe_runs.start_scheduled(tenant.id, [p.id for p in probes],
                                          {str(pid): slot for pid, slot in slots.items()})["started"] == 0
        assert targets.hits("/ok") == 0 and all(results_of(p.id) == [] for p in probes)


def _make_due(probe: Probe) -> int:
    """Put ``probe``'s next slot a moment in the past; returns the slot (epoch ms)."""
    slot = scheduling.now_ms() - 50
    db.session.execute(update(Probe).where(Probe.id == probe.id).values(next_run_at=slot))
    db.session.commit()
    return slot


class TestScheduleAutoProbesTask:
    def test_guide_example_schedules_new_and_unschedules_disabled_probes(
        self, pg_app: Flask, worker: object, targets: LoopbackTargets
    ) -> None:
        tenant = make_tenant()
        fresh = make_probe(tenant.id, f"{targets.http_url}/ok")
        stopped = make_probe(tenant.id, f"{targets.http_url}/ok")
        # Written behind the services' back: one without a slot, one disabled that kept its slot.
        db.session.execute(text("UPDATE probes SET next_run_at = NULL WHERE id = :id"), {"id": fresh.id})
        db.session.execute(text("UPDATE probes SET enabled = false WHERE id = :id"), {"id": stopped.id})
        db.session.commit()

        # --- the guide's example, as written ---
        from app.tasks.network_probe_tasks import schedule_auto_probes

        # 手动触发调度
        result = schedule_auto_probes.apply_async()
        # --- end of the example ---

        report = result.get(timeout=20)
        assert report["success"] is True
        assert report["scheduled"] == 1 and report["unscheduled"] == 1
        db.session.expire_all()
        assert db.session.get(Probe, fresh.id).next_run_at is not None
        assert db.session.get(Probe, stopped.id).next_run_at is None


class TestCleanupOldResultsTask:
    def test_guide_example_deletes_only_results_older_than_the_cutoff(self, pg_app: Flask, worker: object) -> None:
        tenant = make_tenant()
        probe = make_probe(tenant.id, "http://127.0.0.1:9/", auto_probe=False)
        now = datetime.now(timezone.utc)
        ages = [40, 35, 31, 29, 1]
        db.session.execute(ProbeResult.__table__.insert(), [
            {"tenant_id": tenant.id, "probe_id": probe.id, "run_key": f"manual:{i}", "probe_type": "manual",
             "status": "success", "bytes_read": 0, "started_at": now - timedelta(days=age),
             "created_at": now - timedelta(days=age)}
            for i, age in enumerate(ages)
        ])
        db.session.commit()

        # --- the guide's example, as written ---
        from app.tasks.network_probe_tasks import cleanup_old_results

        # 清理 30 天前的数据
        result = cleanup_old_results.apply_async(kwargs={'days': 30})
        # --- end of the example ---

        report = result.get(timeout=20)
        assert report["deleted"] == 3
        kept = sorted(round((now - r.created_at) / timedelta(days=1)) for r in results_of(probe.id))
        assert kept == [1, 29]

    def test_invalid_days_is_refused_without_deleting(self, pg_app: Flask, worker: object) -> None:
        with pytest.raises(Exception, match="days: must be a whole number of days"):
            cleanup_old_results.apply_async(kwargs={"days": 0}).get(timeout=20)


class TestRetryPolicy:
    def test_guide_retry_policy_is_the_shipped_default(self) -> None:
        shipped = load_settings(environ={}).probes
        assert (shipped.max_retries, shipped.retry_backoff_seconds, shipped.retry_backoff_max_seconds,
                shipped.retry_jitter) == (3, 60, 600, True)
        configured = active_settings().probes  # this session: 1 s base, no jitter (see conftest)
        for task in (execute_probe, execute_batch_probes, schedule_auto_probes, cleanup_old_results):
            assert task.max_retries == configured.max_retries
            assert task.retry_backoff == configured.retry_backoff_seconds
            assert task.retry_backoff_max == configured.retry_backoff_max_seconds
            assert task.retry_jitter is configured.retry_jitter
            assert task.autoretry_for == (Exception,)
            assert task.acks_late is True

    def test_database_fault_retries_the_write_with_growing_delays_then_is_recorded(
        self, app: Flask, worker: object, targets: LoopbackTargets
    ) -> None:
        tenant = make_tenant()
        probe = make_probe(tenant.id, f"{targets.http_url}/ok")
        targets.reset()
        _inject_insert_fault(db.engine.dialect.name)
        retries: list[tuple[int, float]] = []
        failures: list[FailureInfo] = []

        def on_publish(headers: dict[str, Any], **_: Any) -> None:
            if headers.get("task") == execute_probe.name and headers.get("retries"):
                eta = datetime.fromisoformat(headers["eta"])
                retries.append((headers["retries"], (eta - datetime.now(timezone.utc)).total_seconds()))

        signals.before_task_publish.connect(on_publish, weak=False)
        callback = register_failure_callback(failures.append)
        try:
            task = execute_probe.apply_async(kwargs={"probe_id": probe.id, "tenant_id": tenant.id})
            wait_for(lambda: AsyncResult(task.id, app=celery).state == "FAILURE", timeout=40, what="final failure")
            # on_failure runs after the state is stored: wait for its callback before unregistering it.
            wait_for(lambda: failures, what="the failure callback")
        finally:
            signals.before_task_publish.disconnect(on_publish)
            unregister_failure_callback(callback)
            _remove_insert_fault(db.engine.dialect.name)

        assert [n for n, _ in retries] == [1, 2, 3]
        assert [round(delay) for _, delay in retries] == [1, 2, 4]
        assert targets.hits("/ok") == 1  # the probe ran once; the retries re-ran only the write
        assert results_of(probe.id) == []
        failure = _failure_of(task.id)  # committed before the callbacks are called
        assert failure is not None
        assert failure.retries == 3 and failure.tenant_id == tenant.id
        assert "injected fault" in failure.error and failure.kwargs["probe_id"] == probe.id
        [kept] = failure.kwargs["measured"]  # the measured result is kept with the failure
        assert kept["row"]["status"] == "success" and kept["row"]["status_code"] == 200
        assert [f.task_id for f in failures] == [task.id]
        assert get_task_status(task.id)["state"] == "FAILURE"


def _inject_insert_fault(dialect: str) -> None:
    """A real database error on every insert into probe_results."""
    if dialect == "postgresql":
        db.session.execute(text(
            "CREATE FUNCTION inject_fault() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'injected fault'; END $$"
        ))
        db.session.execute(text(
            "CREATE TRIGGER inject_fault BEFORE INSERT ON probe_results FOR EACH ROW EXECUTE FUNCTION inject_fault()"
        ))
    else:
        db.session.execute(text(
            "CREATE TRIGGER inject_fault BEFORE INSERT ON probe_results BEGIN SELECT RAISE(ABORT, 'injected fault'); END"
        ))
    db.session.commit()


def _remove_insert_fault(dialect: str) -> None:
    db.session.rollback()
    db.session.execute(text("DROP TRIGGER inject_fault" + (" ON probe_results" if dialect == "postgresql" else "")))
    if dialect == "postgresql":
        db.session.execute(text("DROP FUNCTION inject_fault()"))
    db.session.commit()


class TestPriority:
    def test_priority_9_runs_before_earlier_priority_0_tasks(
        self, pg_app: Flask, worker: object, targets: LoopbackTargets
    ) -> None:
        tenant = make_tenant()
        blocker = make_probe(tenant.id, f"{targets.http_url}/hold", auto_probe=False, timeout_seconds=30)
        low = [make_probe(tenant.id, f"{targets.http_url}/ok", auto_probe=False) for _ in range(4)]
        urgent = make_probe(tenant.id, f"{targets.http_url}/ok", auto_probe=False)
        targets.reset()
        try:
            held = execute_probe.apply_async(kwargs={"probe_id": blocker.id, "tenant_id": tenant.id})
            wait_for(lambda: targets.hits("/hold") == 1, what="the worker to be busy")
            tasks = [execute_probe.apply_async(kwargs={"probe_id": p.id, "tenant_id": tenant.id}, priority=0)
                     for p in low]
            # The guide's call, with this test's ids.
            tasks.append(execute_probe.apply_async(
                kwargs={'probe_id': urgent.id, 'tenant_id': tenant.id},
                priority=9  # 0-10，数字越大优先级越高
            ))
        finally:
            targets.release_hold()
        held.get(timeout=30)
        for task in tasks:
            task.get(timeout=30)

        db.session.expire_all()
        order = list(db.session.scalars(
            select(ProbeResult.probe_id).where(ProbeResult.probe_id != blocker.id).order_by(ProbeResult.id)
        ))
        assert order[0] == urgent.id
        assert order[1:] == [p.id for p in low]


class TestBeatSchedule:
    def _next_due(self, name: str, now: datetime) -> datetime:
        """When beat would next send ``name`` if it had last sent it at ``now`` (to the second)."""
        entry = ScheduleEntry(app=celery, name=name, **celery.conf.beat_schedule[name])
        due = now + entry.schedule.remaining_estimate(now)
        return (due + timedelta(milliseconds=500)).replace(microsecond=0)

    def test_guide_entries_are_configured(self) -> None:
        schedule = celery.conf.beat_schedule
        assert schedule["schedule-auto-probes"]["task"] == "app.tasks.network_probe_tasks.schedule_auto_probes"
        assert schedule["schedule-auto-probes"]["schedule"] == 60.0
        assert schedule["cleanup-old-probe-results"]["kwargs"] == {"days": 30}
        assert schedule["deep-cleanup-probe-results"]["kwargs"] == {"days": 90}
        assert celery.conf.timezone == "Asia/Shanghai"

    def test_next_due_times_in_asia_shanghai(self) -> None:
        now = datetime.now(timezone.utc)
        auto = self._next_due("schedule-auto-probes", now)
        assert timedelta(seconds=59) <= auto - now <= timedelta(seconds=61)

        daily = self._next_due("cleanup-old-probe-results", now).astimezone(SHANGHAI)
        assert (daily.hour, daily.minute) == (2, 0)
        assert timedelta(0) < daily - now <= timedelta(days=1)

        weekly = self._next_due("deep-cleanup-probe-results", now).astimezone(SHANGHAI)
        assert (weekly.weekday(), weekly.hour, weekly.minute) == (6, 3, 0)  # Sunday 03:00
        assert timedelta(0) < weekly - now <= timedelta(days=7)


    def test_beat_stops_cleanly_when_the_stop_signals_exit_is_lost(self, app: Flask, tmp_path: Any) -> None:
        """Celery's SIGTERM handler closes the schedule, then raises SystemExit; a signal that lands in
        a weak-reference callback loses that exception, and beat must still end without a traceback."""
        import threading

        from app.beat_scheduler import ProbeDispatchScheduler, _BeatService

        service = _BeatService(celery, schedule_filename=str(tmp_path / "celerybeat-schedule"),
                               scheduler_cls=ProbeDispatchScheduler)
        raised: list[BaseException] = []

        def run() -> None:
            try:
                service.start()
            except BaseException as exc:  # noqa: BLE001 - the assertion below shows it
                raised.append(exc)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        wait_for(lambda: service.scheduler._next_dispatch > 0, what="beat ticking")
        service.sync()  # what the handler does before its SystemExit, which is lost here
        thread.join(10)
        assert not thread.is_alive() and raised == []
        assert service.scheduler._closed


class TestRouting:
    @pytest.mark.parametrize("task_name, queue", [
        ("app.tasks.network_probe_tasks.execute_probe", "network_probes"),
        ("app.tasks.network_probe_tasks.cleanup_old_results", "network_probes"),
        ("app.tasks.alert_tasks.evaluate_rules", "alerts"),
        ("app.tasks.ansible_tasks.run_execution", "ansible"),
        ("app.tasks.ansible_tasks.ansible_housekeeping", "ansible"),
        ("app.tasks.other.anything", "celery"),
    ])
    def test_tasks_are_routed_by_module(self, task_name: str, queue: str) -> None:
        route = celery.amqp.router.route({}, task_name)
        assert route["queue"].name == queue

    def test_published_probe_task_lands_in_network_probes(self, clean_redis: Any) -> None:
        from app.services.dispatch import queue_length

        execute_probe.apply_async(kwargs={"probe_id": 1, "tenant_id": 1})
        assert queue_length("network_probes") == 1
        assert queue_length("celery") == 0
