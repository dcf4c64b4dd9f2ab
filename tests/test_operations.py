"""app/services/operations.py: task ownership, tenant-filtered task lists and queue lengths,
against the real Redis and, where a task has to run, a real worker."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from flask import Flask

from app.celery_app import QUEUES, celery
from app.celery_utils import get_scheduled_tasks, get_task_status, purge_queue, revoke_task
from app.services.dispatch import queue_length
from app.services.errors import NotFoundError
from app.services.operations import (
    active_tasks,
    queue_lengths,
    require_visible,
    scheduled_tasks,
    task_tenant,
    task_visible_to,
)
from app.tasks.network_probe_tasks import (
    cleanup_old_results,
    execute_batch_probes,
    execute_probe,
    schedule_auto_probes,
)
from tests.conftest import make_probe, make_tenant, wait_for
from tests.targets import LoopbackTargets

pytestmark = pytest.mark.timeout(90)

TENANT_A, TENANT_B = 7, 8


def _by_queue() -> dict[str, dict[str, Any]]:
    return {entry["queue"]: entry for entry in queue_lengths()}


def _waiting_by_priority(entry: dict[str, Any]) -> dict[int, int]:
    return {bucket["priority"]: bucket["waiting"] for bucket in entry["by_priority"] if bucket["waiting"]}


class TestOwnership:
    def test_a_task_belongs_to_the_tenant_it_was_published_for(self, clean_redis: redis.Redis) -> None:
        published = [
            execute_probe.apply_async(kwargs={"probe_id": 1, "tenant_id": TENANT_A}),
            execute_probe.apply_async(args=[1, TENANT_A]),
            execute_probe.apply_async(args=[1], kwargs={"tenant_id": TENANT_A, "probe_type": "manual"}),
            execute_batch_probes.apply_async(args=[[1, 2], TENANT_A, "manual"]),
            # The scheduler's way: by name, with kwargs.
            celery.send_task(execute_batch_probes.name, kwargs={"probe_ids": [1], "tenant_id": TENANT_A}),
        ]

        for task in published:
            assert task_tenant(task.id) == TENANT_A
            assert task_visible_to(task.id, TENANT_A) is True
            assert task_visible_to(task.id, TENANT_B) is False
            assert task_visible_to(task.id, None) is True
            assert get_task_status(task.id)["exists"] is True
            require_visible(task.id, TENANT_A)
            with pytest.raises(NotFoundError):
                require_visible(task.id, TENANT_B)

    def test_a_task_without_a_tenant_is_seen_only_by_the_platform(self, clean_redis: redis.Redis) -> None:
        for task in (schedule_auto_probes.apply_async(), cleanup_old_results.apply_async(args=[30])):
            assert task_tenant(task.id) is None
            assert task_visible_to(task.id, None) is True
            assert task_visible_to(task.id, TENANT_A) is False

    def test_a_never_submitted_id_is_visible_to_nobody(self, clean_redis: redis.Redis) -> None:
        assert task_tenant("task-id-here") is None
        assert task_visible_to("task-id-here", TENANT_A) is False
        assert task_visible_to("task-id-here", None) is False
        with pytest.raises(NotFoundError, match="task task-id-here not found"):
            require_visible("task-id-here", None)

    def test_a_call_that_does_not_fit_is_submitted_without_a_tenant(self, clean_redis: redis.Redis) -> None:
        unregistered = celery.send_task("app.tasks.not_here", args=[1, TENANT_A])
        too_many_args = celery.send_task(execute_probe.name, args=[1, TENANT_A, "manual", None, "extra"])
        not_an_id = execute_probe.apply_async(kwargs={"probe_id": 1, "tenant_id": str(TENANT_A)})

        for task in (unregistered, too_many_args, not_an_id):
            assert get_task_status(task.id)["exists"] is True
            assert task_tenant(task.id) is None
            assert task_visible_to(task.id, TENANT_A) is False and task_visible_to(task.id, None) is True

    def test_a_marker_written_before_tenants_were_recorded_still_counts_as_submitted(
        self, clean_redis: redis.Redis
    ) -> None:
        celery.backend.client.set("admin_mit:task-submitted:old-task", execute_probe.name)

        assert get_task_status("old-task")["exists"] is True
        assert task_visible_to("old-task", None) is True and task_visible_to("old-task", TENANT_A) is False


class TestQueueLengths:
    def test_messages_are_counted_in_the_bucket_of_their_priority(self, clean_redis: redis.Redis) -> None:
        for level in (10, 5, 5, None, 1, 0, 0):  # None: the default priority, 5
            execute_probe.apply_async(args=[1, TENANT_A], priority=level)
        cleanup_old_results.apply_async(args=[30], queue="celery", priority=9)
        execute_probe.apply_async(args=[1, TENANT_A], queue="alerts", priority=0)

        lengths = _by_queue()

        assert list(lengths) == list(QUEUES)
        probes = lengths["network_probes"]
        assert probes["waiting"] == 7 == queue_length("network_probes")
        assert _waiting_by_priority(probes) == {10: 1, 5: 3, 1: 3}  # 0 and 1 share the last bucket
        assert [bucket["priority"] for bucket in probes["by_priority"]] == list(range(10, 0, -1))
        assert probes["by_priority"][0]["levels"] == [10] and probes["by_priority"][-1]["levels"] == [1, 0]
        assert _waiting_by_priority(lengths["celery"]) == {9: 1} and lengths["celery"]["waiting"] == 1
        assert _waiting_by_priority(lengths["alerts"]) == {1: 1} and lengths["alerts"]["waiting"] == 1
        assert lengths["ansible"]["waiting"] == 0
        assert all(entry["unacked"] == 0 for entry in lengths.values())

    def test_purge_empties_the_counts(self, clean_redis: redis.Redis) -> None:
        for level in (10, 3, 0):
            execute_probe.apply_async(args=[1, TENANT_A], priority=level)
            execute_probe.apply_async(args=[1, TENANT_A], queue="alerts", priority=level)

        purge_queue("network_probes")
        after_one = _by_queue()
        purge_queue()
        after_all = _by_queue()

        assert after_one["network_probes"]["waiting"] == 0 and after_one["alerts"]["waiting"] == 3
        for entry in after_all.values():
            assert entry["waiting"] == 0 and _waiting_by_priority(entry) == {}


class TestWithLiveWorker:
    def test_a_tenant_sees_only_its_own_running_and_scheduled_tasks(
        self, pg_app: Flask, worker: object, targets: LoopbackTargets
    ) -> None:
        tenant_a, tenant_b = make_tenant(), make_tenant()
        held = make_probe(tenant_a.id, f"{targets.http_url}/hold", auto_probe=False, timeout_seconds=30)
        quick_a = make_probe(tenant_a.id, f"{targets.http_url}/ok", auto_probe=False)
        quick_b = make_probe(tenant_b.id, f"{targets.http_url}/ok", auto_probe=False)
        targets.reset()
        try:
            later_a = execute_probe.apply_async(args=[quick_a.id, tenant_a.id], countdown=60)
            later_b = execute_probe.apply_async(kwargs={"probe_id": quick_b.id, "tenant_id": tenant_b.id},
                                                countdown=60)
            wait_for(lambda: len(get_scheduled_tasks()) == 2, what="the worker to hold both ETA tasks")
            running = execute_probe.apply_async(args=[held.id, tenant_a.id])
            wait_for(lambda: targets.hits("/hold") == 1, what="the held probe to start")
            queued = execute_probe.apply_async(kwargs={"probe_id": quick_b.id, "tenant_id": tenant_b.id})

            active = {tenant: [t["task_id"] for t in active_tasks(tenant)] for tenant in (tenant_a.id, tenant_b.id)}
            scheduled = {tenant: [t["task_id"] for t in scheduled_tasks(tenant)]
                         for tenant in (tenant_a.id, tenant_b.id)}
            platform_active, platform_scheduled = active_tasks(None), scheduled_tasks(None)
            lengths = _by_queue()
        finally:
            targets.release_hold()

        assert active == {tenant_a.id: [running.id], tenant_b.id: []}
        assert scheduled == {tenant_a.id: [later_a.id], tenant_b.id: [later_b.id]}
        assert [t["task_id"] for t in platform_active] == [running.id]
        assert platform_active[0]["task_name"] == execute_probe.name and platform_active[0]["worker"]
        assert {t["task_id"] for t in platform_scheduled} == {later_a.id, later_b.id}
        # One slot: the running task and the two ETA tasks are the worker's; the last one waits.
        assert lengths["network_probes"]["waiting"] == 1 and lengths["network_probes"]["unacked"] == 3
        assert _waiting_by_priority(lengths["network_probes"]) == {5: 1}
        assert sum(entry["unacked"] for entry in lengths.values()) == 3

        running.get(timeout=30)
        queued.get(timeout=30)
        assert revoke_task(later_a.id)["revoked"] and revoke_task(later_b.id)["revoked"]
