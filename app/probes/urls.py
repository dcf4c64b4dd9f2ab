"""URLs of HTTP(S) and WebSocket targets: parse, normalise, follow a redirect, redact.

Small on purpose: absolute ``scheme://[user[:password]@]host[:port][/path][?query]``
URLs only, hosts lower-cased and IDNA-encoded, paths and queries percent-encoded
where they hold characters a request line may not carry.
"""

from __future__ import annotations

import base64
import functools
import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, unquote, urlencode, urljoin, urlsplit

from app.probes.text import check_plain

MASK = "********"
"""What a credential reads as wherever a spec or target is shown."""
SECRET_NAME = re.compile(r"pass|pwd|secret|token|key|auth|sig|session|credential|cookie", re.IGNORECASE)
"""Header and query parameter names whose values are treated as credentials."""

DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_HOST = re.compile(r"[a-z0-9_.-]+")
_PATH_SAFE = "/%!$&'()*+,;=:@-._~"
_QUERY_SAFE = _PATH_SAFE + "?"


@dataclass(frozen=True)
class Url:
    scheme: str
    host: str  # lower-case ASCII; an IPv6 address without brackets
    port: int
    explicit_port: bool
    path: str  # percent-encoded, may be empty
    query: str  # percent-encoded, without "?", may be empty
    has_query: bool
    userinfo: str  # as written (percent-encoded), may be empty
    fragment: str

    @property
    def secure(self) -> bool:
        return self.scheme in ("https", "wss")

    @property
    def netloc(self) -> str:
        """``host[:port]`` as the Host header carries it: the port only when not the default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}" if self.explicit_port else host

    @property
    def request_target(self) -> str:
        """What follows the method on the request line: path and query, at least ``/``."""
        return (self.path or "/") + (f"?{self.query}" if self.has_query else "")

    def basic_auth(self) -> str | None:
        """The ``Authorization`` value for credentials in the URL, if it carries any."""
        if not self.userinfo:
            return None
        user, _, password = self.userinfo.partition(":")
        token = base64.b64encode(f"{unquote(user)}:{unquote(password)}".encode()).decode("ascii")
        return f"Basic {token}"

    def join(self, location: str) -> Url:
        """The URL a redirect ``Location`` points to (``ValueError`` if it is not a URL)."""
        return parse_url(urljoin(str(self), location))

    def redacted(self) -> str:
        """For messages: no credentials, no query string (it may carry tokens)."""
        return f"{self.scheme}://{self.netloc}{self.path}"

    def masked(self) -> str:
        """For the API and CLI: the URL with its password and credential query values read ``MASK``."""
        user, colon, _ = self.userinfo.partition(":")
        userinfo = f"{user}:{MASK}@" if colon else (f"{user}@" if user else "")
        query = ""
        if self.has_query:
            pairs = parse_qsl(self.query, keep_blank_values=True)
            shown = [(name, MASK if SECRET_NAME.search(name) else value) for name, value in pairs]
            query = "?" + (urlencode(shown, safe="*") if any(SECRET_NAME.search(n) for n, _ in pairs) else self.query)
        fragment = f"#{self.fragment}" if self.fragment else ""
        return f"{self.scheme}://{userinfo}{self.netloc}{self.path}{query}{fragment}"

    def __str__(self) -> str:
        userinfo = f"{self.userinfo}@" if self.userinfo else ""
        query = f"?{self.query}" if self.has_query else ""
        fragment = f"#{self.fragment}" if self.fragment else ""
        return f"{self.scheme}://{userinfo}{self.netloc}{self.path}{query}{fragment}"


def _host(text: str) -> str:
    if text.startswith("["):
        if not text.endswith("]"):
            raise ValueError("invalid URL: unclosed bracket in the host")
        try:
            return str(ipaddress.IPv6Address(text[1:-1]))
        except ValueError:
            raise ValueError(f"invalid URL: {text} is not an IPv6 address") from None
    host = text.lower()
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise ValueError("invalid URL: the host is not a valid international domain name") from None
    if host and not _HOST.fullmatch(host):
        raise ValueError("invalid URL: the host contains characters a host name may not have")
    return host


@functools.lru_cache(maxsize=4096)  # a probe's target is parsed on every run; Url is immutable
def parse_url(text: str) -> Url:
    """Parse an absolute URL; ``ValueError`` with a one-line message for a person."""
    try:
        parts = urlsplit(text)
    except ValueError as exc:
        raise ValueError(f"invalid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if not scheme or not text[len(scheme) + 1 :].startswith("//"):
        raise ValueError("invalid URL: expected scheme://host/…")
    userinfo, _, hostport = parts.netloc.rpartition("@")
    if hostport.startswith("["):
        bracketed, _, rest = hostport.partition("]")
        host_text, port_text = bracketed + "]", rest.removeprefix(":")
        if rest and not rest.startswith(":"):
            raise ValueError("invalid URL: unexpected text after the IPv6 address")
    else:
        host_text, _, port_text = hostport.partition(":")
    host = _host(host_text)
    if not host:
        raise ValueError("the URL has no host")
    if port_text and (not port_text.isdecimal() or not 1 <= int(port_text) <= 65535):
        raise ValueError(f"port must be a number from 1 to 65535, got “{port_text}”")
    default = DEFAULT_PORTS.get(scheme, 0)
    port = int(port_text) if port_text else default
    return Url(
        scheme=scheme,
        host=host,
        port=port,
        explicit_port=port != default,
        path=quote(parts.path, safe=_PATH_SAFE),
        query=quote(parts.query, safe=_QUERY_SAFE),
        has_query="?" in text.split("#", 1)[0],
        userinfo=quote(userinfo, safe="%!$&'()*+,;=:-._~"),
        fragment=quote(parts.fragment, safe=_QUERY_SAFE + "#"),
    )


def mask_credentials(target: str) -> str:
    """A target as the API and CLI show it: a URL's password and credential query values masked."""
    if "://" not in target:
        return target
    try:
        return parse_url(target).masked()
    except ValueError:
        return target


def redact(text: str) -> str:
    """A URL as it may appear in a message or log line: no credentials, no query string."""
    try:
        return parse_url(text).redacted()
    except ValueError:
        return "the URL"


def url_target(protocol: str, target: str, schemes: tuple[str, ...]) -> str:
    """A URL target as stored, or ``ValueError`` for the user: one of ``schemes``, no whitespace."""
    check_plain(target)
    scheme = target.partition(":")[0].lower()
    if scheme not in schemes:
        raise ValueError(f"{protocol} targets must start with {' or '.join(s + '://' for s in schemes)}")
    return str(parse_url(target))

