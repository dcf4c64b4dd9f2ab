"""Task and queue operations scoped to a tenant, for the API.

Celery knows nothing of tenants: a task's tenant is only one of its arguments.
So that a tenant sees and revokes only its own tasks, the publish-time marker
``app.celery_app`` writes for every task records the tenant as well
(``read_submission_marker``).

``tenant_id=None`` everywhere means the platform administrator, who sees every
task. A task without a tenant (``schedule_auto_probes``, ``cleanup_old_results``)
and an id that was never submitted belong to no tenant.

Queue lengths are read from the Redis lists kombu keeps per queue and priority
bucket, through kombu's own channel, so key names, ``global_keyprefix`` and the
broker URL (TCP or the embedded server's ``redis+socket://``) are kombu's.
"""

from __future__ import annotations

import json
from typing import Any

from app.celery_app import QUEUES, TENANT_ARG, as_tenant, celery, read_submission_marker, tenant_of_call
from app.celery_utils import get_active_tasks, get_scheduled_tasks
from app.core import priority
from app.services.errors import NotFoundError

# --- ownership -------------------------------------------------------------------------------

def task_tenant(task_id: str) -> int | None:
    """The tenant a submitted task runs for; None for a task without one and for an unknown id."""
    return as_tenant((read_submission_marker(task_id) or {}).get(TENANT_ARG))


def task_visible_to(task_id: str, tenant_id: int | None) -> bool:
    """Whether ``tenant_id`` (None: the platform) may see and revoke the task. A never-submitted id is nobody's."""
    marker = read_submission_marker(task_id)
    if marker is None:
        return False
    return tenant_id is None or as_tenant(marker.get(TENANT_ARG)) == tenant_id


def require_visible(task_id: str, tenant_id: int | None) -> None:
    """Raise ``NotFoundError`` unless ``task_visible_to``: another tenant's task and a missing one look alike."""
    if not task_visible_to(task_id, tenant_id):
        raise NotFoundError(f"task {task_id} not found")


# --- task lists ------------------------------------------------------------------------------

def _entry_tenant(entry: dict[str, Any]) -> int | None:
    tenant = tenant_of_call(entry.get("task_name") or "", entry.get("args"), entry.get("kwargs"))
    if tenant is None and entry.get("task_id"):
        tenant = task_tenant(entry["task_id"])  # e.g. args a worker reported only as a repr
    return tenant


def _owned(entries: list[dict[str, Any]], tenant_id: int | None) -> list[dict[str, Any]]:
    if tenant_id is None:
        return entries
    return [entry for entry in entries if _entry_tenant(entry) == tenant_id]


def active_tasks(tenant_id: int | None) -> list[dict[str, Any]]:
    """``celery_utils.get_active_tasks()`` entries of the tenant's tasks (all of them for None)."""
    return _owned(get_active_tasks(), tenant_id)


def scheduled_tasks(tenant_id: int | None) -> list[dict[str, Any]]:
    """``celery_utils.get_scheduled_tasks()`` entries of the tenant's tasks (all of them for None)."""
    return _owned(get_scheduled_tasks(), tenant_id)


# --- queue lengths ---------------------------------------------------------------------------

def _bucket_levels(bucket: int) -> list[int]:
    """User priority levels published into a Redis bucket, most urgent first: 0 -> [10], 9 -> [1, 0]."""
    return [level for level in range(priority.MAX_PRIORITY, priority.MIN_PRIORITY - 1, -1)
            if priority.to_broker(level) == bucket]


def _unacked_queue(raw: bytes | str) -> str | None:
    try:
        _message, exchange, routing_key = json.loads(raw)
    except (ValueError, TypeError):
        return None
    # Every queue of QUEUES is bound to its own direct exchange under its own name.
    return routing_key if routing_key in QUEUES else exchange if exchange in QUEUES else None


def queue_lengths() -> list[dict[str, Any]]:
    """Messages per queue of ``QUEUES``, most urgent bucket first::

        {"queue": "network_probes", "waiting": 3, "unacked": 1,
         "by_priority": [{"priority": 10, "levels": [10], "waiting": 0}, ...,
                         {"priority": 1, "levels": [1, 0], "waiting": 2}]}

    ``waiting``: in the queue, not yet delivered. ``by_priority``: one entry per Redis
    bucket, in the order workers read them; ``priority`` is the user priority the bucket
    reads back as (``priority.from_broker``) and ``levels`` every user priority published
    into it — levels 0 and 1 share the last bucket. ``unacked``: delivered to a worker and
    not yet acknowledged — running, prefetched, or held for an ETA/countdown (retries) —
    including those of a worker that died, until kombu restores them after the visibility
    timeout. Counting it per queue reads every unacknowledged message once.
    """
    with celery.connection_for_read() as conn:
        channel = conn.default_channel
        buckets = list(channel.priority_steps)
        with channel.conn_or_acquire() as client, client.pipeline() as pipe:  # one MULTI/EXEC snapshot
            for queue in QUEUES:
                for bucket in buckets:
                    pipe.llen(channel._q_for_pri(queue, bucket))  # kombu's key: "queue", "queue:1", ...
            pipe.hvals(channel.unacked_key)
            *sizes, unacked_messages = pipe.execute()
    unacked = dict.fromkeys(QUEUES, 0)
    for raw in unacked_messages:
        if (queue := _unacked_queue(raw)) is not None:
            unacked[queue] += 1
    report = []
    for index, queue in enumerate(QUEUES):
        counts = [int(n) for n in sizes[index * len(buckets):(index + 1) * len(buckets)]]
        report.append({
            "queue": queue,
            "waiting": sum(counts),
            "unacked": unacked[queue],
            "by_priority": [
                {"priority": priority.from_broker(bucket), "levels": _bucket_levels(bucket), "waiting": n}
                for bucket, n in zip(buckets, counts)
            ],
        })
    return report
