"""Per-probe history at three levels (minute, hour, day), kept as results are stored.

A row of ``probe_rollups`` sums the results of one probe whose ``created_at`` falls in
one bucket: ``level`` is the bucket's length in seconds (60, 3600 or 86400) and
``bucket`` its start in epoch seconds (UTC). Every column is additive (or a min/max),
so concurrent writers merge by ``INSERT … ON CONFLICT DO UPDATE``. ``rt_sketch`` is the
bucket's response-time sketch, a JSON object bin -> count (``app.services.latency_sketch``;
NULL when no result has a response time), merged by the writer under the row lock the
upsert took (``app.services.rollups.record``).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Float, ForeignKey, Index, Integer, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base

PHASES = ("dns", "connect", "tls", "processing", "transfer")


class ProbeRollup(Base):
    __tablename__ = "probe_rollups"
    __table_args__ = (
        Index("ix_probe_rollups_tenant_id_level_bucket", "tenant_id", "level", "bucket"),
        Index("ix_probe_rollups_level_bucket", "level", "bucket"),
    )

    probe_id: Mapped[int] = mapped_column(ForeignKey("probes.id", ondelete="CASCADE"), primary_key=True)
    level: Mapped[int] = mapped_column(Integer, primary_key=True)
    bucket: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    count: Mapped[int] = mapped_column(Integer, default=0)
    failures: Mapped[int] = mapped_column(Integer, default=0)  # status other than success
    maintenance_count: Mapped[int] = mapped_column(Integer, default=0)
    maintenance_failures: Mapped[int] = mapped_column(Integer, default=0)
    timed_count: Mapped[int] = mapped_column(Integer, default=0)  # results with a response time
    rt_sum: Mapped[float] = mapped_column(Float, default=0.0)
    rt_min: Mapped[float | None] = mapped_column(Float)
    rt_max: Mapped[float | None] = mapped_column(Float)
    dns_sum: Mapped[float] = mapped_column(Float, default=0.0)
    dns_count: Mapped[int] = mapped_column(Integer, default=0)
    connect_sum: Mapped[float] = mapped_column(Float, default=0.0)
    connect_count: Mapped[int] = mapped_column(Integer, default=0)
    tls_sum: Mapped[float] = mapped_column(Float, default=0.0)
    tls_count: Mapped[int] = mapped_column(Integer, default=0)
    processing_sum: Mapped[float] = mapped_column(Float, default=0.0)
    processing_count: Mapped[int] = mapped_column(Integer, default=0)
    transfer_sum: Mapped[float] = mapped_column(Float, default=0.0)
    transfer_count: Mapped[int] = mapped_column(Integer, default=0)
    rt_sketch: Mapped[str | None] = mapped_column(Text)

