"""The native webhook: one signed JSON POST per notification, for scripts and in-house tools.

The request body is ``{"id", "event", "subject", "body", "data", "sent_at"}`` (``sent_at``
in Unix seconds). With a signing key, ``X-Admin-Mit-Signature: sha256=<hex>`` carries
HMAC-SHA256(signing key, the raw body bytes); a receiver recomputes it over the bytes it
read, before parsing, and may refuse an old ``sent_at`` to stop replays. The
``X-Admin-Mit-Notification-Id`` header is the same on every retry of one notification.

2xx is delivered. A redirect is not followed (a POST must not turn into a GET somewhere
else) and, like a 4xx other than 408/429, is permanent: the configuration needs a person.
5xx, 408, 429, timeouts and connection failures are temporary. Only the first few KiB of
an error answer are read (for the error text), undecoded, and a 2xx answer's body not at
all, so a server that streams without end costs nothing. ``requests`` (already there for
apprise) does the HTTP; every socket wait is bounded by ``timeout``.
"""

from __future__ import annotations

import hashlib
import hmac
import http
import json
import re
import socket
import time
from datetime import date, datetime
from typing import Any, ClassVar
from urllib.parse import urlsplit

import requests
from pydantic import Field, field_validator, model_validator

from app.alerting.channels.base import (
    Channel,
    ChannelConfigError,
    DeliveryError,
    Message,
    StrictModel,
    mask_url,
    masked_secrets,
    one_line,
)

SIGNATURE_HEADER = "X-Admin-Mit-Signature"
ID_HEADER = "X-Admin-Mit-Notification-Id"
EVENT_HEADER = "X-Admin-Mit-Event"
USER_AGENT = "admin-mit-backend"
# Headers the channel sets itself; configured headers may not replace them.
RESERVED_HEADERS = frozenset(name.lower() for name in (
    SIGNATURE_HEADER, ID_HEADER, EVENT_HEADER, "User-Agent", "Content-Type", "Content-Length", "Host",
    "Transfer-Encoding", "Connection", "Accept-Encoding"))
ERROR_EXCERPT_BYTES = 4096
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}$")


def _check_headers(headers: dict[str, str]) -> dict[str, str]:
    for name, value in headers.items():
        if not _TOKEN.match(name):
            raise ValueError(f"{name!r} is not a valid header name")
        if name.lower() in RESERVED_HEADERS:
            raise ValueError(f"the {name} header is set by the channel itself")
        if any(ch in value for ch in "\r\n\x00") or len(value) > 4096:
            raise ValueError(f"the value of header {name} must be one line of at most 4096 characters")
    if len(headers) > 20:
        raise ValueError("at most 20 extra headers")
    return headers


class WebhookSettings(StrictModel):
    url: str = Field(max_length=2048, description="http(s) URL the notification is POSTed to")
    headers: dict[str, str] = Field(default_factory=dict, description="extra request headers (not secret)")
    verify_tls: bool = Field(True, description="check the server's certificate for https URLs")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 (raises on a bad port)
        except ValueError:
            raise ValueError("not a valid URL") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        if parts.fragment:
            raise ValueError("must not have a #fragment")
        return value

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        return _check_headers(value)


class WebhookSecrets(StrictModel):
    signing_key: str | None = Field(None, min_length=16, max_length=512,
                                    description="HMAC-SHA256 key; when set, every request is signed")
    headers: dict[str, str] = Field(default_factory=dict,
                                    description="extra request headers whose values are secret (Authorization …)")

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        return _check_headers(value)

    @model_validator(mode="after")
    def _key(self) -> "WebhookSecrets":
        if self.signing_key is not None and not self.signing_key.strip():
            raise ValueError("signing_key must not be blank")
        return self


def sign(signing_key: str, body: bytes) -> str:
    """The signature header's value for ``body``."""
    return "sha256=" + hmac.new(signing_key.encode("utf-8"), body, hashlib.sha256).hexdigest()


def _json_default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


def os_reason(error: BaseException) -> str:
    """The operating system's words for a connection failure buried in requests'/urllib3's wrappers."""
    seen: set[int] = set()
    todo: list[Any] = [error]
    while todo:
        current = todo.pop(0)
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, socket.gaierror):
            return "host name not found"
        if isinstance(current, OSError) and current.strerror:
            return str(current.strerror).lower()
        todo.extend([getattr(current, "reason", None), current.__cause__, current.__context__, *current.args])
    return "the connection failed"


