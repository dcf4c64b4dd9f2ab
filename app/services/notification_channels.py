"""Notification channels of a tenant: create, change, test, list and delete.

Settings and secrets are validated by the channel kind (``app.alerting.channels``) and
templates by the sandboxed template engine when they are saved, so a broken
configuration is refused then — not discovered when an alert needs it. Secrets are
stored encrypted (``NotificationChannel.secrets``) and never shown: a client that sends
the mask back for a secret keeps the stored value.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import select

from app.alerting.channels import CHANNELS, EVENTS, MASK, ChannelConfigError, build_channel
from app.alerting.templates import TemplateError, validate_template
from app.core.config import active_settings
from app.extensions import db
from app.models import AlertRule, Notification, NotificationChannel, utcnow
from app.services import notification_delivery, outbox
from app.services.masking import restore_masked
from app.services.errors import InvalidInputError, NotFoundError, describe_validation_error
from app.services.unique_names import commit_unique

TEMPLATE_EVENTS = EVENTS


class TemplateInput(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    subject: str | None = Field(None, max_length=1000)
    body: str | None = Field(None, max_length=20000)


class ChannelInput(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=100, pattern=r"\S", description="Unique within the tenant.")
    kind: str = Field(description=f"One of {', '.join(CHANNELS)}.")
    settings: dict[str, Any] = Field(default_factory=dict, description="The kind's settings (shown as stored).")
    secrets: dict[str, Any] = Field(default_factory=dict,
                                    description="The kind's secrets: stored encrypted, shown masked.")
    templates: dict[str, TemplateInput] = Field(
        default_factory=dict, description=f"Per event ({', '.join(TEMPLATE_EVENTS)}): subject and body templates "
                                          f"(Jinja2, sandboxed); events not given use the defaults.")
    rate_limit: int = Field(20, ge=1, le=10000, description="Sends per rate_window_seconds; more becomes a summary.")
    rate_window_seconds: int = Field(60, ge=1, le=86400)
    enabled: bool = True


@dataclass(frozen=True)
class TestOutcome:
    notification_id: str
    ok: bool
    error: str | None


def _validated(data: dict[str, Any]) -> ChannelInput:
    try:
        fields = ChannelInput(**data)
    except ValidationError as exc:
        field, message = describe_validation_error(exc.errors(include_url=False)[0])
        raise InvalidInputError(message, field=field) from None
    try:
        build_channel(fields.kind, fields.settings, fields.secrets)
    except ChannelConfigError as exc:
        message = str(exc)
        if exc.field and message.startswith(f"{exc.field}: "):
            message = message[len(exc.field) + 2:]
        raise InvalidInputError(message, field=exc.field) from None
    for event, template in fields.templates.items():
        if event not in TEMPLATE_EVENTS:
            raise InvalidInputError(f"unknown event; expected one of {', '.join(TEMPLATE_EVENTS)}",
                                    field=f"templates.{event}")
        for part in ("subject", "body"):
            text = getattr(template, part)
            if text is None:
                continue
            try:
                validate_template(text)
            except TemplateError as exc:
                raise InvalidInputError(str(exc), field=f"templates.{event}.{part}") from None
    return fields


def _stored_templates(fields: ChannelInput) -> dict[str, Any]:
    return {event: template.model_dump(exclude_none=True) for event, template in fields.templates.items()
            if template.subject is not None or template.body is not None}


def create_channel(tenant_id: int, data: dict[str, Any]) -> NotificationChannel:
    fields = _validated(data)
    channel = NotificationChannel(tenant_id=tenant_id, name=fields.name, kind=fields.kind, settings=fields.settings,
                                  secrets=fields.secrets or None, templates=_stored_templates(fields),
                                  rate_limit=fields.rate_limit, rate_window_seconds=fields.rate_window_seconds,
                                  enabled=fields.enabled)
    db.session.add(channel)
    commit_unique("a notification channel", fields.name)
    return channel


def get_channel(tenant_id: int, channel_id: int) -> NotificationChannel:
    channel = db.session.get(NotificationChannel, channel_id)
    if channel is None or channel.tenant_id != tenant_id:
        raise NotFoundError(f"notification channel {channel_id} not found")
    return channel


def list_channels(tenant_id: int | None) -> list[NotificationChannel]:
    """The tenant's channels (``None``: every tenant's, for the platform's CLI)."""
    query = select(NotificationChannel).order_by(NotificationChannel.id)
    if tenant_id is not None:
        query = query.where(NotificationChannel.tenant_id == tenant_id)
    return list(db.session.scalars(query))


