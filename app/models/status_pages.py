"""Status pages: a tenant's public, read-only view of chosen probes and groups, with incident notes.

A page is private until ``public`` is set (opt-in); its ``slug`` names it in the public URL and
is unique across tenants.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Column, ForeignKey, String, Table, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import Base, UTCDateTime, utcnow
from app.models.network import Probe, ProbeGroup

status_page_probes = Table(
    "status_page_probes", Base.metadata,
    Column("page_id", ForeignKey("status_pages.id", ondelete="CASCADE"), primary_key=True),
    Column("probe_id", ForeignKey("probes.id", ondelete="CASCADE"), primary_key=True, index=True),
)

status_page_groups = Table(
    "status_page_groups", Base.metadata,
    Column("page_id", ForeignKey("status_pages.id", ondelete="CASCADE"), primary_key=True),
    Column("group_id", ForeignKey("probe_groups.id", ondelete="CASCADE"), primary_key=True, index=True),
)


class StatusPage(Base):
    __tablename__ = "status_pages"

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    slug: Mapped[str] = mapped_column(String(63), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    public: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    probes: Mapped[list[Probe]] = relationship(secondary=status_page_probes, order_by=Probe.id)
    groups: Mapped[list[ProbeGroup]] = relationship(secondary=status_page_groups, order_by=ProbeGroup.id)


class StatusPageIncident(Base):
    """A note on a status page about something going wrong, and how it goes."""

    __tablename__ = "status_page_incidents"

    id: Mapped[int] = mapped_column(primary_key=True)
    page_id: Mapped[int] = mapped_column(ForeignKey("status_pages.id", ondelete="CASCADE"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    message: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16))  # investigating | identified | monitoring | resolved
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
