"""Notification channels: one module per kind, on the shared base in ``base``.

``build_channel(kind, settings, secrets)`` validates a stored configuration and returns a
channel; ``channel.send(message, timeout)`` delivers one ``Message`` or raises
``DeliveryError(text, permanent)``; ``channel.describe()`` is the configuration as it may
be shown. ``CHANNELS`` maps each kind to its class, whose ``Settings`` and ``Secrets``
pydantic models give the API its schemas. Adding a kind is a module here and a line below.
"""

from __future__ import annotations

from typing import Any

from app.alerting.channels.apprise_urls import AppriseChannel
from app.alerting.channels.base import (
    EVENTS,
    MASK,
    Channel,
    ChannelConfigError,
    DeliveryError,
    Message,
    mask_url,
)
from app.alerting.channels.smtp import EmailChannel
from app.alerting.channels.webhook import SIGNATURE_HEADER, WebhookChannel, sign

CHANNELS: dict[str, type[Channel[Any, Any]]] = {
    channel.kind: channel for channel in (WebhookChannel, EmailChannel, AppriseChannel)
}

# kind -> one line saying what it is, for --help and the API's documentation.
CHANNEL_KINDS: dict[str, str] = {kind: channel.description for kind, channel in CHANNELS.items()}


def build_channel(kind: str, settings: dict[str, Any] | None, secrets: dict[str, Any] | None) -> Channel[Any, Any]:
    """A ready channel of ``kind``; raises ``ChannelConfigError`` naming the field at fault."""
    channel = CHANNELS.get(kind)
    if channel is None:
        raise ChannelConfigError(f"unknown channel kind {kind!r}: expected one of {', '.join(CHANNELS)}", "kind")
    return channel.build(settings, secrets)


__all__ = [
    "CHANNELS",
    "CHANNEL_KINDS",
    "EVENTS",
    "MASK",
    "SIGNATURE_HEADER",
    "AppriseChannel",
    "Channel",
    "ChannelConfigError",
    "DeliveryError",
    "EmailChannel",
    "Message",
    "WebhookChannel",
    "build_channel",
    "mask_url",
    "sign",
]
