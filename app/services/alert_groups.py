"""Alert groups: alerts that open (and resolve) together go out as one message per channel.

A rule with ``group_by`` puts each firing and resolved notice of its alerts, per enabled
channel, into the group of its key — ``tenant``, ``group:<probe group id>`` or
``rule:<rule id>`` — instead of the outbox. A group that is not running flushes
``group_wait_seconds`` after its first item; a running one (it sent alerts that have not
all resolved) flushes ``group_interval_seconds`` after its last flush. A flush writes one
``group`` notification listing what waited, which delivery sends like any other.

At the flush, a firing item whose alert has meanwhile resolved is dropped with its
resolved item (an outage shorter than the wait sends nothing); one whose probe's parent
is now down makes its alert ``suppressed``; one an active silence now matches makes it
``silenced``. A resolved item whose firing was dropped this way is dropped too.

The flush takes the group by compare-and-set on its ``version``, moving ``flush_at`` a
lease ahead (a worker that dies mid-flush leaves the group to be taken again), and reads
the items waiting in that transaction; it touches alerts one by one afterwards, each in
its own short transaction, so it never holds a group and an alert together (the
evaluator takes an alert, then its group).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import select, update

from app.extensions import db
from app.models import (Alert, AlertGroup, AlertGroupItem, AlertRule, NotificationChannel, Probe,
                        ProbeGroup, Tenant, utcnow)
from app.services import outbox, silences, task_queue
from app.services.alert_history import system_event
from app.services.bulk import dialect_name, insert_new
from app.services.suppression import down_parents

log = logging.getLogger(__name__)

ITEMS_SHOWN = 50  # alerts listed in one group message; the rest are counted
FLUSH_BATCH = 100
FLUSH_LEASE_SECONDS = 60.0  # a flush not finished by then (its worker died) is taken again
DROPPED = ""  # notification_id of an item that was left out of its group's message


class ProbeLike(Protocol):
    id: int
    tenant_id: int
    group_id: int | None
    name: str


def key_for(rule: AlertRule, probe: ProbeLike) -> tuple[str, str]:
    """The group key of ``rule``'s alert on ``probe``, and its label for a person."""
    if rule.group_by == "tenant":
        tenant = db.session.get(Tenant, rule.tenant_id)
        return "tenant", tenant.name if tenant else ""
    if rule.group_by == "group":
        if probe.group_id is None:
            return "group:none", "probes without a group"
        name = db.session.scalar(select(ProbeGroup.name).where(ProbeGroup.id == probe.group_id))
        return f"group:{probe.group_id}", name or ""
    return f"rule:{rule.id}", rule.name


def add(alert: Alert, rule: AlertRule, probe: ProbeLike, event: str, context: dict[str, Any]) -> list[datetime]:
    """Put ``event`` of ``alert`` into its group on every enabled channel of ``rule``; returns
    when those groups flush. Runs in the caller's transaction."""
    channels = [channel for channel in rule.channels if channel.enabled]
    if not channels:
        return []
    now = utcnow()
    key, label = key_for(rule, probe)
    table = AlertGroup.__table__
    insert_new(table, [{"tenant_id": rule.tenant_id, "channel_id": channel.id, "key": key, "label": label,
                        "interval_seconds": rule.group_interval_seconds, "version": 0} for channel in channels],
               unique=("channel_id", "key"))
    query = (select(AlertGroup).where(AlertGroup.channel_id.in_([channel.id for channel in channels]),
                                      AlertGroup.key == key)
             .order_by(AlertGroup.id).execution_options(populate_existing=True))
    if dialect_name() == "postgresql":
        query = query.with_for_update()
    flushes = []
    for group in db.session.scalars(query).all():
        db.session.add(AlertGroupItem(group_id=group.id, tenant_id=rule.tenant_id, alert_id=alert.id, event=event,
                                      context=context, created_at=now))
        if group.flush_at is None:
            if group.last_flushed_at is None:
                group.flush_at = now + timedelta(seconds=rule.group_wait_seconds)
            else:
                group.flush_at = max(now, group.last_flushed_at + timedelta(seconds=rule.group_interval_seconds))
            group.interval_seconds, group.label = rule.group_interval_seconds, label
        flushes.append(group.flush_at)
    db.session.flush()
    return flushes


def schedule(flush_at: list[datetime]) -> None:
    """Ask an ``alerts`` worker to flush at each of these times (one message per distinct
    second). If the broker is down, beat's housekeeping flushes them (every few seconds)."""
    seconds = sorted({at.replace(microsecond=0) + timedelta(seconds=1) if at.microsecond else at for at in flush_at})
    if not seconds:
        return
    try:
        task_queue.publish_all([task_queue.Message(task_queue.FLUSH_ALERT_GROUPS, {}, ignore_result=True, eta=at,
                                                   priority=task_queue.ALERT_DELIVERY_PRIORITY, retry=False)
                                for at in seconds])
    except Exception as exc:  # noqa: BLE001 - the groups are committed: housekeeping flushes them
        log.warning("could not schedule %d alert group flushes (%s); housekeeping will flush them",
                    len(seconds), exc)


