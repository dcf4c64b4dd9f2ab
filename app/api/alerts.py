"""Alerts of the caller's tenant: list, history, acknowledge, resolve, and their notifications."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.api import CONFLICT, NOT_FOUND, api_blueprint
from app.api.schemas import IsoTime, RowId
from app.api.security import current_principal, role, tenant_id
from app.models import Alert, Notification
from app.services import alerts, silences

blueprint = api_blueprint("alerts", "Alerts opened by rules: firing → acknowledged → resolved, with their history "
                                    "and the notifications each transition sent.")


class AlertPath(BaseModel):
    alert_id: RowId


class AlertQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["open", "firing", "acknowledged", "suppressed", "resolved"] | None = Field(
        None, description="`open`: firing, acknowledged or suppressed.")
    rule_id: RowId | None = None
    probe_id: RowId | None = None
    since: IsoTime | None = Field(None, description="Opened at or after (ISO 8601; UTC when no zone is given).")
    limit: int = Field(50, ge=1, le=500)
    cursor: RowId | None = Field(None, description="`next_cursor` of the previous page.")


class NoteBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    note: str = Field("", max_length=2000, description="Why, for the history (and the notification).")


class AlertEventOut(BaseModel):
    from_status: str | None
    to_status: str
    actor: str = Field(description="`system`, or the user who did it.")
    note: str
    at: datetime


class AlertOut(BaseModel):
    id: int
    status: str
    reason: str = Field(description="Why it fired, for a person.")
    rule_id: int
    rule_name: str
    probe_id: int
    probe_name: str
    since: datetime = Field(description="The first bad result of the episode.")
    opened_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    resolved_at: datetime | None
    next_reminder_at: datetime | None
    reminders_sent: int
    suppressed_by: int | None = Field(description="suppressed: the parent probe that is down.")
    suppressed_by_name: str | None
    flapping: bool = Field(description="The probe keeps changing state: nothing is sent until it settles.")
    escalation_step: int = Field(description="Escalation steps taken so far.")
    next_escalation_at: datetime | None
    silenced_by: list[int] = Field(description="The active silences covering it now (open alerts only): no "
                                               "firing, reminder or escalation notice is sent meanwhile.")


class AlertDetail(AlertOut):
    history: list[AlertEventOut]


class AlertList(BaseModel):
    items: list[AlertOut]
    next_cursor: int | None = Field(description="Pass as `cursor` for the next (older) page; null at the end.")


class AttemptOut(BaseModel):
    attempted_at: datetime
    ok: bool
    error: str | None
    duration_ms: float
    worker: str


class NotificationOut(BaseModel):
    id: str = Field(description="Stable across retries: the webhook body's `id`, the email's Message-ID.")
    channel_id: int
    event: str
    status: str = Field(description="pending, sending, sent, failed, or summarized (sent inside summary_id).")
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    summary_id: str | None
    created_at: datetime
    sent_at: datetime | None
    attempt_log: list[AttemptOut]


class NotificationList(BaseModel):
    items: list[NotificationOut]


def _out(alert: Alert, names: alerts.Labels, silenced: dict[int, list[int]]) -> dict[str, Any]:
    return AlertOut(
        id=alert.id, status=alert.status, reason=alert.reason, rule_id=alert.rule_id,
        rule_name=names.rules.get(alert.rule_id, ""), probe_id=alert.probe_id,
        probe_name=names.probes.get(alert.probe_id, ""), since=alert.since, opened_at=alert.opened_at,
        acknowledged_at=alert.acknowledged_at,
        acknowledged_by=names.users.get(alert.acknowledged_by) if alert.acknowledged_by else None,
        resolved_at=alert.resolved_at, next_reminder_at=alert.next_reminder_at,
        reminders_sent=alert.reminders_sent, suppressed_by=alert.suppressed_by,
        suppressed_by_name=names.probes.get(alert.suppressed_by) if alert.suppressed_by else None,
        flapping=alert.flapping, escalation_step=alert.escalation_step, next_escalation_at=alert.next_escalation_at,
        silenced_by=silenced.get(alert.id, []),
    ).model_dump(mode="json")


def _silenced(rows: list[Alert]) -> dict[int, list[int]]:
    """The silences covering each open alert of the page: one reading for the whole page."""
    return silences.covering(tenant_id(), [row for row in rows if row.status in silences.OPEN_STATUSES], fresh=True)


def _detail(alert: Alert) -> dict[str, Any]:
    history = [AlertEventOut(from_status=event.from_status, to_status=event.to_status, actor=event.actor,
                             note=event.note, at=event.at).model_dump(mode="json") for event in alert.events]
    return {**_out(alert, alerts.labels([alert]), _silenced([alert])), "history": history}


@blueprint.get("/alerts", summary="List alerts, newest first", responses={200: AlertList})
@role("viewer")
def list_alerts(query: AlertQuery) -> Any:
    rows = alerts.list_alerts(tenant_id(), status=query.status, rule_id=query.rule_id, probe_id=query.probe_id,
                              since=query.since, limit=query.limit + 1, before_id=query.cursor)
    page, more = rows[:query.limit], len(rows) > query.limit
    names, silenced = alerts.labels(page), _silenced(page)
    return {"items": [_out(alert, names, silenced) for alert in page], "next_cursor": page[-1].id if more else None}


@blueprint.get("/alerts/<int:alert_id>", summary="Get an alert with its history", responses={200: AlertDetail,
                                                                                              **NOT_FOUND})
@role("viewer")
def get_alert(path: AlertPath) -> Any:
    return _detail(alerts.get(tenant_id(), path.alert_id))


def _actor() -> alerts.Actor:
    principal = current_principal()
    return alerts.Actor(principal.username, principal.user_id)


@blueprint.post("/alerts/<int:alert_id>/acknowledge", summary="Acknowledge a firing alert: reminders stop",
                responses={200: AlertDetail, **NOT_FOUND, **CONFLICT})
@role("operator")
def acknowledge_alert(path: AlertPath, body: NoteBody) -> Any:
    return _detail(alerts.acknowledge(tenant_id(), path.alert_id, _actor(), body.note))


@blueprint.post("/alerts/<int:alert_id>/resolve", summary="Resolve an alert by hand",
                responses={200: AlertDetail, **NOT_FOUND, **CONFLICT})
@role("operator")
def resolve_alert(path: AlertPath, body: NoteBody) -> Any:
    return _detail(alerts.resolve(tenant_id(), path.alert_id, _actor(), body.note))


@blueprint.get("/alerts/<int:alert_id>/notifications", summary="Notifications of an alert, with every attempt",
               responses={200: NotificationList, **NOT_FOUND})
@role("viewer")
def alert_notifications(path: AlertPath) -> Any:
    rows = alerts.notifications_of(tenant_id(), path.alert_id)
    return {"items": [_notification(row) for row in rows]}


def _notification(row: Notification) -> dict[str, Any]:
    return NotificationOut(
        id=row.id, channel_id=row.channel_id, event=row.event, status=row.status, attempts=row.attempts,
        next_attempt_at=row.next_attempt_at if row.status == "pending" else None, last_error=row.last_error,
        summary_id=row.summary_id, created_at=row.created_at, sent_at=row.sent_at,
        attempt_log=[AttemptOut(attempted_at=a.attempted_at, ok=a.ok, error=a.error, duration_ms=a.duration_ms,
                                worker=a.worker) for a in row.attempt_log],
    ).model_dump(mode="json")
