"""The history of alerts: one ``alert_events`` row per thing the system did to an alert."""

from __future__ import annotations

from typing import Protocol

from app.extensions import db
from app.models import AlertEvent, utcnow

SYSTEM = "system"


class AlertIds(Protocol):
    id: int
    tenant_id: int


def system_event(alert: AlertIds, frm: str | None, to: str, note: str) -> None:
    """Record, in the caller's transaction, that the system moved ``alert`` from ``frm`` to
    ``to`` (the same status for a note: silenced, escalated, flapping) and why."""
    db.session.add(AlertEvent(alert_id=alert.id, tenant_id=alert.tenant_id, from_status=frm, to_status=to,
                              actor=SYSTEM, note=note, at=utcnow()))
