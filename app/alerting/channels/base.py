"""What every channel kind shares: the message, the two errors, the base class, URL masking.

A channel kind is a ``Channel`` subclass with a pydantic model for its ``settings``
(shown to operators, stored as they are) and one for its ``secrets`` (stored encrypted,
never shown). Building validates both, then the kind's own ``check()``; ``send`` speaks
the kind's protocol once, within the timeout it is given, and raises ``DeliveryError``
saying whether a retry could help. Retries, backoff and the record of attempts belong
to the caller.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, ValidationError

EVENTS = ("firing", "reminder", "acknowledged", "resolved", "escalation", "flapping", "group", "summary", "test")

MASK = "********"


@dataclass(frozen=True)
class Message:
    """One notification, ready to send.

    ``notification_id`` is the same on every retry of one notification, so receivers can
    drop duplicates. ``data`` is the structured context the subject and body were rendered
    from (the names documented in ``app.alerting.templates``); it must be JSON-serialisable.
    """

    notification_id: str
    event: str
    subject: str
    body: str
    data: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.event not in EVENTS:
            raise ValueError(f"unknown event {self.event!r}: expected one of {', '.join(EVENTS)}")
        if not self.notification_id:
            raise ValueError("a message needs its notification id")


class ChannelConfigError(ValueError):
    """A channel's settings or secrets are not usable; ``message`` is for a person, ``field`` names the value."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def __str__(self) -> str:
        return self.message


class DeliveryError(Exception):
    """A send failed. ``permanent``: retrying the same message through the same configuration cannot help."""

    def __init__(self, text: str, permanent: bool) -> None:
        super().__init__(text)
        self.text = text
        self.permanent = permanent

    def __str__(self) -> str:
        return self.text


class StrictModel(BaseModel):
    """Settings and secrets models refuse unknown keys and are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


SettingsT = TypeVar("SettingsT", bound=StrictModel)
SecretsT = TypeVar("SecretsT", bound=StrictModel)


def _location(prefix: str, loc: tuple[int | str, ...]) -> str:
    path = prefix
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def config_error(error: ValidationError, prefix: str) -> ChannelConfigError:
    """The first problem of a pydantic error as one sentence naming its field (``settings.url``)."""
    first = error.errors(include_url=False)[0]
    where = _location(prefix, tuple(first["loc"]))
    if first["type"] == "extra_forbidden":
        text = f"{where}: unknown field"
    elif first["type"] == "missing":
        text = f"{where}: required"
    else:
        reason = str(first["msg"])
        reason = reason.removeprefix("Value error, ").removeprefix("Assertion failed, ")
        text = f"{where}: {reason}"
    more = error.error_count() - 1
    if more:
        text += f" (and {more} more problem{'s' if more > 1 else ''})"
    return ChannelConfigError(text, where)


class Channel(ABC, Generic[SettingsT, SecretsT]):
    """One notification channel kind: validated configuration in, one delivery per ``send``."""

    kind: ClassVar[str]
    description: ClassVar[str]
    Settings: ClassVar[type[StrictModel]]
    Secrets: ClassVar[type[StrictModel]]

    def __init__(self, settings: SettingsT, secrets: SecretsT) -> None:
        self.settings = settings
        self.secrets = secrets

    @classmethod
    def build(cls, settings: dict[str, Any] | None, secrets: dict[str, Any] | None) -> "Channel[Any, Any]":
        """Validate ``settings`` and ``secrets``; raises ``ChannelConfigError``."""
        try:
            parsed_settings = cls.Settings.model_validate(settings or {})
        except ValidationError as error:
            raise config_error(error, "settings") from None
        try:
            parsed_secrets = cls.Secrets.model_validate(secrets or {})
        except ValidationError as error:
            raise config_error(error, "secrets") from None
        channel = cls(parsed_settings, parsed_secrets)  # type: ignore[arg-type]
        channel.check()
        return channel

    def check(self) -> None:
        """Checks across fields or against a library, after the models have validated; raise ``ChannelConfigError``."""

    @abstractmethod
    def send(self, message: Message, timeout: float = 10.0) -> None:
        """Deliver ``message`` once, within about ``timeout`` seconds; raises ``DeliveryError``."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """The configuration as it may be shown: settings with URLs masked, secrets only as set or not."""


def mask_url(url: str) -> str:
    """``url`` without what may be a credential: the user:password part and the query string are masked."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "(unreadable URL)"
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None else f"{host}:{port}"
    if parts.username is not None or parts.password is not None:
        netloc = f"{MASK}@{netloc}"
    query = MASK if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def masked_secrets(secrets: StrictModel) -> dict[str, Any]:
    """Each secret field as ``MASK`` when set (a mapping: its keys, values masked), ``None`` when not."""
    shown: dict[str, Any] = {}
    for name, value in secrets:
        if isinstance(value, dict):
            shown[name] = {key: MASK for key in value}
        elif isinstance(value, (list, tuple)):
            shown[name] = [MASK for _ in value]
        else:
            shown[name] = MASK if value not in (None, "") else None
    return shown


_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def one_line(text: str, limit: int = 300) -> str:
    """``text`` as one printable line of at most ``limit`` characters, for an error message."""
    flat = " ".join(_CONTROL.sub(" ", text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
