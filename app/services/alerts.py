"""An alert's life after it fired: acknowledge, resolve by hand, remind; and reading alerts.

Every transition is one compare-and-set on the alert's status, recorded as an
``AlertEvent`` with who did it, and writes its notifications in the same transaction.
Locks are taken in the evaluator's order — the (rule, probe) state first, then the
alert — so an operator and an evaluator acting on one alert at once never deadlock,
and whichever comes second sees what the first did.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import selectinload

from app.extensions import db
from app.models import Alert, AlertEvent, AlertRule, AlertState, Notification, Probe, User, utcnow
from app.services import alert_groups, maintenance, outbox, silences
from app.services.alert_notices import Notices
from app.services.errors import ConflictError, InvalidInputError, NotFoundError

OPEN = ("firing", "acknowledged", "suppressed")
REMINDER_BATCH = 500


@dataclass(frozen=True)
class Actor:
    """Who changes an alert: a user, or the system."""

    name: str
    user_id: int | None = None

    @classmethod
    def of(cls, user: User | None) -> Actor:
        return cls("system") if user is None else cls(user.username, user.id)


def get(tenant_id: int, alert_id: int) -> Alert:
    alert = db.session.get(Alert, alert_id)
    if alert is None or alert.tenant_id != tenant_id:
        raise NotFoundError(f"alert {alert_id} not found")
    return alert


def list_alerts(tenant_id: int | None, status: str | None = None, rule_id: int | None = None,
                probe_id: int | None = None, since: datetime | None = None, limit: int = 100,
                before_id: int | None = None) -> list[Alert]:
    """Newest first; ``status`` ``open`` means firing, acknowledged or suppressed. ``tenant_id`` ``None``:
    every tenant's (the platform's CLI)."""
    query = select(Alert)
    if tenant_id is not None:
        query = query.where(Alert.tenant_id == tenant_id)
    if status == "open":
        query = query.where(Alert.status.in_(OPEN))
    elif status is not None:
        query = query.where(Alert.status == status)
    if rule_id is not None:
        query = query.where(Alert.rule_id == rule_id)
    if probe_id is not None:
        query = query.where(Alert.probe_id == probe_id)
    if since is not None:
        query = query.where(Alert.opened_at >= since)
    if before_id is not None:
        query = query.where(Alert.id < before_id)
    return list(db.session.scalars(query.order_by(Alert.id.desc()).limit(limit)))


@dataclass(frozen=True)
class Labels:
    """Names to show beside alerts: rule, probe and acknowledging user by id."""

    rules: dict[int, str]
    probes: dict[int, str]
    users: dict[int, str]


def labels(rows: list[Alert]) -> Labels:
    def names(id_column: Any, name_column: Any, ids: set[int]) -> dict[int, str]:
        if not ids:
            return {}
        return dict(db.session.execute(select(id_column, name_column).where(id_column.in_(ids))).tuples().all())

    return Labels(rules=names(AlertRule.id, AlertRule.name, {row.rule_id for row in rows}),
                  probes=names(Probe.id, Probe.name, {row.probe_id for row in rows}
                               | {row.suppressed_by for row in rows if row.suppressed_by}),
                  users=names(User.id, User.username, {row.acknowledged_by for row in rows if row.acknowledged_by}))


def notifications_of(tenant_id: int, alert_id: int) -> list[Notification]:
    """The alert's notifications, oldest first, with their attempts."""
    alert = get(tenant_id, alert_id)
    return list(db.session.scalars(select(Notification).where(Notification.alert_id == alert.id)
                                   .options(selectinload(Notification.attempt_log))
                                   .order_by(Notification.created_at)))


def acknowledge(tenant_id: int, alert_id: int, actor: Actor, note: str = "") -> Alert:
    """Someone is on it: reminders stop until the alert resolves."""
    return _transition(tenant_id, alert_id, actor, note, frm=("firing",), to="acknowledged",
                       refused="only a firing alert can be acknowledged")


def resolve(tenant_id: int, alert_id: int, actor: Actor, note: str = "") -> Alert:
    """Close the alert by hand; the rule starts counting afresh (a probe still failing fires a new alert)."""
    return _transition(tenant_id, alert_id, actor, note, frm=OPEN, to="resolved",
                       refused="the alert is already resolved")


