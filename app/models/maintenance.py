"""Maintenance windows: times when a tenant's probes keep running but no alert opens or is sent.

A window is one-off (``starts_at`` to ``ends_at``) or recurring (``cron`` in ``timezone``,
each occurrence lasting ``duration_seconds``, from ``starts_at`` until ``ends_at`` when
set). It covers the probes it names, the probes of the groups it names, or every probe
of the tenant (``all_probes``).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Column, ForeignKey, Integer, String, Table, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import Base, UTCDateTime, utcnow
from app.models.network import Probe, ProbeGroup

maintenance_window_probes = Table(
    "maintenance_window_probes", Base.metadata,
    Column("window_id", ForeignKey("maintenance_windows.id", ondelete="CASCADE"), primary_key=True),
    Column("probe_id", ForeignKey("probes.id", ondelete="CASCADE"), primary_key=True, index=True),
)

maintenance_window_groups = Table(
    "maintenance_window_groups", Base.metadata,
    Column("window_id", ForeignKey("maintenance_windows.id", ondelete="CASCADE"), primary_key=True),
    Column("group_id", ForeignKey("probe_groups.id", ondelete="CASCADE"), primary_key=True, index=True),
)


class MaintenanceWindow(Base):
    __tablename__ = "maintenance_windows"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    comment: Mapped[str] = mapped_column(Text, default="")
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # one-off: its end; recurring: the last start
    cron: Mapped[str | None] = mapped_column(String(100))
    duration_seconds: Mapped[int | None] = mapped_column(Integer)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    all_probes: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    probes: Mapped[list[Probe]] = relationship(secondary=maintenance_window_probes, order_by=Probe.id)
    groups: Mapped[list[ProbeGroup]] = relationship(secondary=maintenance_window_groups, order_by=ProbeGroup.id)

    @property
    def recurring(self) -> bool:
        return self.cron is not None