def _seconds(timeout: float) -> str:
    return f"{timeout:g} s"


class WebhookChannel(Channel[WebhookSettings, WebhookSecrets]):
    kind: ClassVar[str] = "webhook"
    description: ClassVar[str] = "signed JSON POST to a URL (HMAC-SHA256 in X-Admin-Mit-Signature)"
    Settings = WebhookSettings
    Secrets = WebhookSecrets

    def check(self) -> None:
        both = {name.lower() for name in self.settings.headers} & {name.lower() for name in self.secrets.headers}
        if both:
            raise ChannelConfigError(f"secrets.headers: {', '.join(sorted(both))} is also in settings.headers",
                                     "secrets.headers")

    def describe(self) -> dict[str, Any]:
        return {"url": mask_url(self.settings.url), "headers": dict(self.settings.headers),
                "verify_tls": self.settings.verify_tls, **masked_secrets(self.secrets)}

    def payload(self, message: Message) -> bytes:
        """The exact request body for ``message``."""
        document = {"id": message.notification_id, "event": message.event, "subject": message.subject,
                    "body": message.body, "data": message.data, "sent_at": int(time.time())}
        return json.dumps(document, ensure_ascii=False, separators=(",", ":"), default=_json_default).encode()

    def send(self, message: Message, timeout: float = 10.0) -> None:
        body = self.payload(message)
        headers = {**self.settings.headers, **self.secrets.headers,
                   "Content-Type": "application/json; charset=utf-8", "User-Agent": USER_AGENT,
                   ID_HEADER: message.notification_id, EVENT_HEADER: message.event, "Accept-Encoding": "identity"}
        if self.secrets.signing_key:
            headers[SIGNATURE_HEADER] = sign(self.secrets.signing_key, body)
        where = f"webhook {mask_url(self.settings.url)}"
        with requests.Session() as session:
            try:
                response = session.post(self.settings.url, data=body, headers=headers, timeout=(timeout, timeout),
                                        stream=True, allow_redirects=False, verify=self.settings.verify_tls)
            except requests.exceptions.SSLError as error:
                raise DeliveryError(f"TLS with {where} failed: {one_line(_tls_reason(error))}", permanent=True) from None
            except requests.exceptions.ConnectTimeout:
                raise DeliveryError(f"could not connect to {where} within {_seconds(timeout)}",
                                    permanent=False) from None
            except requests.exceptions.ReadTimeout:
                raise DeliveryError(f"{where} did not answer within {_seconds(timeout)}", permanent=False) from None
            except requests.exceptions.ConnectionError as error:
                raise DeliveryError(f"could not connect to {where}: {os_reason(error)}", permanent=False) from None
            except requests.exceptions.RequestException as error:
                raise DeliveryError(f"could not send to {where}: {one_line(type(error).__name__)}",
                                    permanent=True) from None
            with response:
                status = response.status_code
                if 200 <= status < 300:
                    return
                text = f"{where} answered {status} {_phrase(status, response.reason)}".rstrip()
                if 300 <= status < 400:
                    location = response.headers.get("Location")
                    text += " (redirects are not followed" + (f"; it points to {mask_url(location)})"
                                                              if location else ")")
                else:
                    excerpt = _excerpt(response)
                    if excerpt:
                        text += f": {excerpt}"
                temporary = status >= 500 or status in (408, 429)
                raise DeliveryError(text, permanent=not temporary)


def _phrase(status: int, reason: str | None) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return one_line(reason or "", 60)


def _excerpt(response: requests.Response) -> str:
    """The start of an error answer's body as one line; nothing if it is compressed or not text."""
    if response.headers.get("Content-Encoding", "identity").lower() not in ("", "identity"):
        return ""
    try:
        raw = response.raw.read(ERROR_EXCERPT_BYTES, decode_content=False)
    except Exception:  # noqa: BLE001 (the excerpt is a courtesy; the status already says what happened)
        return ""
    return one_line(raw.decode("utf-8", errors="replace"), 200) if raw else ""


def _tls_reason(error: BaseException) -> str:
    text = str(error)
    match = re.search(r"certificate verify failed: ([^()'\"]+)", text)
    if match:
        return f"certificate verify failed: {match.group(1).strip()}"
    return "handshake failed" if "handshake" in text.lower() else "TLS error"
