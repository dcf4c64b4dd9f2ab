"""Escalation: an alert nobody acknowledged tells further channels, step by step, each step once."""

from __future__ import annotations

from datetime import datetime, timedelta

from app.models import AlertRule


def due_at(rule: AlertRule, opened_at: datetime, step: int) -> datetime | None:
    """When step ``step`` (0-based) of ``rule``'s escalation is due for an alert opened at
    ``opened_at``; None when the rule has no such step."""
    steps = rule.escalation or []
    if step >= len(steps):
        return None
    return opened_at + timedelta(seconds=int(steps[step]["after_seconds"]))
