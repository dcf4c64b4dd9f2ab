"""The one place services publish Celery tasks and read queue lengths.

Tasks are published by name, so services never import the task modules (which import
the services) nor hold the Celery object themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.celery_app import celery

PROBE_QUEUE = "network_probes"
EXECUTE_PROBE = "app.tasks.network_probe_tasks.execute_probe"
EXECUTE_BATCH = "app.tasks.network_probe_tasks.execute_batch_probes"
EVALUATE_RESULTS = "app.tasks.alert_tasks.evaluate_results"
DELIVER_NOTIFICATIONS = "app.tasks.alert_tasks.deliver_notifications"
FLUSH_ALERT_GROUPS = "app.tasks.alert_tasks.flush_alert_groups"
RUN_EXECUTION = "app.tasks.ansible_tasks.run_execution"
# Sending what was decided goes before deciding more: deliveries and housekeeping (retries,
# reminders, sends whose worker died) overtake the evaluations queued on ``alerts``.
ALERT_DELIVERY_PRIORITY = 9


@dataclass(frozen=True)
class Message:
    task: str
    kwargs: dict[str, Any]
    priority: int | None = None
    expires: datetime | None = None
    ignore_result: bool = False
    retry: bool = True  # False: fail at once if the broker is unreachable instead of retrying the publish
    eta: datetime | None = None  # run no earlier than this
    task_id: str | None = None  # the id to publish it under (default: a new one)


def publish(message: Message) -> str:
    """Publish one task message; returns its task id."""
    return publish_all([message])[0]


def publish_all(messages: list[Message]) -> list[str]:
    """Publish several messages over one producer connection; returns their task ids in order."""
    ids = []
    with celery.producer_or_acquire() as producer:
        for message in messages:
            result = celery.send_task(message.task, kwargs=message.kwargs, priority=message.priority,
                                      expires=message.expires, eta=message.eta, ignore_result=message.ignore_result,
                                      retry=message.retry, producer=producer, task_id=message.task_id)
            ids.append(result.id)
    return ids


def queue_length(queue: str) -> int:
    """Messages waiting in ``queue`` (all priority buckets)."""
    with celery.connection_for_read() as conn:
        try:
            return int(conn.default_channel.queue_declare(queue=queue, passive=True).message_count)
        except conn.channel_errors:
            return 0  # Redis keeps no trace of an empty queue: "not found" means nothing waits
