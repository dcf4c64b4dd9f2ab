"""Celery operations in the guide's shapes: task status, revoke, active/scheduled tasks, workers, purge.

Every function answers when no worker runs: the inspect calls wait
``INSPECT_TIMEOUT`` seconds for replies and treat silence as "no workers",
returning empty lists rather than raising. An unreachable broker is not
silence: it raises ``kombu.exceptions.OperationalError``.
"""

from __future__ import annotations

from typing import Any

from celery import states

from app.celery_app import QUEUES, SUBMITTED_KEY, celery
from app.core import priority

INSPECT_TIMEOUT = 1.0
UNKNOWN_STATE = "UNKNOWN"


def _was_submitted(task_id: str) -> bool:
    return bool(celery.backend.client.exists(SUBMITTED_KEY.format(task_id)))


def _json_safe(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str, list, dict)):
        return value
    if isinstance(value, BaseException):
        return {"error": type(value).__name__, "message": str(value)}
    return repr(value)


def get_task_status(task_id: str) -> dict[str, Any]:
    """State of a task. An id that was never submitted has state ``UNKNOWN`` and ``exists`` False."""
    # One read of the stored meta: state, readiness and result must describe the same moment
    # (asking AsyncResult for each reads again, and a task finishing in between mixes them).
    meta = celery.backend.get_task_meta(task_id)
    state = meta["status"]
    exists = state != states.PENDING or _was_submitted(task_id)
    if not exists:
        state = UNKNOWN_STATE
    ready = state in states.READY_STATES
    return {
        "task_id": task_id,
        "state": state,
        "ready": ready,
        "successful": state == states.SUCCESS,
        "result": _json_safe(meta.get("result")) if ready or state == states.RETRY else None,
        "exists": exists,
    }


def revoke_task(task_id: str, terminate: bool = False) -> dict[str, Any]:
    """Revoke a task: a queued one is discarded when a worker receives it; ``terminate`` also
    kills it if it is running (SIGTERM to the pool process)."""
    if not get_task_status(task_id)["exists"]:
        return {"task_id": task_id, "success": False, "revoked": False, "error": "task not found"}
    celery.control.revoke(task_id, terminate=terminate, signal="SIGTERM")
    return {"task_id": task_id, "success": True, "revoked": True, "terminated": terminate}


def _inspect() -> Any:
    """An inspect handle, once the broker is known to answer: without that check an unreachable
    broker would look like "no workers" (``kombu.exceptions.OperationalError`` is raised instead)."""
    with celery.connection_for_read() as conn:
        conn.ensure_connection(max_retries=1)
    return celery.control.inspect(timeout=INSPECT_TIMEOUT)


def get_active_tasks() -> list[dict[str, Any]]:
    """Tasks running now, one entry per task: worker, task_id, task_name, args, kwargs, time_start."""
    replies = _inspect().active() or {}
    return [
        {
            "worker": worker,
            "task_id": task.get("id"),
            "task_name": task.get("name"),
            "args": task.get("args"),
            "kwargs": task.get("kwargs"),
            "time_start": task.get("time_start"),
            "queue": (task.get("delivery_info") or {}).get("routing_key"),
        }
        for worker, tasks in replies.items()
        for task in tasks
    ]


def _task_priority(request: dict[str, Any]) -> int | None:
    """The task's priority (0-10, larger sooner) from the Redis bucket it was delivered from.

    The entry's own ``priority`` is that of the worker's timer, not of the task.
    """
    bucket = (request.get("delivery_info") or {}).get("priority")
    return priority.from_broker(bucket) if isinstance(bucket, int) else None


def get_scheduled_tasks() -> list[dict[str, Any]]:
    """Tasks a worker holds with an ETA or countdown (retries included): task_id, task_name, eta, priority."""
    replies = _inspect().scheduled() or {}
    return [
        {
            "worker": worker,
            "task_id": entry.get("request", {}).get("id"),
            "task_name": entry.get("request", {}).get("name"),
            "args": entry.get("request", {}).get("args"),
            "kwargs": entry.get("request", {}).get("kwargs"),
            "eta": entry.get("eta"),
            "priority": _task_priority(entry.get("request", {})),
        }
        for worker, entries in replies.items()
        for entry in entries
    ]


def get_worker_stats() -> dict[str, Any]:
    """``{'total_workers': n, 'workers': [{'name', 'max_concurrency', 'pool', 'processed', ...}]}``."""
    inspect = _inspect()
    stats = inspect.stats() or {}
    active = (inspect.active() or {}) if stats else {}
    workers = []
    for name, info in sorted(stats.items()):
        pool = info.get("pool") or {}
        workers.append({
            "name": name,
            "max_concurrency": pool.get("max-concurrency"),
            "pool": pool.get("implementation"),
            "processes": pool.get("processes", []),
            "active_tasks": len(active.get(name, [])),
            "processed": sum((info.get("total") or {}).values()),
            "pid": info.get("pid"),
            "uptime": info.get("uptime"),
            "prefetch_count": info.get("prefetch_count"),
        })
    return {"total_workers": len(workers), "workers": workers}


def purge_queue(queue: str | None = None) -> dict[str, Any]:
    """Discard waiting messages of one queue, or of every queue when ``queue`` is None.

    Running tasks and tasks a worker already holds (ETA, prefetched) are not affected.
    """
    if queue is not None and queue not in QUEUES:
        return {"success": False, "error": f"unknown queue {queue!r}; expected one of {', '.join(QUEUES)}"}
    names = [queue] if queue else list(QUEUES)
    purged: dict[str, int] = {}
    with celery.connection_for_write() as conn:
        channel = conn.default_channel
        for name in names:
            purged[name] = int(channel.queue_purge(name) or 0)
    return {"success": True, "queues": purged, "purged": sum(purged.values())}
