"""Which probes have a parent that is down now: the question behind a suppressed alert."""

from __future__ import annotations

from typing import Iterable

from sqlalchemy import select

from app.extensions import db
from app.models import Alert, AlertRule, ProbeDependency

# A parent is down while it has one of these alerts from a ``down`` rule (suppressed: its own
# parent is down, so it is too, as far as its children can tell).
DOWN_STATUSES = ("firing", "acknowledged", "suppressed")


def down_parents(probe_ids: Iterable[int]) -> dict[int, int]:
    """For each of ``probe_ids`` with a parent that is down now, one such parent (the lowest id)."""
    ids = sorted(set(probe_ids))
    if not ids:
        return {}
    rows = db.session.execute(
        select(ProbeDependency.probe_id, ProbeDependency.parent_id)
        .join(Alert, Alert.probe_id == ProbeDependency.parent_id)
        .join(AlertRule, AlertRule.id == Alert.rule_id)
        .where(ProbeDependency.probe_id.in_(ids), Alert.status.in_(DOWN_STATUSES), AlertRule.kind == "down")
        .order_by(ProbeDependency.probe_id, ProbeDependency.parent_id)).all()
    found: dict[int, int] = {}
    for probe_id, parent_id in rows:
        found.setdefault(probe_id, parent_id)
    return found
