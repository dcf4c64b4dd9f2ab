"""Notification channels of the caller's tenant: where alert notifications are sent."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic.fields import FieldInfo

from app.alerting.channels import CHANNEL_KINDS
from app.api import CONFLICT, NOT_FOUND, api_blueprint
from app.api.schemas import RowId
from app.api.security import role, tenant_id
from app.models import NotificationChannel
from app.services import notification_channels

_KINDS = "; ".join(f"`{kind}`: {text}" for kind, text in CHANNEL_KINDS.items())
blueprint = api_blueprint("notification-channels", f"Where alert notifications go. Kinds: {_KINDS}.")

ChannelCreate = notification_channels.ChannelInput
ChannelUpdate = create_model(  # type: ignore[call-overload]
    "ChannelUpdate",
    __config__=ConfigDict(extra="forbid", strict=True, str_strip_whitespace=True),
    **{name: (info.annotation | None, FieldInfo.merge_field_infos(info, default=None, default_factory=None))
       for name, info in notification_channels.ChannelInput.model_fields.items()},
)
ChannelUpdate.__doc__ = ("Fields to change. `secrets` replaces the stored secrets, except that a value sent back "
                         "masked (`********`) keeps the stored one; omit it to keep them all.")


class ChannelPath(BaseModel):
    channel_id: RowId


class ChannelOut(BaseModel):
    id: int
    name: str
    kind: str
    settings: dict[str, Any] = Field(description="As stored; credentials inside URLs read `********`.")
    secrets: dict[str, Any] = Field(description="Which secrets are set: values always read `********`.")
    templates: dict[str, Any]
    rate_limit: int
    rate_window_seconds: int
    enabled: bool
    failing: bool = Field(description="The last sends failed (alerts.failing_after in a row): look at last_error.")
    consecutive_failures: int
    last_error: str | None
    last_failure_at: datetime | None
    last_success_at: datetime | None
    created_at: datetime
    updated_at: datetime


class ChannelList(BaseModel):
    items: list[ChannelOut]


class TestResult(BaseModel):
    notification_id: str
    ok: bool
    error: str | None = Field(description="What the channel answered, when the send failed.")


def _out(channel: NotificationChannel) -> dict[str, Any]:
    shown = notification_channels.shown(channel)
    return ChannelOut(
        id=channel.id, name=channel.name, kind=channel.kind, settings=shown.settings, secrets=shown.secrets,
        templates=channel.templates or {}, rate_limit=channel.rate_limit,
        rate_window_seconds=channel.rate_window_seconds, enabled=channel.enabled,
        failing=notification_channels.is_failing(channel), consecutive_failures=channel.consecutive_failures,
        last_error=channel.last_error, last_failure_at=channel.last_failure_at,
        last_success_at=channel.last_success_at, created_at=channel.created_at, updated_at=channel.updated_at,
    ).model_dump(mode="json")


@blueprint.get("/notification-channels", summary="List notification channels", responses={200: ChannelList})
@role("viewer")
def list_channels() -> Any:
    return {"items": [_out(channel) for channel in notification_channels.list_channels(tenant_id())]}


@blueprint.post("/notification-channels", summary="Create a notification channel",
                responses={201: ChannelOut, **CONFLICT})
@role("admin")
def create_channel(body: ChannelCreate) -> Any:  # type: ignore[valid-type]
    return _out(notification_channels.create_channel(tenant_id(), body.model_dump())), 201  # type: ignore[attr-defined]


@blueprint.get("/notification-channels/<int:channel_id>", summary="Get a notification channel",
               responses={200: ChannelOut, **NOT_FOUND})
@role("viewer")
def get_channel(path: ChannelPath) -> Any:
    return _out(notification_channels.get_channel(tenant_id(), path.channel_id))


@blueprint.patch("/notification-channels/<int:channel_id>", summary="Change a notification channel",
                 responses={200: ChannelOut, **NOT_FOUND, **CONFLICT})
@role("admin")
def update_channel(path: ChannelPath, body: ChannelUpdate) -> Any:  # type: ignore[valid-type]
    changes = body.model_dump(exclude_unset=True)  # type: ignore[attr-defined]
    return _out(notification_channels.update_channel(tenant_id(), path.channel_id, changes))


@blueprint.delete("/notification-channels/<int:channel_id>",
                  summary="Delete a notification channel (rules stop notifying it)", responses={204: None, **NOT_FOUND})
@role("admin")
def delete_channel(path: ChannelPath) -> Any:
    notification_channels.delete_channel(tenant_id(), path.channel_id)
    return "", 204


@blueprint.post("/notification-channels/<int:channel_id>/test",
                summary="Send a test notification now and say whether the channel took it",
                responses={200: TestResult, **NOT_FOUND})
@role("operator")
def test_channel(path: ChannelPath) -> Any:
    outcome = notification_channels.send_test(tenant_id(), path.channel_id)
    return TestResult(notification_id=outcome.notification_id, ok=outcome.ok, error=outcome.error).model_dump()