def flush_due(now: datetime | None = None, limit: int = FLUSH_BATCH) -> list[str]:
    """Flush every group that is due; returns the notifications written."""
    now = now or utcnow()
    try:
        due = db.session.execute(select(AlertGroup.id, AlertGroup.version).where(AlertGroup.flush_at <= now)
                                 .order_by(AlertGroup.flush_at).limit(limit)).all()
        db.session.rollback()
    except BaseException:
        db.session.rollback()
        raise
    written = []
    for group_id, version in due:
        notification_id = flush(group_id, version, now)
        if notification_id is not None:
            written.append(notification_id)
    return written


@dataclass(frozen=True)
class _Item:
    id: int
    alert_id: int
    event: str
    context: dict[str, Any]


def flush(group_id: int, version: int, now: datetime) -> str | None:
    """Send what waits in one group if this call takes it; returns the notification written."""
    items = _take(group_id, version, now)
    if items is None:
        return None
    kept, dropped = _sift(items)
    try:
        query = select(AlertGroup).where(AlertGroup.id == group_id).execution_options(populate_existing=True)
        if dialect_name() == "postgresql":
            query = query.with_for_update()  # an evaluator adding items waits, or has added them
        group = db.session.scalars(query).first()
        if group is None:
            db.session.rollback()
            return None
        notification_id = None
        channel = db.session.get(NotificationChannel, group.channel_id)
        if kept and channel is not None:
            notification_id = outbox.add(channel, "group", _context(group, kept))
        _mark([item.id for item in kept], notification_id or DROPPED)
        _mark([item.id for item in dropped], DROPPED)
        if group.run_from_item_id is None and kept:
            group.run_from_item_id = min(item.id for item in kept)
        running = _running(group)
        if not running:
            group.last_flushed_at, group.run_from_item_id = None, None
        group.flush_at = _next_flush(group, running, now)
        db.session.commit()
        return notification_id
    except BaseException:
        db.session.rollback()
        raise


def _next_flush(group: AlertGroup, running: bool, now: datetime) -> datetime | None:
    """When the group flushes next: never, if nothing waits; else items came while this flush
    ran — at the group interval if the group runs, at once if it does not."""
    waiting = db.session.scalar(select(AlertGroupItem.id).where(AlertGroupItem.group_id == group.id,
                                                                AlertGroupItem.notification_id.is_(None)).limit(1))
    if waiting is None:
        return None
    return now + timedelta(seconds=group.interval_seconds) if running else now


def _take(group_id: int, version: int, now: datetime) -> list[_Item] | None:
    """Claim the group and read the items waiting in it. The claim is a lease: its
    ``flush_at`` moves ``FLUSH_LEASE_SECONDS`` ahead, so if this worker dies before the
    message is written, a later pass takes the group again and the items are not lost."""
    try:
        claimed = db.session.execute(
            update(AlertGroup).where(AlertGroup.id == group_id, AlertGroup.version == version,
                                     AlertGroup.flush_at <= now)
            .values(flush_at=now + timedelta(seconds=FLUSH_LEASE_SECONDS), last_flushed_at=now,
                    version=AlertGroup.version + 1)
            .execution_options(synchronize_session=False))
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            db.session.rollback()
            return None
        rows = db.session.execute(
            select(AlertGroupItem.id, AlertGroupItem.alert_id, AlertGroupItem.event, AlertGroupItem.context)
            .where(AlertGroupItem.group_id == group_id, AlertGroupItem.notification_id.is_(None))
            .order_by(AlertGroupItem.id)).all()
        db.session.commit()
        return [_Item(*row) for row in rows]
    except BaseException:
        db.session.rollback()
        raise


@dataclass(frozen=True)
class _AlertNow:
    id: int
    tenant_id: int
    rule_id: int
    probe_id: int
    status: str
    group_id: int | None


