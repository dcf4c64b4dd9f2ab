"""Escalation: an alert nobody acknowledged tells further channels, step by step, each step once.

A rule's ``escalation`` is a list of steps ``{after_seconds, channel_ids}`` in increasing
``after_seconds``, counted from when the alert opened. ``alerts.escalation_step`` is how
many steps the alert has taken and ``next_escalation_at`` when the next one is due (NULL:
none left, or acknowledged/resolved). Beat's housekeeping calls ``escalate`` every few
seconds; each step is taken by compare-and-set on ``escalation_step``, so two beats at once
take it once.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import select, update

from app.extensions import db
from app.models import Alert, AlertRule, NotificationChannel, Probe, utcnow
from app.services import maintenance, outbox, silences
from app.services.alert_history import system_event

log = logging.getLogger(__name__)

ESCALATION_BATCH = 500


def due_at(rule: AlertRule, opened_at: datetime, step: int) -> datetime | None:
    """When step ``step`` (0-based) of ``rule``'s escalation is due for an alert opened at
    ``opened_at``; None when the rule has no such step."""
    steps = rule.escalation or []
    if step >= len(steps):
        return None
    return opened_at + timedelta(seconds=int(steps[step]["after_seconds"]))


class _Due(NamedTuple):
    """A firing alert whose next step is due, as read before taking it."""

    alert_id: int
    rule_id: int
    tenant_id: int
    probe_id: int
    step: int  # 0-based: the step to take now
    opened_at: datetime


def escalate(now: datetime | None = None, limit: int = ESCALATION_BATCH) -> list[str]:
    """Take the due escalation step of every firing alert of an enabled rule that is not
    flapping; returns the ids of the notifications written.

    Each alert is taken in its own transaction, so a pass holds one alert's lock at a time
    (it never deadlocks with an evaluator resolving several) and one alert that cannot be
    escalated does not hold back the others.
    """
    now = now or utcnow()
    created: list[str] = []
    for due in _due(now, limit):
        try:
            created += _take(due, now)
            db.session.commit()
        except Exception:  # noqa: BLE001 - logged; the step stays due and is tried again next pass
            db.session.rollback()
            log.exception("alert %s: escalation step %s failed; it is tried again", due.alert_id, due.step + 1)
    return created


def _due(now: datetime, limit: int) -> list[_Due]:
    try:
        rows = db.session.execute(
            select(Alert.id, Alert.rule_id, Alert.tenant_id, Alert.probe_id, Alert.escalation_step, Alert.opened_at)
            .join(AlertRule, AlertRule.id == Alert.rule_id)
            .where(Alert.status == "firing", Alert.next_escalation_at <= now, Alert.flapping.is_(False),
                   AlertRule.enabled.is_(True))
            .order_by(Alert.next_escalation_at, Alert.id).limit(limit)).tuples().all()
    finally:
        db.session.rollback()  # end the read: each alert is taken in a transaction of its own
    return [_Due(*row) for row in rows]


def _take(due: _Due, now: datetime) -> list[str]:
    """Move the alert from step k to k + 1 if it is still at k, firing and due; then tell the
    step's channels unless the alert is in maintenance or silenced now."""
    rule = db.session.get(AlertRule, due.rule_id)
    if rule is None:
        return []
    steps = rule.escalation or []
    moved = db.session.execute(
        update(Alert).where(Alert.id == due.alert_id, Alert.status == "firing", Alert.flapping.is_(False),
                            Alert.escalation_step == due.step, Alert.next_escalation_at <= now)
        .values(escalation_step=due.step + 1, next_escalation_at=due_at(rule, due.opened_at, due.step + 1))
        .execution_options(synchronize_session=False))
    if moved.rowcount != 1:  # type: ignore[attr-defined]  # another pass took it, or it changed meanwhile
        return []
    if due.step >= len(steps):  # the rule lost steps since: nothing left to take
        return []
    step = steps[due.step]
    alert = db.session.get(Alert, due.alert_id, populate_existing=True)
    assert alert is not None
    label = f"escalation step {due.step + 1} (not acknowledged after {int(step['after_seconds'])} s)"
    quiet = _quiet_because(alert)
    if quiet:
        _event(alert, f"{label}: {quiet}: no notice sent")
        return []
    channels = _channels(alert.tenant_id, step["channel_ids"])
    if not channels:
        _event(alert, f"{label}: none of its channels is enabled: no notice sent")
        return []
    probe = db.session.get(Probe, alert.probe_id)
    assert probe is not None
    context = {**outbox.context_for(alert, rule, probe, None),
               "escalation": {"step": due.step + 1, "after_seconds": int(step["after_seconds"])}}
    _event(alert, f"{label}: notified {', '.join(channel.name for channel in channels)}")
    return [outbox.add(channel, "escalation", context, alert_id=alert.id) for channel in channels]


def _quiet_because(alert: Alert) -> str | None:
    """Why nothing is sent for the alert now (the step is taken all the same), or None."""
    if maintenance.covers_now(alert.tenant_id, alert.probe_id):
        return "in maintenance"
    covering = silences.covering(alert.tenant_id, [alert]).get(alert.id)
    if covering:
        return f"silenced by silence {covering[0]}"
    if alert.silenced:  # its firing was withheld and has not been told yet
        return "silenced"
    return None


def _channels(tenant_id: int, channel_ids: list[Any]) -> list[NotificationChannel]:
    """The step's channels that still exist in the tenant and are enabled, in the step's order."""
    ids = [int(channel_id) for channel_id in channel_ids]
    found = {channel.id: channel for channel in db.session.scalars(
        select(NotificationChannel).where(NotificationChannel.id.in_(ids), NotificationChannel.tenant_id == tenant_id,
                                          NotificationChannel.enabled.is_(True)))}
    return [found[channel_id] for channel_id in dict.fromkeys(ids) if channel_id in found]


def _event(alert: Alert, note: str) -> None:
    system_event(alert, alert.status, alert.status, note)


def reschedule(rule: AlertRule) -> None:
    """``rule``'s steps changed: its open, unacknowledged alerts' next step is due by the new
    steps, counted from when each alert opened; the steps an alert took stay taken. In the
    caller's transaction."""
    rows = db.session.execute(select(Alert.id, Alert.opened_at, Alert.escalation_step)
                              .where(Alert.rule_id == rule.id, Alert.status.in_(("firing", "suppressed")))).all()
    for alert_id, opened_at, step in rows:
        db.session.execute(update(Alert).where(Alert.id == alert_id, Alert.escalation_step == step)
                           .values(next_escalation_at=due_at(rule, opened_at, step))
                           .execution_options(synchronize_session=False))
