"""Operations over HTTP as an operator sees them: workers and their load, queue lengths per
priority, purge, running and scheduled tasks per tenant, task status and revoke across tenants,
liveness and readiness, and the JSON errors of unknown paths and methods.

Requests go through Flask's test client into the real application, database and Redis. Tests that
need a task to run use a real worker (the in-process ``worker`` fixture, or a prefork worker process
where a running task has to be killed) held busy by the loopback ``/hold`` target.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import redis
from flask import Flask
from werkzeug.test import TestResponse

from app import create_app
from app.celery_app import QUEUES, celery_init_app
from app.core.config import activate, load_settings
from app.extensions import db
from app.services.dispatch import queue_length
from app.tasks.network_probe_tasks import execute_probe
from tests.api import Api, Caller, assert_error
from tests.conftest import make_tenant, wait_for
from tests.targets import LoopbackTargets, free_port

pytestmark = pytest.mark.timeout(120)

API = "/api/v1"
UNREACHABLE = "http://127.0.0.1:9/"  # validated, never run: the tests without a worker only queue runs
EXECUTE_PROBE = "app.tasks.network_probe_tasks.execute_probe"
WORKER_KEYS = {"name", "max_concurrency", "pool", "processes", "active_tasks", "processed", "pid", "uptime",
               "prefetch_count"}
ACTIVE_KEYS = {"worker", "task_id", "task_name", "args", "kwargs", "time_start", "queue"}
SCHEDULED_KEYS = {"worker", "task_id", "task_name", "args", "kwargs", "eta", "priority"}
# Every Redis bucket of a queue, in the order workers read them: (user priority, levels published into it).
BUCKETS = [(10, [10]), (9, [9]), (8, [8]), (7, [7]), (6, [6]), (5, [5]), (4, [4]), (3, [3]), (2, [2]), (1, [1, 0])]


# --- helpers ---------------------------------------------------------------------------------

def ok(response: TestResponse, status: int = 200) -> Any:
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True))
    assert response.mimetype == "application/json"
    return response.json


def tenant_callers(api: Api, *roles: str) -> tuple[int, list[Caller]]:
    """A fresh tenant and one new user logged in to it per role."""
    tenant = make_tenant()
    return tenant.id, [api.as_role(tenant.id, role) for role in roles]


def create_probe(caller: Caller, target: str = UNREACHABLE, **fields: Any) -> dict[str, Any]:
    body = {"name": f"probe-{uuid.uuid4().hex[:8]}", "protocol": "http", "target": target, "auto_probe": False,
            **fields}
    return ok(caller.post(f"{API}/probes", json=body), 201)


def run(caller: Caller, probe_id: int, priority: int | None = None) -> str:
    query = {} if priority is None else {"priority": priority}
    return ok(caller.post(f"{API}/probes/{probe_id}/run", query_string=query), 202)["task_id"]


def task_state(caller: Caller, task_id: str) -> dict[str, Any]:
    return ok(caller.get(f"{API}/tasks/{task_id}"))


def wait_state(caller: Caller, task_id: str, state: str, timeout: float = 30.0) -> dict[str, Any]:
    return wait_for(lambda: (status := task_state(caller, task_id))["state"] == state and status,
                    timeout=timeout, what=f"task {task_id} to be {state}")


def queues(caller: Caller) -> dict[str, dict[str, Any]]:
    items = ok(caller.get(f"{API}/ops/queues"))["items"]
    assert [entry["queue"] for entry in items] == list(QUEUES)
    return {entry["queue"]: entry for entry in items}


def waiting_by_priority(entry: dict[str, Any]) -> dict[int, int]:
    return {bucket["priority"]: bucket["waiting"] for bucket in entry["by_priority"] if bucket["waiting"]}


def active_ids(caller: Caller) -> list[str]:
    items = ok(caller.get(f"{API}/ops/tasks/active"))["items"]
    assert all(set(item) == ACTIVE_KEYS for item in items), items
    return [item["task_id"] for item in items]


def scheduled_ids(caller: Caller) -> list[str]:
    items = ok(caller.get(f"{API}/ops/tasks/scheduled"))["items"]
    assert all(set(item) == SCHEDULED_KEYS for item in items), items
    return [item["task_id"] for item in items]


def workers(caller: Caller) -> dict[str, Any]:
    return ok(caller.get(f"{API}/ops/workers"))


def platform_admin_with_token(api: Api) -> tuple[Caller, Caller]:
    """A platform administrator who is also admin of a tenant: their password login to that tenant,
    and an admin API token they created there."""
    tenant = make_tenant()
    username = f"root-{uuid.uuid4().hex[:8]}"
    api.user(tenant.id, "admin", username, platform_admin=True)
    login = api.caller(username, tenant.id)
    created = ok(login.post(f"{API}/tokens", json={"name": "ops-script", "role": "admin"}), 201)
    assert created["role"] == "admin"
    return login, Caller(api.client, created["token"], tenant_id=tenant.id)


# --- workers ---------------------------------------------------------------------------------

class TestWorkers:
    def test_no_worker_answers_zero_workers(self, api: Api) -> None:
        assert workers(api.platform_admin()) == {"total_workers": 0, "workers": []}

    def test_only_a_platform_admins_password_login_sees_platform_operations(self, api: Api) -> None:
        _, (admin, operator) = tenant_callers(api, "admin", "operator")
        login, token = platform_admin_with_token(api)

        for caller in (admin, operator, token):
            assert_error(caller.get(f"{API}/ops/workers"), 403, "forbidden")
            assert_error(caller.get(f"{API}/ops/queues"), 403, "forbidden")
            assert_error(caller.post(f"{API}/ops/queues/all/purge"), 403, "forbidden")
            assert_error(caller.post(f"{API}/ops/queues/network_probes/purge"), 403, "forbidden")
        # The same user with a password acts platform-wide, even when logged in to a tenant.
        assert workers(login)["total_workers"] == 0
        assert set(queues(login)) == set(QUEUES)

    def test_without_credentials_the_operations_answer_401(self, api: Api) -> None:
        for path in ("/ops/workers", "/ops/queues", "/ops/tasks/active", "/ops/tasks/scheduled"):
            response = api.client.get(f"{API}{path}")
            assert_error(response, 401)
            assert response.headers["WWW-Authenticate"] == "Bearer"
        assert_error(api.client.post(f"{API}/ops/queues/all/purge"), 401)

    def test_a_busy_worker_reports_its_concurrency_and_load(
        self, pg_api: Api, worker: object, targets: LoopbackTargets
    ) -> None:
        _, (op,) = tenant_callers(pg_api, "operator")
        root = pg_api.platform_admin()
        held = create_probe(op, f"{targets.http_url}/hold", timeout_seconds=30)
        targets.reset()
        try:
            task_id = run(op, held["id"])
            wait_for(lambda: targets.hits("/hold") == 1, what="the worker to hold the probe")
            busy = workers(root)
        finally:
            targets.release_hold()

        assert busy["total_workers"] == 1 and len(busy["workers"]) == 1
        [entry] = busy["workers"]
        assert set(entry) == WORKER_KEYS
        assert entry["name"] and entry["max_concurrency"] == 1 and entry["active_tasks"] == 1
        assert entry["pid"] == os.getpid()  # the in-process worker

        assert wait_state(op, task_id, "SUCCESS")["successful"] is True
        idle = wait_for(lambda: (stats := workers(root))["workers"][0]["active_tasks"] == 0 and stats,
                        what="the worker to report no running task")
        assert idle["total_workers"] == 1
        assert idle["workers"][0]["name"] == entry["name"] and idle["workers"][0]["max_concurrency"] == 1
        assert idle["workers"][0]["processed"] >= 1


# --- queues ----------------------------------------------------------------------------------

class TestQueues:
    def test_waiting_runs_are_counted_per_queue_and_priority_bucket(self, api: Api) -> None:
        _, (op,) = tenant_callers(api, "operator")
        root = api.platform_admin()
        probe = create_probe(op)["id"]

        for level in (10, 7, 7, None, 5, 3, 1, 0, 0):  # None: the default priority, 5
            run(op, probe, level)
        ok(op.post(f"{API}/probes/run", json={"probe_ids": [probe], "priority": 9}), 202)
        # Not reachable through the API: a task on another queue, to see queues counted apart.
        execute_probe.apply_async(kwargs={"probe_id": probe, "tenant_id": op.tenant_id}, queue="alerts", priority=8)

        lengths = queues(root)

        probes = lengths["network_probes"]
        assert probes["waiting"] == 10 == queue_length("network_probes")
        assert probes["unacked"] == 0
        assert waiting_by_priority(probes) == {10: 1, 9: 1, 7: 2, 5: 2, 3: 1, 1: 3}  # 0 and 1 share a bucket
        assert [(bucket["priority"], bucket["levels"]) for bucket in probes["by_priority"]] == BUCKETS
        assert sum(bucket["waiting"] for bucket in probes["by_priority"]) == probes["waiting"]
        assert lengths["alerts"]["waiting"] == 1 and waiting_by_priority(lengths["alerts"]) == {8: 1}
        assert lengths["ansible"]["waiting"] == 0 and lengths["celery"]["waiting"] == 0
        assert sum(entry["waiting"] for entry in lengths.values()) == 11
        for entry in lengths.values():
            assert set(entry) == {"queue", "waiting", "unacked", "by_priority"}
            assert [(bucket["priority"], bucket["levels"]) for bucket in entry["by_priority"]] == BUCKETS

    def test_purge_one_queue_then_all(self, api: Api) -> None:
        _, (op,) = tenant_callers(api, "operator")
        root = api.platform_admin()
        probe = create_probe(op)["id"]
        for level in (10, 4, 0):
            run(op, probe, level)
        for level in (6, 6):
            execute_probe.apply_async(kwargs={"probe_id": probe, "tenant_id": op.tenant_id}, queue="alerts",
                                      priority=level)

        one = ok(root.post(f"{API}/ops/queues/network_probes/purge"))
        after_one = queues(root)
        everything = ok(root.post(f"{API}/ops/queues/all/purge"))
        after_all = queues(root)
        again = ok(root.post(f"{API}/ops/queues/all/purge"))

        assert one == {"success": True, "queues": {"network_probes": 3}, "purged": 3}
        assert after_one["network_probes"]["waiting"] == 0 and waiting_by_priority(after_one["network_probes"]) == {}
        assert after_one["alerts"]["waiting"] == 2
        assert everything == {"success": True, "queues": {"network_probes": 0, "alerts": 2, "ansible": 0,
                                                           "celery": 0}, "purged": 2}
        assert all(entry["waiting"] == 0 and waiting_by_priority(entry) == {} for entry in after_all.values())
        assert again["purged"] == 0
        run(op, probe, 2)  # the queue takes new runs after a purge
        assert waiting_by_priority(queues(root)["network_probes"]) == {2: 1}

    def test_an_unknown_queue_is_refused_and_nothing_is_purged(self, api: Api) -> None:
        _, (op,) = tenant_callers(api, "operator")
        root = api.platform_admin()
        run(op, create_probe(op)["id"])

        for name in ("network-probes", "ALL", "nope"):
            response = root.post(f"{API}/ops/queues/{name}/purge")
            assert response.status_code in (404, 422), response.get_data(as_text=True)
            assert_error(response, response.status_code)
            if response.status_code == 422:
                assert_error(response, 422, "invalid_input", "queue")
        assert queues(root)["network_probes"]["waiting"] == 1


# --- running and scheduled tasks --------------------------------------------------------------

class TestTaskLists:
    def test_without_a_worker_the_lists_are_empty(self, api: Api) -> None:
        _, (admin,) = tenant_callers(api, "admin")
        root = api.platform_admin()
        for caller in (admin, root):
            assert ok(caller.get(f"{API}/ops/tasks/active")) == {"items": []}
            assert ok(caller.get(f"{API}/ops/tasks/scheduled")) == {"items": []}

    def test_below_admin_the_lists_are_forbidden(self, api: Api) -> None:
        _, callers = tenant_callers(api, "operator", "viewer")
        root_without_password = platform_admin_with_token(api)[1]
        for caller in callers:
            assert_error(caller.get(f"{API}/ops/tasks/active"), 403, "forbidden")
            assert_error(caller.get(f"{API}/ops/tasks/scheduled"), 403, "forbidden")
        # An admin token of a platform admin acts as a tenant admin: allowed, tenant-scoped.
        assert ok(root_without_password.get(f"{API}/ops/tasks/active")) == {"items": []}

    def test_each_tenant_sees_its_own_running_and_scheduled_tasks(
        self, pg_api: Api, worker: object, targets: LoopbackTargets
    ) -> None:
        tenant_a, (admin_a, op_a) = tenant_callers(pg_api, "admin", "operator")
        tenant_b, (admin_b, op_b) = tenant_callers(pg_api, "admin", "operator")
        root = pg_api.platform_admin()
        _, root_token = platform_admin_with_token(pg_api)  # a platform admin's token, in a third tenant
        held = create_probe(op_a, f"{targets.http_url}/hold", timeout_seconds=30)
        quick_a = create_probe(op_a, f"{targets.http_url}/ok")
        quick_b = create_probe(op_b, f"{targets.http_url}/ok")
        targets.reset()
        try:
            later_a = execute_probe.apply_async(kwargs={"probe_id": quick_a["id"], "tenant_id": tenant_a},
                                                countdown=30)
            later_b = execute_probe.apply_async(args=[quick_b["id"], tenant_b], countdown=30)
            wait_for(lambda: len(scheduled_ids(root)) == 2, what="the worker to hold both countdown tasks")
            running = run(op_a, held["id"])
            wait_for(lambda: targets.hits("/hold") == 1, what="the worker to hold the probe")

            active = {"a": active_ids(admin_a), "b": active_ids(admin_b), "root": active_ids(root),
                      "token": active_ids(root_token)}
            scheduled = {"a": scheduled_ids(admin_a), "b": scheduled_ids(admin_b),
                         "root": sorted(scheduled_ids(root)), "token": scheduled_ids(root_token)}
            [entry] = ok(admin_a.get(f"{API}/ops/tasks/active"))["items"]
            held_by_worker = ok(root.get(f"{API}/ops/tasks/scheduled"))["items"]
            assert_error(op_a.get(f"{API}/ops/tasks/active"), 403, "forbidden")
            assert_error(op_a.get(f"{API}/ops/tasks/scheduled"), 403, "forbidden")
        finally:
            targets.release_hold()

        assert active == {"a": [running], "b": [], "root": [running], "token": []}
        assert scheduled == {"a": [later_a.id], "b": [later_b.id], "root": sorted([later_a.id, later_b.id]),
                             "token": []}
        assert entry["task_id"] == running and entry["task_name"] == EXECUTE_PROBE
        assert entry["worker"] and entry["queue"] == "network_probes" and entry["time_start"]
        assert entry["kwargs"]["tenant_id"] == tenant_a and entry["kwargs"]["probe_id"] == held["id"]
        assert all(item["eta"] and item["task_name"] == EXECUTE_PROBE and item["worker"] for item in held_by_worker)

        assert wait_state(op_a, running, "SUCCESS")["successful"] is True
        # Countdown tasks are revoked by their own tenant's operator or by the platform admin.
        assert_error(op_a.post(f"{API}/tasks/{later_b.id}/revoke"), 404, "not_found")
        assert ok(op_a.post(f"{API}/tasks/{later_a.id}/revoke"))["revoked"] is True
        assert ok(root.post(f"{API}/tasks/{later_b.id}/revoke"))["revoked"] is True
        wait_for(lambda: active_ids(root) == [], what="the worker to be idle")

    def test_a_scheduled_task_reports_its_own_priority(
        self, pg_api: Api, worker: object, targets: LoopbackTargets
    ) -> None:
        tenant, (op,) = tenant_callers(pg_api, "operator")
        root = pg_api.platform_admin()
        probe = create_probe(op, f"{targets.http_url}/ok")
        urgent = execute_probe.apply_async(kwargs={"probe_id": probe["id"], "tenant_id": tenant}, countdown=30,
                                           priority=9)
        routine = execute_probe.apply_async(kwargs={"probe_id": probe["id"], "tenant_id": tenant}, countdown=30,
                                            priority=3)
        try:
            items = wait_for(lambda: len(found := ok(root.get(f"{API}/ops/tasks/scheduled"))["items"]) == 2
                             and found, what="the worker to hold both countdown tasks")
        finally:
            for task in (urgent, routine):
                ok(root.post(f"{API}/tasks/{task.id}/revoke"))

        assert {item["task_id"]: item["priority"] for item in items} == {urgent.id: 9, routine.id: 3}


# --- task status and revoke across tenants -----------------------------------------------------

class TestTasksAcrossTenants:
    def test_the_platform_admin_reads_any_tenants_task(
        self, pg_api: Api, worker: object, targets: LoopbackTargets
    ) -> None:
        _, (op_a,) = tenant_callers(pg_api, "operator")
        _, (admin_b,) = tenant_callers(pg_api, "admin")
        root = pg_api.platform_admin()
        _, token = platform_admin_with_token(pg_api)
        probe = create_probe(op_a, f"{targets.http_url}/ok")

        task_id = run(op_a, probe["id"])
        done = wait_state(root, task_id, "SUCCESS")

        assert done["task_id"] == task_id and done["exists"] is True and done["ready"] is True
        assert done["result"] == task_state(op_a, task_id)["result"]
        assert done["result"]["status"] == "success"
        assert_error(admin_b.get(f"{API}/tasks/{task_id}"), 404, "not_found")
        # A platform admin's API token is a tenant credential: another tenant's task is not found.
        assert_error(token.get(f"{API}/tasks/{task_id}"), 404, "not_found")
        assert_error(root.get(f"{API}/tasks/{uuid.uuid4()}"), 404, "not_found")

    def test_an_operator_terminates_a_running_probe(
        self, pg_api: Api, prefork_worker: object, targets: LoopbackTargets
    ) -> None:
        api = pg_api
        _, (op_a, viewer_a) = tenant_callers(api, "operator", "viewer")
        _, (op_b,) = tenant_callers(api, "operator")
        root = api.platform_admin()
        held = create_probe(op_a, f"{targets.http_url}/hold", timeout_seconds=30)
        targets.reset()
        try:
            task_id = run(op_a, held["id"])
            wait_for(lambda: targets.hits("/hold") == 1, what="the worker to hold the probe")
            assert wait_state(root, task_id, "STARTED")
            assert active_ids(root) == [task_id]

            assert_error(viewer_a.post(f"{API}/tasks/{task_id}/revoke", query_string={"terminate": "true"}),
                         403, "forbidden")
            assert_error(op_b.post(f"{API}/tasks/{task_id}/revoke", query_string={"terminate": "true"}),
                         404, "not_found")
            revoked = ok(op_a.post(f"{API}/tasks/{task_id}/revoke", query_string={"terminate": "true"}))

            final = wait_state(op_a, task_id, "REVOKED")
            wait_for(lambda: active_ids(root) == [], what="the worker to drop the task")
        finally:
            targets.release_hold()

        assert revoked == {"task_id": task_id, "success": True, "revoked": True, "terminated": True}
        assert final["ready"] is True and final["successful"] is False
        assert ok(op_a.get(f"{API}/probes/{held['id']}/results"))["items"] == []


# --- health, readiness and the errors of unknown routes ----------------------------------------

@contextmanager
def app_without_redis(app: Flask) -> Iterator[Flask]:
    """A second app on the same database whose Redis is a closed loopback port. ``create_app``
    activates its settings process-wide and re-binds Celery: the original app is bound again after."""
    original = app.extensions["admin_mit.settings"]
    settings = load_settings(environ={**os.environ, "ADMIN_MIT_REDIS__PORT": str(free_port()),
                                      "ADMIN_MIT_DATABASE__URL": original.database_url})
    broken = None
    try:
        broken = create_app(settings)
        yield broken
    finally:
        if broken is not None:
            with broken.app_context():
                db.session.remove()
                db.engine.dispose()
        celery_init_app(app)
        activate(original)


class TestHealth:
    def test_liveness_and_readiness_need_no_credentials(self, api: Api) -> None:
        assert ok(api.client.get("/healthz")) == {"status": "ok"}
        assert ok(api.client.get("/readyz")) == {"status": "ok", "checks": {"database": "ok", "redis": "ok"}}

    def test_not_ready_when_redis_is_unreachable(
        self, api: Api, app: Flask, redis_client: redis.Redis
    ) -> None:
        _, (op,) = tenant_callers(api, "operator")
        create_probe(op)

        with app_without_redis(app) as broken:
            client = broken.test_client()
            live = client.get("/healthz")
            ready = client.get("/readyz")
            # The same login on the app without Redis: the probe list reads the status cache there.
            listing = client.get(f"{API}/probes", headers={"Authorization": f"Bearer {op.token}"})
            # The console's overview and a Prometheus scrape read the status cache too: one clear 503.
            overview = client.get(f"{API}/console/overview", headers={"Authorization": f"Bearer {op.token}"})
            scrape = client.get("/metrics", headers={"Authorization": f"Bearer {op.token}"})

        assert ok(live) == {"status": "ok"}
        assert ready.status_code == 503 and ready.mimetype == "application/json"
        assert ready.json["status"] == "unavailable"
        assert ready.json["checks"]["database"] == "ok"
        assert ready.json["checks"]["redis"] != "ok" and ready.json["checks"]["redis"].startswith("unavailable")
        assert_error(listing, 503, "unavailable")
        assert_error(overview, 503, "unavailable")
        assert_error(scrape, 503, "unavailable")
        # The original app is bound again: Redis answers, and tasks publish to the test Redis.
        assert ok(api.client.get("/readyz"))["checks"] == {"database": "ok", "redis": "ok"}
        assert ok(op.get(f"{API}/probes"))["meta"]["total"] == 1
        task_id = run(op, ok(op.get(f"{API}/probes"))["items"][0]["id"])
        assert task_state(op, task_id)["state"] == "PENDING" and queue_length("network_probes") == 1
        assert redis_client.ping()

    def test_operations_answer_503_when_the_broker_is_unreachable(self, api: Api, app: Flask) -> None:
        root = api.platform_admin()
        with app_without_redis(app) as broken:
            client = broken.test_client()
            headers = {"Authorization": f"Bearer {root.token}"}
            answers = [client.get(f"{API}{path}", headers=headers) for path in ("/ops/queues", "/ops/workers")]
        for response in answers:
            assert_error(response, 503, "unavailable")

    def test_unknown_paths_and_methods_answer_json(self, api: Api) -> None:
        root = api.platform_admin()
        for path in ("/nope", f"{API}/nope", f"{API}/ops/nope", f"{API}/ops/queues/network_probes"):
            assert_error(api.client.get(path), 404, "not_found")
            assert_error(root.get(path), 404, "not_found")

        for method, path, allowed in (
            ("POST", "/healthz", "GET"),
            ("DELETE", "/readyz", "GET"),
            ("POST", f"{API}/ops/workers", "GET"),
            ("DELETE", f"{API}/ops/queues", "GET"),
            ("GET", f"{API}/ops/queues/all/purge", "POST"),
        ):
            response = root.request(method, path)
            assert_error(response, 405, "method_not_allowed")
            assert method in response.json["message"]
            assert allowed in [name.strip() for name in response.headers["Allow"].split(",")]
