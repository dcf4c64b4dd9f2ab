"""Alert tasks (queue ``alerts``): evaluate stored results, deliver notifications, housekeeping.

Every worker imports this module (the tasks are registered everywhere), but only the
workers that consume ``alerts`` run them: the services, with the channels, templates and
their HTTP and SMTP clients (about 7 MB), are imported when a task first runs, not by a
worker that only runs probes.
"""

from __future__ import annotations

from typing import Any

from app.celery_app import celery
from app.services.errors import InvalidInputError
from app.tasks.base import AlertTask


def _pairs(results: Any) -> list[tuple[int, int]]:
    try:
        return [(int(probe_id), int(result_id)) for probe_id, result_id in results]
    except (TypeError, ValueError):
        raise InvalidInputError("must be a list of [probe_id, result_id] pairs", field="results") from None


@celery.task(bind=True, base=AlertTask, ignore_result=True, time_limit=120, soft_time_limit=100)
def evaluate_results(self: AlertTask, results: list[list[int]]) -> dict[str, Any]:
    """Evaluate one stored batch of results against the alert rules; deliver what it decided."""
    from app.services import alert_evaluation, alert_groups, outbox

    report = alert_evaluation.evaluate(_pairs(results))
    outbox.deliver_soon(report.notifications)
    alert_groups.schedule(report.flush_at)
    return {"pairs": report.pairs, "results": report.results, "fired": report.fired, "resolved": report.resolved}


@celery.task(bind=True, base=AlertTask, ignore_result=True, time_limit=300, soft_time_limit=280)
def deliver_notifications(self: AlertTask, ids: list[str] | None = None) -> dict[str, int]:
    """Send the given notifications (or every due one) that no other worker holds."""
    from app.services import notification_delivery

    return notification_delivery.deliver(ids).as_dict()


@celery.task(bind=True, base=AlertTask, ignore_result=True, time_limit=120, soft_time_limit=100)
def flush_alert_groups(self: AlertTask) -> dict[str, int]:
    """Send the alert groups that are due, one message per group and channel."""
    from app.services import alert_groups, notification_delivery

    written = alert_groups.flush_due()
    return {"groups": len(written), **(notification_delivery.deliver(written).as_dict() if written else {})}


@celery.task(bind=True, base=AlertTask, ignore_result=True, time_limit=300, soft_time_limit=280)
def alert_housekeeping(self: AlertTask, catch_up: bool = False) -> dict[str, Any]:
    """Beat's periodic pass: due reminders and escalation steps, due retries and sends whose
    worker died, and (with ``catch_up``) results no evaluation message announced."""
    from app.services import (alert_evaluation, alert_groups, alert_release, alerts, escalation,
                              notification_delivery, outbox)

    evaluated = alert_evaluation.catch_up() if catch_up else None
    if evaluated is not None:
        outbox.deliver_soon(evaluated.notifications)
        alert_groups.schedule(evaluated.flush_at)
    released = [alert_release.release_suppressed(), alert_release.release_unsilenced()]
    alert_groups.schedule([at for notices in released for at in notices.flush_at])
    grouped = alert_groups.flush_due()
    reminders = alerts.send_reminders()
    escalated = escalation.escalate()
    delivered = notification_delivery.deliver()
    return {"reminders": len(reminders), "escalations": len(escalated), "groups": len(grouped),
            **delivered.as_dict(),
            "caught_up": evaluated.results if evaluated is not None else 0}
