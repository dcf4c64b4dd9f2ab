"""Celery operations in the guide's shapes: task status, revoke, active/scheduled tasks, workers, purge.

Every function answers when no worker runs: the inspect calls wait
``INSPECT_TIMEOUT`` seconds for replies and treat silence as "no workers",
returning empty lists rather than raising.
"""

from __future__ import annotations

from typing import Any

from celery.result import AsyncResult

from app.celery_app import QUEUES, SUBMITTED_KEY, celery

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
    result = AsyncResult(task_id, app=celery)
    state = result.state
    exists = state != "PENDING" or _was_submitted(task_id)
    if not exists:
        state = UNKNOWN_STATE
    ready = result.ready()
    return {
        "task_id": task_id,
        "state": state,
        "ready": ready,
        "successful": result.successful() if ready else False,
        "result": _json_safe(result.result) if ready or state == "RETRY" else None,
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
            "priority": entry.get("priority"),
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
