"""The ``apprise`` kind: any service apprise knows (Slack, Teams, Telegram, Discord, DingTalk, WeCom, Feishu, ntfy …).

An apprise URL carries the service's token, so the URLs are secrets. Building the channel
asks apprise to load each URL and refuses one it does not recognise, naming it by its
position and scheme only. ``send`` notifies each URL in turn, in the calling thread
(``async_mode`` off, so the caller's timeout and log capture hold) with apprise's state
kept in memory. The reason for a failure is what the plugin logged at WARNING or above
during the call: apprise >= 2 returns it with the result (its own capture, exact even
when it runs the plugin in a worker thread); with an older apprise it is read from the
``apprise`` logger during the call. Every part of the URL that could be a token is
removed from it. Any URL failing is a temporary error: apprise does not tell a revoked
token from an outage.

apprise is imported on first use: loading its plugins takes a noticeable part of a
second, which the API and CLI need not pay until a channel of this kind is used.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import threading
from contextlib import contextmanager
from typing import Any, ClassVar, Iterator
from urllib.parse import unquote

from pydantic import Field, field_validator

from app.alerting.channels.base import (
    MASK,
    Channel,
    ChannelConfigError,
    DeliveryError,
    Message,
    StrictModel,
    one_line,
)

MAX_URLS = 20
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]{0,31})://")
_DNS_NAME = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,12}$")
_PIECES = re.compile(r"[/:@?&=#,;+\s]+")
# What an event means to services that colour or sort by type.
_NOTIFY_TYPES = {"firing": "failure", "reminder": "warning", "acknowledged": "info", "resolved": "success",
                 "escalation": "failure", "flapping": "warning", "group": "warning", "summary": "info", "test": "info"}


class AppriseSettings(StrictModel):
    """Nothing to set besides the URLs, which are secrets."""


class AppriseSecrets(StrictModel):
    urls: list[str] = Field(min_length=1, max_length=MAX_URLS,
                            description="apprise URLs, e.g. tgram://bot-token/chat-id, slack://T…/B…/…")

    @field_validator("urls")
    @classmethod
    def _urls(cls, value: list[str]) -> list[str]:
        for index, url in enumerate(value):
            if not url.strip():
                raise ValueError(f"URL {index + 1} is empty")
            if len(url) > 4096:
                raise ValueError(f"URL {index + 1} is longer than 4096 characters")
            if not _SCHEME.match(url.strip()):
                raise ValueError(f"URL {index + 1} does not start with a scheme such as tgram:// or slack://")
        return [url.strip() for url in value]


def _scheme(url: str) -> str:
    match = _SCHEME.match(url)
    return match.group(1).lower() if match else ""


def _host(url: str) -> str | None:
    """The URL's host when it is plainly a host (a DNS name with a dot, an IP address, localhost), not a token."""
    rest = url.split("://", 1)[1] if "://" in url else url
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    if "@" in authority:
        authority = authority.rsplit("@", 1)[1]
    host = authority
    if host.startswith("["):
        host = host[1:].split("]", 1)[0]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    return host if host == "localhost" or _DNS_NAME.match(host) else None


def shown_url(url: str) -> str:
    """``url`` as it may be shown: its scheme, its host when it is plainly one; everything else masked."""
    host = _host(url)
    return f"{_scheme(url) or '?'}://{host}/{MASK}" if host else f"{_scheme(url) or '?'}://{MASK}"


def scrub(text: str, url: str) -> str:
    """``text`` with every piece of ``url`` that could be a credential replaced by the mask."""
    host = _host(url)
    match = _SCHEME.match(url)
    prefix = match.group(0) if match else ""
    pieces: set[str] = set()
    for form in (url, unquote(url)):
        body = form[len(prefix):] if prefix and form.startswith(prefix) else form
        pieces.update(piece for piece in _PIECES.split(body) if len(piece) >= 4 and piece != host)
        pieces.add(body)
    for piece in sorted(pieces, key=len, reverse=True):
        if piece:
            text = text.replace(piece, MASK)
    return text


def _asset() -> Any:
    import apprise

    try:  # persistent storage (apprise >= 1.9) in memory: a worker writes nothing to disk
        return apprise.AppriseAsset(async_mode=False, storage_mode="memory")
    except Exception:  # noqa: BLE001 (an apprise without the keyword refuses it in its own way)
        return apprise.AppriseAsset(async_mode=False)


