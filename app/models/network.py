"""Network probes, their groups, and the results they produce."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import Base, BigIntPK, UTCDateTime, utcnow
from app.models.encrypted import EncryptedJSON


class ProbeGroup(Base):
    __tablename__ = "probe_groups"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Probe(Base):
    """What to check, how, and how often.

    ``spec`` holds the fields of the probe's protocol only (the spec model its prober
    module defines, e.g. an HTTP probe's method and headers); the columns hold what every
    protocol shares. Credentials are not in ``spec``: a secret header is listed there
    with the mask as its value, and its value is in ``secrets`` (encrypted,
    ``{"headers": {name: value}}``), which is loaded only when asked for.
    ``next_run_at`` is the next due slot in epoch milliseconds (integers keep the
    scheduler's compare-and-set arithmetic identical on PostgreSQL and SQLite);
    ``NULL`` means "not scheduled" (disabled, or not an auto probe).
    """

    __tablename__ = "probes"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    group_id: Mapped[int | None] = mapped_column(ForeignKey("probe_groups.id", ondelete="SET NULL"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    protocol: Mapped[str] = mapped_column(String(16))
    target: Mapped[str] = mapped_column(String(2048))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    secrets: Mapped[dict[str, Any] | None] = mapped_column(EncryptedJSON, deferred=True)
    timeout_seconds: Mapped[float] = mapped_column(Float, default=10.0)
    interval_seconds: Mapped[int] = mapped_column(Integer, default=60)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    auto_probe: Mapped[bool] = mapped_column(Boolean, default=True)
    conditions: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    next_run_at: Mapped[int | None] = mapped_column(BigInteger, index=True)
    missed_runs: Mapped[int] = mapped_column(BigInteger, default=0)
    # Slots skipped just before the last claimed one: the claim's compare-and-set sets it,
    # so the claimer reads back how many slots it skipped in the same statement.
    last_missed_slots: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    group: Mapped[ProbeGroup | None] = relationship()


class ProbeResult(Base):
    """One run of one probe.

    ``run_key`` makes a run idempotent: ``auto:<slot ms>`` for a scheduled run,
    ``manual:<task id>`` for one asked for by hand, so a redelivered message
    writes nothing twice.
    """

    __tablename__ = "probe_results"
    __table_args__ = (
        UniqueConstraint("probe_id", "run_key"),
        Index("ix_probe_results_probe_id_created_at", "probe_id", "created_at"),
        Index("ix_probe_results_tenant_id_created_at", "tenant_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    probe_id: Mapped[int] = mapped_column(ForeignKey("probes.id", ondelete="CASCADE"))
    run_key: Mapped[str] = mapped_column(String(80))
    probe_type: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    response_time_ms: Mapped[float | None] = mapped_column(Float)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    dns_ms: Mapped[float | None] = mapped_column(Float)
    connect_ms: Mapped[float | None] = mapped_column(Float)
    tls_ms: Mapped[float | None] = mapped_column(Float)
    processing_ms: Mapped[float | None] = mapped_column(Float)
    transfer_ms: Mapped[float | None] = mapped_column(Float)
    cert_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    bytes_read: Mapped[int] = mapped_column(Integer, default=0)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # what the protocol measured beyond the columns
    scheduled_for: Mapped[datetime | None] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    in_maintenance: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())  # see MaintenanceWindow
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class ProbeLease(Base):
    """A claimed scheduled slot that has no stored result yet: the database's record of work in flight.

    The dispatcher writes one when it claims a slot; the result writer deletes it in the
    transaction that stores the slot's result. Until then ``expires_ms`` says when the
    dispatcher may hand the slot to another worker (``attempt`` counts those re-issues),
    and ``stale_ms`` (the probe's next slot) when it is no longer worth running. Times
    are epoch milliseconds, like ``probes.next_run_at``.
    """

    __tablename__ = "probe_leases"

    probe_id: Mapped[int] = mapped_column(ForeignKey("probes.id", ondelete="CASCADE"), primary_key=True)
    slot_ms: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    lease_ms: Mapped[int] = mapped_column(Integer)  # the probe's timeout plus the lease margin
    started_ms: Mapped[int | None] = mapped_column(BigInteger)  # NULL while the run waits in the queue
    expires_ms: Mapped[int] = mapped_column(BigInteger, index=True)
    stale_ms: Mapped[int] = mapped_column(BigInteger, index=True)


class ProbeRunLoss(Base):
    """Scheduled slots that ended without a stored result, by reason.

    ``reason`` is one of ``missed`` (nothing dispatched the slot: the dispatcher was down
    or held back by a full queue; ``slots`` may be more than one), ``expired`` (claimed,
    but no worker started it before its probe's next slot), ``lost`` (a worker started it
    and died, and no other worker ran it while the slot was current) and ``unwritten``
    (measured, but the database was down longer than the worker's buffer could hold).
    """

    __tablename__ = "probe_run_losses"
    __table_args__ = (
        Index("ix_probe_run_losses_tenant_id_recorded_at", "tenant_id", "recorded_at"),
        Index("ix_probe_run_losses_probe_id_slot_ms", "probe_id", "slot_ms"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    probe_id: Mapped[int] = mapped_column(ForeignKey("probes.id", ondelete="CASCADE"))
    reason: Mapped[str] = mapped_column(String(16))
    slot_ms: Mapped[int] = mapped_column(BigInteger)  # the (first) slot lost
    slots: Mapped[int] = mapped_column(Integer, default=1)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
