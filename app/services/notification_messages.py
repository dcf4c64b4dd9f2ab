"""The subject and body of a notification: the channel's templates for its event, else the defaults.

The stored context (``outbox.context_for``) is what was true at the transition; the event,
the channel and how long the alert has lasted are added when the message is rendered.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.alerting.templates import render_message as render_templates
from app.models import NotificationChannel, utcnow


@dataclass(frozen=True)
class Rendered:
    subject: str
    body: str


def _duration_seconds(context: dict[str, Any]) -> int | None:
    since = context.get("since")
    if not since:
        return None
    end = (context.get("alert") or {}).get("resolved_at")
    try:
        until = datetime.fromisoformat(end) if end else utcnow()
        return max(0, int((until - datetime.fromisoformat(since)).total_seconds()))
    except (TypeError, ValueError):
        return None


def full_context(channel: NotificationChannel, event: str, context: dict[str, Any]) -> dict[str, Any]:
    return {**context, "event": event, "duration_seconds": _duration_seconds(context),
            "channel": {"id": channel.id, "name": channel.name, "kind": channel.kind}}


def render_message(channel: NotificationChannel, event: str, context: dict[str, Any]) -> Rendered:
    own = (channel.templates or {}).get(event) or {}
    return Rendered(*render_templates(own.get("subject"), own.get("body"), full_context(channel, event, context)))
