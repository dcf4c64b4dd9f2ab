"""Write notifications: the outbox rows an alert transition causes, in the caller's transaction.

A row holds everything its message needs (``context``: the alert, rule, probe and result
as they were at the transition), so a later change or deletion of the probe does not
change what a notification already decided says. Delivery (``notification_delivery``)
renders it with the channel's templates when it sends.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import select

from app.alerting.rules import ResultView
from app.core.config import active_settings
from app.extensions import db
from app.models import Alert, AlertRule, Notification, NotificationChannel, Probe, ProbeResult, Tenant, User, utcnow
from app.services import task_queue

log = logging.getLogger(__name__)



class ProbeLike(Protocol):
    id: int
    name: str
    target: str
    protocol: str


def new_id() -> str:
    return str(uuid.uuid4())


def alert_link(alert_id: int) -> str:
    """The alert in the API, under ``alerts.public_url`` when it is set."""
    return f"{active_settings().alerts.public_url.rstrip('/')}/api/v1/alerts/{alert_id}"


def alerts_link() -> str:
    """The open alerts in the API, under ``alerts.public_url`` when it is set."""
    return f"{active_settings().alerts.public_url.rstrip('/')}/api/v1/alerts?status=open"


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


SEVERITY = {"down": "critical", "slow": "warning", "certificate": "warning"}


def condition_text(rule: AlertRule) -> str:
    """The rule's condition as a person reads it (``3 consecutive failures``)."""
    count = (f"{rule.threshold} consecutive" if rule.window == rule.threshold
             else f"{rule.threshold} of the last {rule.window}")
    if rule.kind == "down":
        return f"{count} failures" if rule.threshold > 1 else "a failure"
    if rule.kind == "slow":
        return f"{count} runs slower than {rule.slow_ms:g} ms"
    return f"certificate valid for fewer than {rule.cert_days} days ({count} runs)"


def _latest(probe_id: int) -> ResultView | None:
    row = db.session.execute(
        select(ProbeResult.id, ProbeResult.status, ProbeResult.created_at, ProbeResult.response_time_ms,
               ProbeResult.cert_expires_at, ProbeResult.error, ProbeResult.status_code)
        .where(ProbeResult.probe_id == probe_id).order_by(ProbeResult.id.desc()).limit(1)).first()
    return ResultView(*row) if row is not None else None


def context_for(alert: Alert, rule: AlertRule, probe: ProbeLike, result: ResultView | None,
                note: str = "") -> dict[str, Any]:
    """What the templates of an alert notification see (the names of ``app.alerting.templates``),
    as of the transition; the channel and the alert's duration are added when it is sent."""
    result = result or _latest(probe.id)
    acknowledged_by = db.session.get(User, alert.acknowledged_by) if alert.acknowledged_by else None
    tenant = db.session.get(Tenant, alert.tenant_id)
    return {
        "status": result.status if result else "", "error": (result.error or "") if result else "",
        "response_time_ms": result.response_time_ms if result else None,
        "status_code": result.status_code if result else None,
        "since": _time(alert.since), "link": alert_link(alert.id), "target": probe.target,
        "timezone": active_settings().celery.timezone,
        "alert": {"id": alert.id, "state": alert.status, "severity": SEVERITY.get(rule.kind, "warning"),
                  "reason": alert.reason, "acknowledged_by": acknowledged_by.username if acknowledged_by else None,
                  "acknowledged_at": _time(alert.acknowledged_at), "note": note,
                  "reminder_count": alert.reminders_sent, "resolved_at": _time(alert.resolved_at)},
        "rule": {"id": rule.id, "name": rule.name, "description": rule.description, "condition": condition_text(rule)},
        "probe": {"id": probe.id, "name": probe.name, "protocol": probe.protocol, "target": probe.target},
        "tenant": {"id": alert.tenant_id, "name": tenant.name if tenant else ""},
    }


def enqueue(alert: Alert, rule: AlertRule, event: str, result: ResultView | None,
            probe: ProbeLike | None = None, note: str = "", extra: dict[str, Any] | None = None) -> list[str]:
    """One pending notification per enabled channel of ``rule``; returns their ids. ``extra``
    adds to the context (``flapping``, ``escalation``)."""
    channels = [channel for channel in rule.channels if channel.enabled]
    if not channels:
        return []
    probe = probe or db.session.get(Probe, alert.probe_id)
    assert probe is not None
    context = {**context_for(alert, rule, probe, result, note), **(extra or {})}
    return [add(channel, event, context, alert_id=alert.id) for channel in channels]


def add(channel: NotificationChannel, event: str, context: dict[str, Any], alert_id: int | None = None) -> str:
    now = utcnow()
    notification = Notification(
        id=new_id(), tenant_id=channel.tenant_id, channel_id=channel.id, alert_id=alert_id, event=event,
        context=context, status="pending", attempts=0, next_attempt_at=now, created_at=now,
        deadline_at=now + timedelta(seconds=active_settings().alerts.delivery_deadline_seconds),
    )
    db.session.add(notification)
    return notification.id


def deliver_soon(ids: list[str]) -> None:
    """Ask an ``alerts`` worker to send these committed notifications now, ahead of the
    evaluations waiting in the queue. If the broker is down they are sent by the next
    housekeeping pass instead (beat, every few seconds)."""
    if not ids:
        return
    try:
        task_queue.publish(task_queue.Message(task_queue.DELIVER_NOTIFICATIONS, {"ids": ids}, ignore_result=True,
                                              priority=task_queue.ALERT_DELIVERY_PRIORITY, retry=False))
    except Exception as exc:  # noqa: BLE001 - the rows are committed: housekeeping sends them
        log.warning("could not ask for delivery of %d notifications now (%s); housekeeping will send them",
                    len(ids), exc)
