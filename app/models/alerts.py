"""Alerting: notification channels, alert rules, their per-probe state, alerts and the outbox.

The evaluator reads stored probe results and moves each (rule, probe) pair's state
forward only by compare-and-set on ``alert_states.last_result_id``, so two evaluators
given the same results agree on one outcome. An alert transition and the notifications
it causes are written in one transaction; a notification row is the outbox entry the
delivery task claims with a lease, so a crash between "decided" and "sent" loses nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (JSON, BigInteger, Boolean, Column, Float, ForeignKey, Index, Integer, String, Table, Text,
                        UniqueConstraint, false, text)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import Base, BigIntPK, UTCDateTime, utcnow
from app.models.encrypted import EncryptedJSON

ALERT_STATUSES = ("firing", "acknowledged", "suppressed", "resolved")
RULE_KINDS = ("down", "slow", "certificate")
GROUP_BY = ("none", "tenant", "group", "rule")
NOTIFICATION_STATUSES = ("pending", "sending", "sent", "failed", "summarized")


class NotificationChannel(Base):
    """Where a tenant's notifications go: a kind (``webhook``, ``email``, ``apprise``), its settings
    and its encrypted secrets.

    ``window_started_at``/``window_sends`` are the rate limit's fixed window, taken by
    compare-and-set so two delivery workers never exceed it together. The failure columns
    flag a channel that keeps failing.
    """

    __tablename__ = "notification_channels"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(32))
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    secrets: Mapped[dict[str, Any] | None] = mapped_column(EncryptedJSON)
    # {event: {"subject": …, "body": …}}: the tenant's own templates; events not listed use the defaults.
    templates: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    rate_limit: Mapped[int] = mapped_column(Integer, default=20)  # sends per window
    rate_window_seconds: Mapped[int] = mapped_column(Integer, default=60)
    window_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    window_sends: Mapped[int] = mapped_column(Integer, default=0)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_failure_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


alert_rule_channels = Table(
    "alert_rule_channels", Base.metadata,
    Column("rule_id", ForeignKey("alert_rules.id", ondelete="CASCADE"), primary_key=True),
    Column("channel_id", ForeignKey("notification_channels.id", ondelete="CASCADE"), primary_key=True, index=True),
)


class AlertRule(Base):
    """When to open and resolve an alert, for which probes, and whom to tell.

    Scope: one probe (``probe_id``), or every probe of the tenant narrowed by ``group_id``
    and/or ``protocol``. Each stored result is a verdict for the rule — bad, good, or not
    counted (a failed run says nothing about slowness) — and the alert fires when
    ``threshold`` of the last ``window`` counted verdicts are bad (``window`` equal to
    ``threshold``: that many in a row), and resolves after ``recovery`` good ones in a row.
    """

    __tablename__ = "alert_rules"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(Text, default="")
    kind: Mapped[str] = mapped_column(String(16))
    probe_id: Mapped[int | None] = mapped_column(ForeignKey("probes.id", ondelete="CASCADE"), index=True)
    group_id: Mapped[int | None] = mapped_column(ForeignKey("probe_groups.id", ondelete="CASCADE"), index=True)
    protocol: Mapped[str | None] = mapped_column(String(16))
    threshold: Mapped[int] = mapped_column(Integer, default=3)
    window: Mapped[int] = mapped_column(Integer, default=3)
    recovery: Mapped[int] = mapped_column(Integer, default=1)
    slow_ms: Mapped[float | None] = mapped_column(Float)  # kind "slow": a response slower than this is bad
    cert_days: Mapped[int | None] = mapped_column(Integer)  # kind "certificate": fewer days left is bad
    reminder_seconds: Mapped[int] = mapped_column(Integer, default=0)  # 0: never remind
    send_resolved: Mapped[bool] = mapped_column(Boolean, default=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # Grouping: alerts of the same key (tenant, probe group or rule) go out as one message per
    # channel, gathered for group_wait_seconds, then one update per group_interval_seconds.
    group_by: Mapped[str] = mapped_column(String(16), default="none", server_default="none")
    group_wait_seconds: Mapped[int] = mapped_column(Integer, default=30, server_default="30")
    group_interval_seconds: Mapped[int] = mapped_column(Integer, default=300, server_default="300")
    # Flapping: more than flap_changes changes within flap_window_seconds (0: never flapping),
    # then silence until no change for flap_settle_seconds.
    flap_changes: Mapped[int] = mapped_column(Integer, default=5, server_default="5")
    flap_window_seconds: Mapped[int] = mapped_column(Integer, default=600, server_default="600")
    flap_settle_seconds: Mapped[int] = mapped_column(Integer, default=600, server_default="600")
    # Escalation: [{"after_seconds": N, "channel_ids": [...]}, ...], in increasing after_seconds.
    escalation: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    channels: Mapped[list[NotificationChannel]] = relationship(secondary=alert_rule_channels,
                                                               order_by=NotificationChannel.id)


class AlertState(Base):
    """A rule's memory of one probe: the verdicts it has seen, up to ``last_result_id``.

    ``recent`` holds the last ``window`` counted verdicts, oldest first (``b`` bad, ``g``
    good); ``good_streak`` the good verdicts in a row at its end; ``bad_since`` the time
    of the first bad verdict since the window last held none. Every change is a
    compare-and-set on ``version``, so a result is counted once whichever evaluator sees
    it first, a redelivered evaluation changes nothing, and an operator resolving the
    alert by hand is never undone by an evaluator that read the state before.
    """

    __tablename__ = "alert_states"

    rule_id: Mapped[int] = mapped_column(ForeignKey("alert_rules.id", ondelete="CASCADE"), primary_key=True)
    probe_id: Mapped[int] = mapped_column(ForeignKey("probes.id", ondelete="CASCADE"), primary_key=True, index=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    last_result_id: Mapped[int] = mapped_column(BigInteger, default=0)
    recent: Mapped[str] = mapped_column(String(100), default="")
    good_streak: Mapped[int] = mapped_column(Integer, default=0)
    bad_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    version: Mapped[int] = mapped_column(Integer, default=0)
    alert_id: Mapped[int | None] = mapped_column(ForeignKey("alerts.id", ondelete="SET NULL"))
    # The rule fired on a result in maintenance: firing, but no alert opened (until a result outside it).
    held: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # The rule's condition holds (while flapping the alert stays open whatever this says).
    firing: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    flapping: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # When firing last changed, Unix seconds, newest last (at most flap_changes + 1 kept).
    changes: Mapped[list[float]] = mapped_column(JSON, default=list)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Alert(Base):
    """One episode of a rule firing for one probe: ``firing`` → ``acknowledged`` → ``resolved``,
    or ``suppressed`` (a parent probe is down: nothing sent) → ``firing`` when the parent
    recovers first.

    At most one alert per (rule, probe) is open (not resolved): a partial unique index
    says so, behind the evaluator's compare-and-set. ``notified`` says a firing notice was
    written for it (so its resolution is told, even under a silence); ``silenced`` that a
    silence withheld it (told once the silence ends if the alert is still firing).
    """

    __tablename__ = "alerts"
    __table_args__ = (
        Index("uq_alerts_open_rule_probe", "rule_id", "probe_id", unique=True,
              postgresql_where=text("status <> 'resolved'"), sqlite_where=text("status <> 'resolved'")),
        Index("ix_alerts_tenant_id_opened_at", "tenant_id", "opened_at"),
        Index("ix_alerts_next_reminder_at", "next_reminder_at",
              postgresql_where=text("status = 'firing'"), sqlite_where=text("status = 'firing'")),
        Index("ix_alerts_next_escalation_at", "next_escalation_at",
              postgresql_where=text("status = 'firing'"), sqlite_where=text("status = 'firing'")),
        Index("ix_alerts_suppressed_by", "suppressed_by",
              postgresql_where=text("status = 'suppressed'"), sqlite_where=text("status = 'suppressed'")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    rule_id: Mapped[int] = mapped_column(ForeignKey("alert_rules.id", ondelete="CASCADE"), index=True)
    probe_id: Mapped[int] = mapped_column(ForeignKey("probes.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="firing")
    reason: Mapped[str] = mapped_column(Text, default="")  # why it fired, for a person
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    since: Mapped[datetime] = mapped_column(UTCDateTime)  # the first bad result of the episode
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    acknowledged_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_result_id: Mapped[int | None] = mapped_column(BigInteger)
    next_reminder_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reminders_sent: Mapped[int] = mapped_column(Integer, default=0)
    suppressed_by: Mapped[int | None] = mapped_column(ForeignKey("probes.id", ondelete="SET NULL"))
    flapping: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    notified: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    silenced: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    escalation_step: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # steps sent
    next_escalation_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    events: Mapped[list[AlertEvent]] = relationship(order_by="AlertEvent.id", cascade="all, delete-orphan",
                                                    back_populates="alert")


class AlertEvent(Base):
    """One transition of an alert: from what, to what, by whom, when and why."""

    __tablename__ = "alert_events"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"), index=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(100))  # "system", or the user's name
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    note: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    alert: Mapped[Alert] = relationship(back_populates="events")


class Notification(Base):
    """The outbox: one message to one channel, written with the transition that causes it.

    ``id`` is stable across retries and sent with the message, so a receiver can drop a
    second delivery. ``pending`` rows are due at ``next_attempt_at``; a delivery task takes
    one by setting ``sending`` with ``lease_until``, and a row whose lease ran out is
    taken again (the worker died mid-send); ``claim`` names the holder, so a worker whose