def update_channel(tenant_id: int, channel_id: int, changes: dict[str, Any]) -> NotificationChannel:
    """Change some fields. ``secrets`` replaces the stored secrets as a whole, except that a
    masked value keeps what is stored; an omitted ``secrets`` keeps them all."""
    channel = get_channel(tenant_id, channel_id)
    stored_secrets = channel.secrets or {}
    current = {"name": channel.name, "kind": channel.kind, "settings": channel.settings, "secrets": stored_secrets,
               "templates": channel.templates, "rate_limit": channel.rate_limit,
               "rate_window_seconds": channel.rate_window_seconds, "enabled": channel.enabled}
    if "secrets" in changes and isinstance(changes["secrets"], dict):
        changes = {**changes, "secrets": restore_masked(changes["secrets"], stored_secrets)}
    if "settings" in changes and isinstance(changes["settings"], dict):
        changes = {**changes, "settings": _keep_shown_settings(changes["settings"], channel)}
    if changes.get("kind", channel.kind) != channel.kind and "secrets" not in changes:
        current["secrets"] = {}
    fields = _validated({**current, **changes})
    channel.name, channel.kind, channel.settings = fields.name, fields.kind, fields.settings
    channel.secrets = fields.secrets or None
    channel.templates = _stored_templates(fields)
    channel.rate_limit, channel.rate_window_seconds, channel.enabled = (
        fields.rate_limit, fields.rate_window_seconds, fields.enabled)
    commit_unique("a notification channel", fields.name)
    return channel


def delete_channel(tenant_id: int, channel_id: int) -> None:
    """Delete a channel; rules stop notifying it (escalation steps included: a step left with
    no channel is dropped), its notifications go with it."""
    db.session.delete(get_channel(tenant_id, channel_id))
    for rule in db.session.scalars(select(AlertRule).where(AlertRule.tenant_id == tenant_id)):
        steps = [{**step, "channel_ids": [cid for cid in step["channel_ids"] if cid != channel_id]}
                 for step in rule.escalation or []]
        kept = [step for step in steps if step["channel_ids"]]
        if kept != (rule.escalation or []):
            rule.escalation = kept
    db.session.commit()


def is_failing(channel: NotificationChannel) -> bool:
    return channel.consecutive_failures >= active_settings().alerts.failing_after


@dataclass(frozen=True)
class Shown:
    """A channel's configuration as it may be shown."""

    settings: dict[str, Any]
    secrets: dict[str, Any]


def shown(channel: NotificationChannel) -> Shown:
    """Settings with credentials inside URLs masked; secrets only as set (masked) or not."""
    kind = CHANNELS.get(channel.kind)
    secret_names = set(kind.Secrets.model_fields) if kind else set(channel.secrets or {})
    try:
        described = build_channel(channel.kind, channel.settings, channel.secrets or {}).describe()
    except ChannelConfigError:  # stored before a stricter check: show it masked all the same
        described = {**channel.settings, **{name: MASK for name in channel.secrets or {}}}
    return Shown(settings={key: value for key, value in described.items() if key not in secret_names},
                 secrets={key: value for key, value in described.items() if key in secret_names})


def _keep_shown_settings(sent: dict[str, Any], channel: NotificationChannel) -> dict[str, Any]:
    """A setting sent back exactly as it was shown (a URL with its credentials masked) keeps the stored value."""
    displayed = shown(channel).settings
    return {key: channel.settings[key] if key in channel.settings and value == displayed.get(key)
            and value != channel.settings[key] else value for key, value in sent.items()}


def send_test(tenant_id: int, channel_id: int) -> TestOutcome:
    """Send a test message now, through the same outbox and delivery as an alert; it is not retried."""
    channel = get_channel(tenant_id, channel_id)
    now = utcnow()
    context = {"test": {"channel": channel.name, "at": now.isoformat()}}
    notification_id = outbox.add(channel, "test", context)
    db.session.flush()
    db.session.get(Notification, notification_id).deadline_at = now  # type: ignore[union-attr]
    db.session.commit()
    notification_delivery.deliver([notification_id])
    notification = db.session.get(Notification, notification_id, populate_existing=True)
    assert notification is not None
    if notification.status == "pending":  # no room in the rate window: a test is not worth waiting for
        wait = max(1.0, (notification.next_attempt_at - utcnow()) / timedelta(seconds=1))
        notification.status = "failed"
        notification.last_error = f"the channel is over its rate limit; try again in {wait:.0f} s"
        db.session.commit()
    return TestOutcome(notification_id, notification.status == "sent", notification.last_error)
