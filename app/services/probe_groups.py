"""Probe groups: named sets of probes within one tenant."""

from __future__ import annotations

from sqlalchemy import func, select

from app.extensions import db
from app.models import Probe, ProbeGroup
from app.services.errors import InvalidInputError, NotFoundError
from app.services.unique_names import commit_unique


def _name(value: str) -> str:
    name = (value or "").strip()
    if not name or len(name) > 100:
        raise InvalidInputError("must be 1 to 100 characters", field="name")
    return name


def create_group(tenant_id: int, name: str, description: str = "") -> ProbeGroup:
    group = ProbeGroup(tenant_id=tenant_id, name=_name(name), description=description or "")
    db.session.add(group)
    commit_unique("a probe group", group.name)
    return group


def get_group(tenant_id: int, group_id: int) -> ProbeGroup:
    group = db.session.get(ProbeGroup, group_id)
    if group is None or group.tenant_id != tenant_id:
        raise NotFoundError(f"probe group {group_id} not found")
    return group


def list_groups(tenant_id: int) -> list[tuple[ProbeGroup, int]]:
    """Groups of a tenant with the number of probes in each."""
    counts = (
        select(Probe.group_id, func.count(Probe.id).label("probes"))
        .where(Probe.tenant_id == tenant_id).group_by(Probe.group_id).subquery()
    )
    rows = db.session.execute(
        select(ProbeGroup, func.coalesce(counts.c.probes, 0))
        .outerjoin(counts, counts.c.group_id == ProbeGroup.id)
        .where(ProbeGroup.tenant_id == tenant_id).order_by(ProbeGroup.id)
    ).all()
    return [(group, count) for group, count in rows]


def probe_count(tenant_id: int, group_id: int) -> int:
    return db.session.scalar(
        select(func.count(Probe.id)).where(Probe.tenant_id == tenant_id, Probe.group_id == group_id)
    ) or 0


def update_group(tenant_id: int, group_id: int, name: str | None = None,
                 description: str | None = None) -> ProbeGroup:
    group = get_group(tenant_id, group_id)
    if name is not None:
        group.name = _name(name)
    if description is not None:
        group.description = description
    commit_unique("a probe group", group.name)
    return group


def delete_group(tenant_id: int, group_id: int) -> None:
    """Delete a group; its probes stay, ungrouped."""
    db.session.delete(get_group(tenant_id, group_id))
    db.session.commit()