def _sift(items: list[_Item]) -> tuple[list[_Item], list[_Item]]:
    """Split the waiting items into those the message tells and those it leaves out."""
    try:
        alerts = {row.id: _AlertNow(*row) for row in db.session.execute(
            select(Alert.id, Alert.tenant_id, Alert.rule_id, Alert.probe_id, Alert.status, Probe.group_id)
            .join(Probe, Probe.id == Alert.probe_id).where(Alert.id.in_({item.alert_id for item in items})))}
        firing = [item for item in items if item.event == "firing"]
        parents = down_parents({alerts[item.alert_id].probe_id for item in firing if item.alert_id in alerts})
        active = silences.active({alert.tenant_id for alert in alerts.values()})
        told = _told_elsewhere({item.alert_id for item in firing})
    finally:
        db.session.rollback()
    left_out: set[int] = set()  # alerts whose firing this message does not tell
    for item in firing:
        alert = alerts.get(item.alert_id)
        if alert is None or alert.status == "resolved":
            left_out.add(item.alert_id)
        elif item.alert_id in told:  # another channel's message told it: this one tells it too
            continue
        elif alert.probe_id in parents:
            if _held_back(alert, "suppressed", parents[alert.probe_id]):
                left_out.add(item.alert_id)
        elif any(silences.matches(silence, alert.probe_id, alert.group_id, alert.rule_id)
                 for silence in active if silence.tenant_id == alert.tenant_id):
            if _held_back(alert, "silenced", None):
                left_out.add(item.alert_id)
    kept = [item for item in items if item.alert_id not in left_out]
    return kept, [item for item in items if item.alert_id in left_out]


def _told_elsewhere(alert_ids: set[int]) -> set[int]:
    """Of ``alert_ids``, those whose firing a group message (of any channel) already told."""
    if not alert_ids:
        return set()
    return set(db.session.scalars(
        select(AlertGroupItem.alert_id).where(AlertGroupItem.alert_id.in_(alert_ids),
                                              AlertGroupItem.event == "firing",
                                              AlertGroupItem.notification_id.is_not(None),
                                              AlertGroupItem.notification_id != DROPPED)))


def _held_back(alert: _AlertNow, how: str, parent_id: int | None) -> bool:
    """Suppress or silence a firing alert whose group messages have not told it yet, in a
    transaction of its own; whether it is held back now — by this call or by the flush of
    another channel's group that got there first. False if it was told meanwhile, or
    acknowledged (it is told as it is)."""
    values: dict[str, Any] = {"notified": False}
    if how == "suppressed":
        values.update(status="suppressed", suppressed_by=parent_id)
        note = "suppressed before its group's message went out: a parent probe is down"
    else:
        values.update(silenced=True)
        note = "silenced before its group's message went out: nothing sent"
    try:
        if alert.id in _told_elsewhere({alert.id}):
            db.session.rollback()
            return False
        changed = db.session.execute(update(Alert).where(Alert.id == alert.id, Alert.status == "firing",
                                                         Alert.silenced.is_(False))
                                     .values(**values).execution_options(synchronize_session=False))
        if changed.rowcount == 1:  # type: ignore[attr-defined]
            system_event(alert, "firing", values.get("status", "firing"), note)
            db.session.commit()
            return True
        now = db.session.execute(select(Alert.status, Alert.silenced).where(Alert.id == alert.id)).first()
        db.session.commit()
        return now is None or now.status in ("suppressed", "resolved") or bool(now.silenced)
    except BaseException:
        db.session.rollback()
        raise


def _mark(item_ids: list[int], notification_id: str) -> None:
    if item_ids:
        db.session.execute(update(AlertGroupItem).where(AlertGroupItem.id.in_(item_ids),
                                                        AlertGroupItem.notification_id.is_(None))
                           .values(notification_id=notification_id).execution_options(synchronize_session=False))


def _running(group: AlertGroup) -> bool:
    """Whether an alert this run of the group told as firing is still open."""
    if group.run_from_item_id is None:
        return False
    return db.session.scalar(
        select(AlertGroupItem.id).join(Alert, Alert.id == AlertGroupItem.alert_id)
        .where(AlertGroupItem.group_id == group.id, AlertGroupItem.id >= group.run_from_item_id,
               AlertGroupItem.event == "firing", AlertGroupItem.notification_id.is_not(None),
               AlertGroupItem.notification_id != DROPPED, Alert.status != "resolved").limit(1)) is not None


def _context(group: AlertGroup, items: list[_Item]) -> dict[str, Any]:
    from app.services.notification_delivery import summary_entry

    entries = [summary_entry(item.event, item.context) for item in items]
    counts = {state: sum(1 for entry in entries if entry["state"] == state)
              for state in ("firing", "acknowledged", "resolved")}
    first = items[0].context
    return {"alerts": entries[:ITEMS_SHOWN], "counts": counts, "more": max(0, len(entries) - ITEMS_SHOWN),
            "group": {"key": group.key, "label": group.label}, "tenant": first.get("tenant", {}),
            "rule": first.get("rule", {}), "timezone": first.get("timezone"), "link": outbox.alerts_link(),
            "notifications": len(entries)}