class _Collect(logging.Handler):
    """Collects the WARNING+ messages of the ``apprise`` logger while it is attached (``thread``: of that thread only)."""

    def __init__(self, thread: int | None) -> None:
        super().__init__(logging.WARNING)
        self.thread = thread
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if self.thread is not None and record.thread != self.thread:
            return
        try:
            self.messages.append(record.getMessage())
        except Exception:  # noqa: BLE001 (a badly formatted record must not break a send)
            pass


@contextmanager
def _apprise_log(this_thread: bool) -> Iterator[_Collect]:
    handler = _Collect(threading.get_ident() if this_thread else None)
    logger = logging.getLogger("apprise")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def _schema_known(scheme: str) -> bool:
    try:
        from apprise import NotificationManager
    except ImportError:  # pragma: no cover (every apprise >= 1.9 has it)
        return True
    return scheme.lower() in NotificationManager()


def _said(result: Any, logged: list[str]) -> list[str]:
    """The WARNING+ messages of one notify call: from its result where apprise keeps them, else as logged."""
    entries = getattr(result, "logs", None)
    if callable(entries):
        return [str(entry.message) for entry in entries()
                if str(getattr(entry, "level", "")).upper() in ("WARNING", "ERROR", "CRITICAL")]
    return logged


def _reason(messages: list[str], url: str) -> str:
    unique = list(dict.fromkeys(one_line(scrub(message, url), 200) for message in messages if message.strip()))
    return "; ".join(unique[-3:])


class AppriseChannel(Channel[AppriseSettings, AppriseSecrets]):
    kind: ClassVar[str] = "apprise"
    description: ClassVar[str] = ("any apprise URL: Slack, Microsoft Teams, Telegram, Discord, DingTalk, "
                                  "WeCom, Feishu/Lark, ntfy, Gotify, …")
    Settings = AppriseSettings
    Secrets = AppriseSecrets

    def __init__(self, settings: AppriseSettings, secrets: AppriseSecrets) -> None:
        super().__init__(settings, secrets)
        self._services: list[str] = []

    def _load(self, index: int, url: str) -> Any:
        import apprise

        field = f"secrets.urls[{index}]"
        scheme = _scheme(url)
        if not _schema_known(scheme):
            raise ChannelConfigError(f"{field}: apprise does not know the scheme {scheme}://", field)
        with _apprise_log(this_thread=True) as log:  # loading runs in the calling thread
            plugin = apprise.Apprise.instantiate(url, asset=_asset())
        if plugin is None:
            reason = _reason(log.messages, url)
            raise ChannelConfigError(f"{field}: not a valid {scheme}:// URL" + (f" ({reason})" if reason else ""),
                                     field)
        return plugin

    def check(self) -> None:
        self._services = [str(self._load(index, url).service_name) for index, url in enumerate(self.secrets.urls)]

    def describe(self) -> dict[str, Any]:
        return {"urls": [{"service": service, "url": shown_url(url)}
                         for service, url in zip(self._services, self.secrets.urls)]}

    def send(self, message: Message, timeout: float = 10.0) -> None:
        import apprise

        failures: list[str] = []
        total = len(self.secrets.urls)
        for index, url in enumerate(self.secrets.urls):
            try:
                plugin = self._load(index, url)
            except ChannelConfigError as error:  # this apprise no longer accepts a URL it accepted before
                raise DeliveryError(f"apprise: {error.message}", permanent=True) from None
            plugin.socket_connect_timeout = timeout
            plugin.socket_read_timeout = timeout
            notifier = apprise.Apprise(asset=plugin.asset)
            notifier.add(plugin)
            with _apprise_log(this_thread=False) as log:  # only read when the result has no logs
                try:
                    result = notifier.notify(body=message.body, title=message.subject,
                                             notify_type=_NOTIFY_TYPES[message.event],
                                             body_format=apprise.NotifyFormat.TEXT)
                    delivered, said = bool(result), _said(result, log.messages)
                except Exception as error:  # noqa: BLE001 (a plugin bug is one failed URL, not a crashed task)
                    delivered, said = False, [f"apprise raised {type(error).__name__}"]
            if not delivered:
                reason = _reason(said, url) or "apprise gave no reason"
                where = f"URL {index + 1} of {total}" if total > 1 else "the URL"
                failures.append(f"{where} ({plugin.service_name}, {shown_url(url)}): {reason}")
        if failures:
            head = "apprise could not deliver to " + (f"{len(failures)} of {total} URLs" if total > 1 else "its URL")
            raise DeliveryError(f"{head}: " + " | ".join(failures), permanent=False)
