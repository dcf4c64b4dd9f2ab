"""Deliver the outbox: claim notifications with a lease, send them, record every attempt.

A notification is claimed by one compare-and-set ``UPDATE`` that sets ``sending``, a
fresh ``claim`` and ``lease_until`` (``SKIP LOCKED`` on PostgreSQL, so two delivery
workers take different rows). It is marked ``sent`` only after the channel accepted it,
and only by the holder of the claim; a worker that dies mid-send leaves the row
``sending`` until its lease runs out, and the next delivery run takes it again. So a
notification is delivered at least once, and its id — the same on every attempt — lets
a receiver drop a repeat.

A failed send is retried after an exponential backoff with full jitter, until the
notification's deadline; a permanent failure (the channel refused the message, its
configuration is wrong) ends it at once. Both leave the row ``failed`` with the
channel's error, and count against the channel, which is shown as failing after
``alerts.failing_after`` failures in a row.

Each channel has a rate limit (``rate_limit`` sends per ``rate_window_seconds``, a fixed
window taken under the channel row's lock) whose last send is kept for a summary: a
flood that does not fit in the rest is gathered for a few seconds and goes out as one
summary message within the window; when the window is full they wait for the next one.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update

from app.alerting.channels import ChannelConfigError, DeliveryError, Message, build_channel
from app.core.config import active_settings
from app.extensions import db
from app.models import Notification, NotificationAttempt, NotificationChannel, utcnow
from app.services import outbox
from app.services.bulk import dialect_name
from app.services.notification_messages import full_context, render_message

log = logging.getLogger(__name__)

CLAIM_LIMIT = 200
SUMMARY_ITEMS_SHOWN = 50  # alerts listed in one summary message; the rest are counted
SUMMARY_GATHER_SECONDS = 10.0
_WORKER = f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class Claimed:
    id: str
    channel_id: int
    claim: str
    attempts: int


@dataclass
class DeliveryReport:
    sent: int = 0
    failed: int = 0
    retrying: int = 0
    summarized: int = 0
    waiting: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def _due(now: datetime) -> Any:
    return or_(and_(Notification.status == "pending", Notification.next_attempt_at <= now),
               and_(Notification.status == "sending", Notification.lease_until <= now))


def claim(ids: list[str] | None = None, limit: int = CLAIM_LIMIT) -> list[Claimed]:
    """Take up to ``limit`` due notifications (of ``ids`` only, if given) and commit the claim."""
    now = utcnow()
    lease_until = now + timedelta(seconds=active_settings().alerts.delivery_lease_seconds)
    token = uuid.uuid4().hex
    due = select(Notification.id).where(_due(now)).order_by(Notification.next_attempt_at).limit(limit)
    if ids is not None:
        due = due.where(Notification.id.in_(ids))
    if db.session.get_bind().dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    try:
        rows = db.session.execute(
            update(Notification)
            .where(Notification.id.in_(due.scalar_subquery()), _due(now))
            .values(status="sending", claim=token, lease_until=lease_until, attempts=Notification.attempts + 1)
            .returning(Notification.id, Notification.channel_id, Notification.attempts)
            .execution_options(synchronize_session=False)
        ).all()
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    return [Claimed(row.id, row.channel_id, token, row.attempts) for row in rows]


def deliver(ids: list[str] | None = None, limit: int = CLAIM_LIMIT) -> DeliveryReport:
    """Claim what is due (``ids`` only, if given) and send it, channel by channel."""
    report = DeliveryReport()
    by_channel: dict[int, list[Claimed]] = defaultdict(list)
    for item in claim(ids, limit):
        by_channel[item.channel_id].append(item)
    for channel_id, items in by_channel.items():
        for item in _plan(channel_id, items, report):
            _send(item, report)
    return report


def _plan(channel_id: int, items: list[Claimed], report: DeliveryReport) -> list[Claimed]:
    """Take room in the channel's rate window for ``items``; returns what to send now.

    The last send of every window is kept for a summary. What fits in the rest goes out
    one by one. What does not is gathered for ``summary_gather`` (from its oldest
    notification) and then sent as one summary, with every other notification waiting for
    the channel — within the same window. A full window makes them wait for the next one.
    A test message never waits: it is sent if the window has room at all.
    """
    try:
        query = select(NotificationChannel).where(NotificationChannel.id == channel_id)
        if dialect_name() == "postgresql":
            query = query.with_for_update()
        channel = db.session.scalars(query.execution_options(populate_existing=True)).one()
        now = utcnow()
        window = timedelta(seconds=channel.rate_window_seconds)
        if channel.window_started_at is None or channel.window_started_at + window <= now:
            channel.window_started_at, channel.window_sends = now, 0
        room = channel.rate_limit - channel.window_sends
        send: list[Claimed] = []
        claimed = db.session.execute(select(Notification.created_at, Notification.event)
                                     .where(Notification.id.in_([item.id for item in items]))).all()
        tests_only = all(event == "test" for _, event in claimed)
        if room <= 0:
            _postpone(items, channel.window_started_at + window)
            report.waiting += len(items)
        elif len(items) < room or tests_only:  # a test is sent now or not at all: it never waits
            channel.window_sends += len(items)
            send = items
        else:
            ready_at = min(created for created, _ in claimed) + summary_gather(channel)
            if ready_at > now:
                _postpone(items, ready_at)
                report.waiting += len(items)
            else:
                channel.window_sends += 1
                message, carried = _summarize(channel, items)
                send = [message]
                report.summarized += carried if carried > 1 else 0
        db.session.commit()
        return send
    except BaseException:
        db.session.rollback()
        raise


def summary_gather(channel: NotificationChannel) -> timedelta:
    """How long a flood is gathered before its summary goes out: a sixth of the window, 1 to 10 s."""
    return timedelta(seconds=min(SUMMARY_GATHER_SECONDS, max(1.0, channel.rate_window_seconds / 6)))


def _postpone(items: list[Claimed], until: datetime) -> None:
    for item in items:
        db.session.execute(
            update(Notification).where(Notification.id == item.id, Notification.claim == item.claim)
            .values(status="pending", claim=None, lease_until=None, next_attempt_at=until,
                    attempts=Notification.attempts - 1)  # waiting for room is not an attempt
            .execution_options(synchronize_session=False))


def _summarize(channel: NotificationChannel, items: list[Claimed]) -> tuple[Claimed, int]:
    """One summary notification carrying ``items`` and every other notification waiting for the
    channel (not held by another worker); they are marked ``summarized`` by it. Returns what
    to send — the summary, or the one notification itself when nothing else is waiting — and
    how many notifications it carries."""
    token = items[0].claim
    lease = db.session.scalar(select(Notification.lease_until).where(Notification.id == items[0].id))
    waiting = select(Notification.id).where(Notification.channel_id == channel.id, Notification.status == "pending",
                                            Notification.event != "test")
    if dialect_name() == "postgresql":
        waiting = waiting.with_for_update(skip_locked=True)
    carried = [item.id for item in items] + list(db.session.scalars(waiting))
    if len(carried) == 1:  # nothing else came while it waited: it goes out as itself
        return items[0], 1
    rows = db.session.scalars(select(Notification).where(Notification.id.in_(carried))
                              .order_by(Notification.created_at)).all()
    entries = [summary_entry(row.event, row.context) for row in rows]
    counts = {state: sum(1 for entry in entries if entry["state"] == state)
              for state in ("firing", "acknowledged", "resolved")}
    first = rows[0].context if rows else {}
    context = {"alerts": entries[:SUMMARY_ITEMS_SHOWN], "counts": counts, "tenant": first.get("tenant", {}),
               "timezone": first.get("timezone"), "link": outbox.alerts_link(),
               "more": max(0, len(entries) - SUMMARY_ITEMS_SHOWN), "notifications": len(entries)}
    summary_id = outbox.add(channel, "summary", context)
    db.session.flush()
    db.session.execute(update(Notification).where(Notification.id == summary_id)
                       .values(status="sending", claim=token, lease_until=lease, attempts=1)
                       .execution_options(synchronize_session=False))
    db.session.execute(update(Notification).where(Notification.id.in_([row.id for row in rows]))
                       .values(status="summarized", summary_id=summary_id, claim=None, lease_until=None)
                       .execution_options(synchronize_session=False))
    return Claimed(summary_id, channel.id, token, 1), len(rows)


def summary_entry(event: str, context: dict[str, Any]) -> dict[str, Any]:
    """One summarized notification as the summary template lists it."""
    alert = context.get("alert") or {}
    state = "resolved" if event == "resolved" else alert.get("state") or event
    return {"id": alert.get("id"), "state": state, "event": event, "status": context.get("status"),
            "error": context.get("error"), "since": context.get("since"), "link": context.get("link"),
            "probe": {key: (context.get("probe") or {}).get(key) for key in ("name", "target")},
            "rule": {"name": (context.get("rule") or {}).get("name")}}


@dataclass(frozen=True)
class _Outgoing:
    """What one send needs, read before the transaction ends: nothing is held open while
    the channel is called."""

    tenant_id: int
    deadline_at: datetime
    enabled: bool
    kind: str
    settings: dict[str, Any]
    secrets: dict[str, Any]
    message: Message


def _outgoing(item: Claimed) -> _Outgoing | None:
    try:
        notification = db.session.get(Notification, item.id, populate_existing=True)
        channel = db.session.get(NotificationChannel, item.channel_id, populate_existing=True)
        if notification is None or channel is None or notification.claim != item.claim:
            return None
        rendered = render_message(channel, notification.event, notification.context)
        return _Outgoing(
            tenant_id=notification.tenant_id, deadline_at=notification.deadline_at, enabled=channel.enabled,
            kind=channel.kind, settings=dict(channel.settings), secrets=dict(channel.secrets or {}),
            message=Message(notification_id=notification.id, event=notification.event, subject=rendered.subject,
                            body=rendered.body, data=full_context(channel, notification.event, notification.context)))
    finally:
        db.session.rollback()


def _send(item: Claimed, report: DeliveryReport) -> None:
    outgoing = _outgoing(item)
    if outgoing is None:
        return
    started = time.monotonic()
    error, permanent = None, False
    try:
        if not outgoing.enabled:
            raise DeliveryError("the channel is disabled", permanent=True)
        build_channel(outgoing.kind, outgoing.settings, outgoing.secrets).send(
            outgoing.message, timeout=active_settings().alerts.send_timeout_seconds)
    except DeliveryError as exc:
        error, permanent = str(exc), exc.permanent
    except ChannelConfigError as exc:
        error, permanent = f"the channel's configuration is invalid: {exc}", True
    except Exception as exc:  # a bug or an unforeseen library error: keep the notification, retry it
        log.exception("sending notification %s through channel %s failed unexpectedly", item.id, item.channel_id)
        error = f"unexpected error while sending: {type(exc).__name__}"
    _record(item, outgoing, (time.monotonic() - started) * 1000, error, permanent, report)


def backoff_seconds(attempts: int) -> float:
    settings = active_settings().alerts
    ceiling = min(settings.retry_backoff_max_seconds, settings.retry_backoff_seconds * 2 ** max(0, attempts - 1))
    return random.uniform(0, ceiling)


def _record(item: Claimed, outgoing: _Outgoing, duration_ms: float, error: str | None, permanent: bool,
            report: DeliveryReport) -> None:
    now = utcnow()
    mine = and_(Notification.id == item.id, Notification.claim == item.claim)
    try:
        db.session.add(NotificationAttempt(notification_id=item.id, tenant_id=outgoing.tenant_id,
                                           attempted_at=now, duration_ms=duration_ms, ok=error is None,
                                           error=error, worker=_WORKER))
        if error is None:
            values: dict[str, Any] = {"status": "sent", "sent_at": now, "last_error": None}
            report.sent += 1
        else:
            retry_at = now + timedelta(seconds=backoff_seconds(item.attempts))
            if permanent or retry_at > outgoing.deadline_at:
                values = {"status": "failed", "last_error": error}
                report.failed += 1
                if outgoing.message.event != "test":  # a test's sender is shown the outcome itself
                    log.warning("notification %s (channel %s) failed for good after %d attempts: %s", item.id,
                                item.channel_id, item.attempts, error)
            else:
                values = {"status": "pending", "next_attempt_at": retry_at, "last_error": error}
                report.retrying += 1
        db.session.execute(update(Notification).where(mine)
                           .values(claim=None, lease_until=None, **values)
                           .execution_options(synchronize_session=False))
        if error is None:
            db.session.execute(update(Notification).where(Notification.summary_id == item.id)
                               .values(sent_at=now).execution_options(synchronize_session=False))
            channel_values: dict[str, Any] = {"consecutive_failures": 0, "last_success_at": now}
        else:
            channel_values = {"consecutive_failures": NotificationChannel.consecutive_failures + 1,
                              "last_error": error, "last_failure_at": now}
        db.session.execute(update(NotificationChannel).where(NotificationChannel.id == item.channel_id)
                           .values(**channel_values).execution_options(synchronize_session=False))
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