lease ran out cannot record the outcome of a send another worker now owns. ``summarized`` rows went out inside the
    summary notification ``summary_id`` because the channel was over its rate limit.
    """

    __tablename__ = "notifications"
    __table_args__ = (
        Index("ix_notifications_due", "next_attempt_at",
              postgresql_where=text("status IN ('pending', 'sending')"),
              sqlite_where=text("status IN ('pending', 'sending')")),
        Index("ix_notifications_channel_id_status", "channel_id", "status"),
        Index("ix_notifications_tenant_id_created_at", "tenant_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    channel_id: Mapped[int] = mapped_column(ForeignKey("notification_channels.id", ondelete="CASCADE"))
    alert_id: Mapped[int | None] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"), index=True)
    event: Mapped[str] = mapped_column(String(16))
    context: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # what the templates render
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    claim: Mapped[str | None] = mapped_column(String(32))  # who holds the lease: set by each claim
    deadline_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    summary_id: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    attempt_log: Mapped[list[NotificationAttempt]] = relationship(order_by="NotificationAttempt.id",
                                                                  cascade="all, delete-orphan")


class NotificationAttempt(Base):
    """One try at sending a notification, successful or not, with the channel's answer."""

    __tablename__ = "notification_attempts"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    notification_id: Mapped[str] = mapped_column(ForeignKey("notifications.id", ondelete="CASCADE"), index=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    attempted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    duration_ms: Mapped[float] = mapped_column(Float)
    ok: Mapped[bool] = mapped_column(Boolean)
    error: Mapped[str | None] = mapped_column(Text)
    worker: Mapped[str] = mapped_column(String(255), default="")


class AlertGroup(Base):
    """Alerts gathered for one channel under one key (``tenant``, ``group:<id>``, ``rule:<id>``):
    the items waiting go out as one notification at ``flush_at``.

    ``flush_at`` is set when an item arrives and none is due yet: the rule's group wait after
    it for a group that is not running (nothing flushed, or everything flushed has resolved),
    else the group interval after the last flush. A flush takes the group by compare-and-set
    on ``version``, so two workers never send the same items.
    """

    __tablename__ = "alert_groups"
    __table_args__ = (UniqueConstraint("channel_id", "key"),
                      Index("ix_alert_groups_flush_at", "flush_at"))

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    channel_id: Mapped[int] = mapped_column(ForeignKey("notification_channels.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(String(200), default="")  # for a person: the group's or rule's name
    flush_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_flushed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # None: the group is not running
    # The first item of the running group: it stops running once every alert sent since has resolved.
    run_from_item_id: Mapped[int | None] = mapped_column(BigInteger)
    interval_seconds: Mapped[int] = mapped_column(Integer, default=300)
    version: Mapped[int] = mapped_column(Integer, default=0)


class AlertGroupItem(Base):
    """One alert event (``firing`` or ``resolved``) waiting in a group, or sent in
    ``notification_id``."""

    __tablename__ = "alert_group_items"
    __table_args__ = (Index("ix_alert_group_items_group_id_notification_id", "group_id", "notification_id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("alert_groups.id", ondelete="CASCADE"))
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"), index=True)
    event: Mapped[str] = mapped_column(String(16))
    context: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # the alert's notification context
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    notification_id: Mapped[str | None] = mapped_column(String(36))


class ProbeDependency(Base):
    """``probe_id`` depends on ``parent_id``: while the parent is down, the probe's alerts are
    suppressed. The service refuses a dependency that would close a cycle."""

    __tablename__ = "probe_dependencies"

    probe_id: Mapped[int] = mapped_column(ForeignKey("probes.id", ondelete="CASCADE"), primary_key=True)
    parent_id: Mapped[int] = mapped_column(ForeignKey("probes.id", ondelete="CASCADE"), primary_key=True, index=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)


class Silence(Base):
    """An operator's ad-hoc mute: alerts it matches send nothing from ``starts_at`` to ``ends_at``.

    Matchers are id lists, all of the given kinds must match (an empty list matches any):
    the alert's probe among ``probe_ids``, its probe's group among ``group_ids``, its rule
    among ``rule_ids``. At least one list is not empty. A deleted probe, group or rule just
    stops matching (the silence never widens).
    """

    __tablename__ = "silences"
    __table_args__ = (Index("ix_silences_tenant_id_ends_at", "tenant_id", "ends_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    comment: Mapped[str] = mapped_column(Text)
    probe_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    group_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    rule_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_by_name: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