def _transition(tenant_id: int, alert_id: int, actor: Actor, note: str, frm: tuple[str, ...], to: str,
                refused: str) -> Alert:
    if len(note) > 2000:
        raise InvalidInputError("at most 2000 characters", field="note")
    alert = get(tenant_id, alert_id)
    try:
        if to == "resolved":
            # The state first (the evaluator's lock order): it forgets the episode.
            db.session.execute(update(AlertState).where(AlertState.alert_id == alert.id)
                               .values(alert_id=None, recent="", good_streak=0, bad_since=None, firing=False,
                                       held=False, flapping=False, changes=[], version=AlertState.version + 1)
                               .execution_options(synchronize_session=False))
        now = utcnow()
        values: dict[str, object] = {"status": to}
        if to == "acknowledged":
            values.update(acknowledged_at=now, acknowledged_by=actor.user_id, next_reminder_at=None,
                          next_escalation_at=None)
        else:
            values.update(resolved_at=now, next_reminder_at=None, next_escalation_at=None)
        previous = alert.status
        changed = db.session.execute(update(Alert).where(Alert.id == alert.id, Alert.status.in_(frm))
                                     .values(**values).execution_options(synchronize_session=False))
        if changed.rowcount != 1:  # type: ignore[attr-defined]
            raise ConflictError(refused)
        db.session.refresh(alert)
        db.session.add(AlertEvent(alert_id=alert.id, tenant_id=tenant_id, from_status=previous, to_status=to,
                                  actor=actor.name, user_id=actor.user_id, note=note, at=now))
        rule, probe = db.session.get(AlertRule, alert.rule_id), db.session.get(Probe, alert.probe_id)
        assert rule is not None and probe is not None
        notices = Notices({tenant_id})
        if to == "resolved":
            notices.tell_resolved(alert, rule, probe, None, note=note)
        elif alert.notified:  # nobody was told it fired (suppressed, silenced): nor that it is acknowledged
            notices.notifications += outbox.enqueue(alert, rule, to, None, note=note)
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    outbox.deliver_soon(notices.notifications)
    alert_groups.schedule(notices.flush_at)
    return alert


def send_reminders(now: datetime | None = None, limit: int = REMINDER_BATCH) -> list[str]:
    """A reminder for every firing alert whose reminder is due; returns the notification ids.

    Each alert's next reminder moves by compare-and-set, so two beats running this at once
    remind once. An alert whose probe is in a maintenance window now, that a silence
    withheld or covers now, is not reminded of (its next reminder moves on); nor is a
    flapping one. A disabled rule's alerts are not reminded of (they stay open until
    resolved, by hand or by the rule once enabled again).
    """
    now = now or utcnow()
    created: list[str] = []
    try:
        due = db.session.execute(
            select(Alert, AlertRule).join(AlertRule, AlertRule.id == Alert.rule_id)
            .where(Alert.status == "firing", Alert.next_reminder_at <= now, AlertRule.enabled.is_(True),
                   Alert.flapping.is_(False))
            .order_by(Alert.next_reminder_at).limit(limit)).tuples().all()
        for alert, rule in due:
            following = now + timedelta(seconds=rule.reminder_seconds) if rule.reminder_seconds else None
            # Moved on, not sent: the probe is in maintenance, or a silence withheld or covers the alert.
            quiet = (alert.silenced or maintenance.covers_now(alert.tenant_id, alert.probe_id)
                     or bool(silences.covering(alert.tenant_id, [alert]).get(alert.id)))
            moved = db.session.execute(
                update(Alert).where(Alert.id == alert.id, Alert.status == "firing",
                                    Alert.next_reminder_at == alert.next_reminder_at)
                .values(next_reminder_at=following, reminders_sent=Alert.reminders_sent + (0 if quiet else 1))
                .execution_options(synchronize_session=False))
            if moved.rowcount == 1 and not quiet:  # type: ignore[attr-defined]
                created += outbox.enqueue(alert, rule, "reminder", None)
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    return created
