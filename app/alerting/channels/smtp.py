"""The ``email`` kind: one plain-text message per notification through an SMTP server.

Why smtplib rather than apprise's email plugin. Apprise's ``mailto://`` can be driven
exactly (host, port, ``mode=insecure``, from, to, ``+Header`` extras), and that was
measured against the loopback SMTP server in tests/receivers.py, with two recipients of
which the server refused one (550). What it cannot do:

- It sends one message per recipient, and only the plugin object in memory remembers
  who already has it; a retry through a new channel object mails the others again.
- The server's reason (``550 5.1.1 … User unknown``) reaches only its DEBUG log, as the
  Python repr of smtplib's exception; at WARNING it says ``Sending email to "…" failed``.
  The reply code is lost, so a refused address (5xx, permanent) cannot be told from a
  full mailbox or greylisting (4xx, worth a retry).
- Its ``Message-ID`` is random on every attempt, so a mail client cannot fold retries.

smtplib gives all three: one transaction for all recipients, each stage's reply code
and text, and a ``Message-ID`` built from the notification id (the same on every retry).
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import smtplib
import socket
import ssl
from email.message import EmailMessage
from email.utils import formatdate, getaddresses, parseaddr
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from app.alerting.channels.base import Channel, ChannelConfigError, DeliveryError, Message, StrictModel, masked_secrets
from app.alerting.channels.base import one_line

DEFAULT_PORTS = {"none": 25, "starttls": 587, "tls": 465}
ID_HEADER = "X-Admin-Mit-Notification-Id"
_ADDRESS = re.compile(r"^[^@\s<>,;\"]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$")
_HOST = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


def _one_address(value: str, what: str) -> str:
    pairs = getaddresses([value])
    if len(pairs) != 1 or not _ADDRESS.match(pairs[0][1]) or "\n" in value or "\r" in value:
        raise ValueError(f"{value!r} is not {what}")
    return value


class EmailSettings(StrictModel):
    host: str = Field(description="SMTP server host name or IP address")
    port: int | None = Field(None, ge=1, le=65535, description="default: 25, 587 or 465 by security")
    security: Literal["none", "starttls", "tls"] = Field(
        "starttls", description="none: plain SMTP; starttls: upgrade after connecting; tls: TLS from the start")
    from_address: str = Field(max_length=320, description="sender, 'alerts@example.com' or 'Alerts <alerts@…>'")
    to_addresses: list[str] = Field(min_length=1, max_length=50, description="recipients")
    verify_tls: bool = Field(True, description="check the server's certificate (starttls, tls)")

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        try:
            ipaddress.ip_address(value)
        except ValueError:
            if not _HOST.match(value):
                raise ValueError("must be a host name or an IP address") from None
        return value

    @field_validator("from_address")
    @classmethod
    def _from(cls, value: str) -> str:
        return _one_address(value, "an email address")

    @field_validator("to_addresses")
    @classmethod
    def _to(cls, value: list[str]) -> list[str]:
        seen: dict[str, str] = {}
        for item in value:
            address = _one_address(item.strip(), "an email address")
            seen.setdefault(parseaddr(address)[1].lower(), address)
        return list(seen.values())

    @property
    def effective_port(self) -> int:
        return self.port or DEFAULT_PORTS[self.security]


class EmailSecrets(StrictModel):
    username: str | None = Field(None, min_length=1, max_length=320)
    password: str | None = Field(None, min_length=1, max_length=1024)

    @model_validator(mode="after")
    def _pair(self) -> "EmailSecrets":
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together: set both or neither")
        return self


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _reply(code: int, text: bytes | str) -> str:
    words = text.decode("utf-8", errors="replace") if isinstance(text, bytes) else str(text)
    return one_line(f"{code} {words}", 300)


class EmailChannel(Channel[EmailSettings, EmailSecrets]):
    kind: ClassVar[str] = "email"
    description: ClassVar[str] = "plain-text email through an SMTP server (none/starttls/tls, optional login)"
    Settings = EmailSettings
    Secrets = EmailSecrets

    def check(self) -> None:
        if self.secrets.password and self.settings.security == "none" and not _is_loopback(self.settings.host):
            raise ChannelConfigError("settings.security: a password is never sent without TLS; "
                                     "choose starttls or tls", "settings.security")

    def describe(self) -> dict[str, Any]:
        shown = self.settings.model_dump()
        shown["port"] = self.settings.effective_port
        return {**shown, **masked_secrets(self.secrets)}

    @property
    def _server(self) -> str:
        return f"SMTP server {self.settings.host}:{self.settings.effective_port}"

    def build_message(self, message: Message) -> EmailMessage:
        """The email for ``message``; its Message-ID is the same on every retry."""
        sender = parseaddr(self.settings.from_address)[1]
        domain = sender.rpartition("@")[2] or "admin-mit-backend.invalid"
        local = (message.notification_id if _SAFE_ID.match(message.notification_id)
                 else hashlib.sha256(message.notification_id.encode()).hexdigest()[:40])
        mail = EmailMessage()
        mail["Subject"] = one_line(message.subject, 900)
        mail["From"] = self.settings.from_address
        mail["To"] = ", ".join(self.settings.to_addresses)
        mail["Date"] = formatdate(usegmt=True)
        mail["Message-ID"] = f"<{local}.admin-mit@{domain}>"
        mail[ID_HEADER] = one_line(message.notification_id, 200)
        mail["X-Admin-Mit-Event"] = message.event
        mail["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to an alert
        mail.set_content(message.body)
        return mail

    def send(self, message: Message, timeout: float = 10.0) -> None:
        mail = self.build_message(message)
        sender = parseaddr(self.settings.from_address)[1]
        recipients = [parseaddr(address)[1] for address in self.settings.to_addresses]
        smtp = self._connect(timeout)
        try:
            self._secure_and_login(smtp)
            refused = self._transact(smtp, mail, sender, recipients)
        finally:
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):
                smtp.close()
        if refused:
            delivered = [address for address in recipients if address not in refused]
            reasons = "; ".join(f"{address} ({_reply(code, text)})" for address, (code, text) in refused.items())
            raise DeliveryError(f"{self._server} delivered to {', '.join(delivered)} but refused {reasons} "
                                "(not retried, so the others do not get it twice)", permanent=True)

    def _context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        if not self.settings.verify_tls:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def _connect(self, timeout: float) -> smtplib.SMTP:
        host, port = self.settings.host, self.settings.effective_port
        try:
            if self.settings.security == "tls":
                return smtplib.SMTP_SSL(host, port, timeout=timeout, context=self._context())
            return smtplib.SMTP(host, port, timeout=timeout)
        except ssl.SSLError as error:
            raise DeliveryError(f"TLS with {self._server} failed: {one_line(error.reason or str(error))}",
                                permanent=True) from None
        except (TimeoutError, socket.timeout):
            raise DeliveryError(f"{self._server} did not answer within {timeout:g} s", permanent=False) from None
        except smtplib.SMTPConnectError as error:
            raise DeliveryError(f"{self._server} refused the connection: {_reply(error.smtp_code, error.smtp_error)}",
                                permanent=False) from None
        except smtplib.SMTPServerDisconnected:
            raise DeliveryError(f"{self._server} closed the connection before greeting", permanent=False) from None
        except socket.gaierror:
            raise DeliveryError(f"could not connect to {self._server}: host name not found", permanent=False) from None
        except OSError as error:
            reason = (error.strerror or type(error).__name__).lower()
            raise DeliveryError(f"could not connect to {self._server}: {reason}", permanent=False) from None

    def _secure_and_login(self, smtp: smtplib.SMTP) -> None:
        try:
            if self.settings.security == "starttls":
                smtp.ehlo()
                if not smtp.has_extn("starttls"):
                    raise DeliveryError(f"{self._server} does not offer STARTTLS: set security to tls (port 465), "
                                        "or to none on a trusted network", permanent=True)
                smtp.starttls(context=self._context())
                smtp.ehlo()
            if self.secrets.username and self.secrets.password:
                smtp.ehlo_or_helo_if_needed()
                if not smtp.has_extn("auth"):
                    raise DeliveryError(f"{self._server} does not offer a login (AUTH) on this connection",
                                        permanent=True)
                smtp.login(self.secrets.username, self.secrets.password)
        except smtplib.SMTPAuthenticationError as error:
            raise DeliveryError(f"{self._server} refused the login of {self.secrets.username}: "
                                f"{_reply(error.smtp_code, error.smtp_error)}", permanent=True) from None
        except ssl.SSLError as error:
            raise DeliveryError(f"TLS with {self._server} failed: {one_line(error.reason or str(error))}",
                                permanent=True) from None
        except (smtplib.SMTPException, OSError) as error:
            raise self._failure(error) from None

    def _failure(self, error: smtplib.SMTPException | OSError, during: str = "") -> DeliveryError:
        """What any other SMTP or connection error says (a 5xx reply is permanent)."""
        if isinstance(error, smtplib.SMTPResponseException):
            return DeliveryError(f"{self._server} answered {_reply(error.smtp_code, error.smtp_error)}",
                                 permanent=error.smtp_code >= 500)
        if isinstance(error, smtplib.SMTPException):
            return DeliveryError(f"{self._server}: {one_line(str(error))}", permanent=False)
        if isinstance(error, (TimeoutError, socket.timeout)):
            return DeliveryError(f"{self._server} stopped answering{during}", permanent=False)
        return DeliveryError(f"{self._server}: connection lost ({(error.strerror or 'error').lower()})",
                             permanent=False)

    def _transact(self, smtp: smtplib.SMTP, mail: EmailMessage, sender: str,
                  recipients: list[str]) -> dict[str, tuple[int, bytes]]:
        try:
            return smtp.send_message(mail, from_addr=sender, to_addrs=recipients)
        except smtplib.SMTPSenderRefused as error:
            raise DeliveryError(f"{self._server} refused the sender {sender}: "
                                f"{_reply(error.smtp_code, error.smtp_error)}",
                                permanent=error.smtp_code >= 500) from None
        except smtplib.SMTPRecipientsRefused as error:
            reasons = "; ".join(f"{address} ({_reply(code, text)})"
                                for address, (code, text) in error.recipients.items())
            permanent = all(code >= 500 for code, _ in error.recipients.values())
            raise DeliveryError(f"{self._server} refused every recipient: {reasons}", permanent=permanent) from None
        except smtplib.SMTPDataError as error:
            raise DeliveryError(f"{self._server} refused the message: {_reply(error.smtp_code, error.smtp_error)}",
                                permanent=error.smtp_code >= 500) from None
        except smtplib.SMTPServerDisconnected:
            raise DeliveryError(f"{self._server} closed the connection during the transaction",
                                permanent=False) from None
        except (smtplib.SMTPException, OSError) as error:
            raise self._failure(error, " during the transaction") from None
