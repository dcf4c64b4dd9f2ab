"""app/celery_utils.py: the guide's operations functions, with no worker and with a live one."""

from __future__ import annotations

import subprocess

import pytest
import redis
from flask import Flask

from app import celery_utils
from app.celery_utils import (
    get_task_status,
    purge_queue,
    revoke_task,
)
from app.services.dispatch import queue_length
from app.tasks.network_probe_tasks import cleanup_old_results, execute_probe
from tests.conftest import make_probe, make_tenant, wait_for
from tests.targets import LoopbackTargets

pytestmark = pytest.mark.timeout(90)


class TestWithoutWorkers:
    def test_inspection_answers_empty_instead_of_failing(self, clean_redis: redis.Redis) -> None:
        assert celery_utils.get_active_tasks() == []
        assert celery_utils.get_scheduled_tasks() == []
        assert celery_utils.get_worker_stats() == {"total_workers": 0, "workers": []}

    def test_never_submitted_id_is_told_apart_from_a_queued_one(self, clean_redis: redis.Redis) -> None:
        queued = execute_probe.apply_async(kwargs={"probe_id": 1, "tenant_id": 1})

        unknown = get_task_status("task-id-here")
        waiting = get_task_status(queued.id)

        assert unknown == {"task_id": "task-id-here", "state": "UNKNOWN", "ready": False,
                           "successful": False, "result": None, "exists": False}
        assert waiting["state"] == "PENDING" and waiting["exists"] is True
        assert revoke_task("task-id-here")["success"] is False

    def test_guide_purge_examples(self, clean_redis: redis.Redis) -> None:
        for _ in range(3):
            execute_probe.apply_async(kwargs={"probe_id": 1, "tenant_id": 1}, priority=9)
        cleanup_old_results.apply_async(kwargs={"days": 30})
        execute_probe.apply_async(kwargs={"probe_id": 1, "tenant_id": 1}, queue="alerts")

        # 清空指定队列
        result = purge_queue('network_probes')
        assert result["success"] is True and result["queues"] == {"network_probes": 4}
        assert queue_length("network_probes") == 0 and queue_length("alerts") == 1

        # 清空所有队列
        result = purge_queue()
        assert result["purged"] == 1 and queue_length("alerts") == 0

    def test_unknown_queue_is_refused(self, clean_redis: redis.Redis) -> None:
        result = purge_queue("network-probes")
        assert result["success"] is False and "unknown queue" in result["error"]


class TestWithLiveWorker:
    def test_guide_monitoring_examples_see_the_running_task(
        self, pg_app: Flask, worker: object, targets: LoopbackTargets, capsys: pytest.CaptureFixture[str]
    ) -> None:
        tenant = make_tenant()
        held = make_probe(tenant.id, f"{targets.http_url}/hold", auto_probe=False, timeout_seconds=30)
        targets.reset()
        try:
            later = execute_probe.apply_async(kwargs={"probe_id": held.id, "tenant_id": tenant.id}, countdown=60)
            wait_for(celery_utils.get_scheduled_tasks)  # the worker holds it until its ETA
            running = execute_probe.apply_async(kwargs={"probe_id": held.id, "tenant_id": tenant.id})
            wait_for(lambda: targets.hits("/hold") == 1)

            # --- the guide's examples, as written ---
            from app.celery_utils import get_active_tasks

            tasks = get_active_tasks()
            for task in tasks:
                print(f"Worker: {task['worker']}, Task: {task['task_name']}")

            from app.celery_utils import get_scheduled_tasks

            tasks = get_scheduled_tasks()
            for task in tasks:
                print(f"Task: {task['task_name']}, ETA: {task['eta']}")

            from app.celery_utils import get_worker_stats

            stats = get_worker_stats()
            print(f"Total workers: {stats['total_workers']}")
            for worker in stats['workers']:
                print(f"Worker: {worker['name']}, Concurrency: {worker['max_concurrency']}")
            # --- end of the examples ---

            active = get_active_tasks()
            scheduled = get_scheduled_tasks()
        finally:
            targets.release_hold()

        assert [t["task_id"] for t in active] == [running.id]
        assert active[0]["task_name"] == "app.tasks.network_probe_tasks.execute_probe"
        assert [t["task_id"] for t in scheduled] == [later.id] and scheduled[0]["eta"]
        assert stats["total_workers"] == 1
        assert stats["workers"][0]["max_concurrency"] == 1 and stats["workers"][0]["active_tasks"] == 1
        out = capsys.readouterr().out
        assert "Task: app.tasks.network_probe_tasks.execute_probe, ETA: " in out
        assert f"Worker: {active[0]['worker']}, Task: app.tasks.network_probe_tasks.execute_probe" in out
        assert "Total workers: 1" in out and ", Concurrency: 1" in out
        running.get(timeout=30)
        assert revoke_task(later.id)["revoked"] is True

    def test_revoked_queued_task_never_runs(
        self, pg_app: Flask, worker: object, targets: LoopbackTargets
    ) -> None:
        tenant = make_tenant()
        held = make_probe(tenant.id, f"{targets.http_url}/hold", auto_probe=False, timeout_seconds=30)
        other = make_probe(tenant.id, f"{targets.http_url}/ok", auto_probe=False)
        targets.reset()
        try:
            first = execute_probe.apply_async(kwargs={"probe_id": held.id, "tenant_id": tenant.id})
            wait_for(lambda: targets.hits("/hold") == 1)
            queued = execute_probe.apply_async(kwargs={"probe_id": other.id, "tenant_id": tenant.id})

            # 撤销任务（不终止正在执行的任务）
            result = revoke_task(queued.id, terminate=False)
        finally:
            targets.release_hold()

        assert result == {"task_id": queued.id, "success": True, "revoked": True, "terminated": False}
        first.get(timeout=30)
        wait_for(lambda: get_task_status(queued.id)["state"] == "REVOKED")
        assert targets.hits("/ok") == 0


def test_revoke_with_terminate_kills_the_running_task(
    prefork_worker: subprocess.Popen[bytes], targets: LoopbackTargets
) -> None:
    tenant = make_tenant()
    held = make_probe(tenant.id, f"{targets.http_url}/hold", auto_probe=False, timeout_seconds=30)
    targets.reset()
    try:
        running = execute_probe.apply_async(kwargs={"probe_id": held.id, "tenant_id": tenant.id})
        wait_for(lambda: targets.hits("/hold") == 1, what="the task to start")

        # 强制终止正在执行的任务
        result = revoke_task(running.id, terminate=True)

        wait_for(lambda: get_task_status(running.id)["state"] == "REVOKED", what="the task to be terminated")
    finally:
        targets.release_hold()
    assert result == {"task_id": running.id, "success": True, "revoked": True, "terminated": True}
    assert celery_utils.get_active_tasks() == []
