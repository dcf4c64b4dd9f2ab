"""Which prober speaks which protocol, and what a valid target for it looks like."""

from __future__ import annotations

from app.probes import http, tcp, udp, websocket
from app.probes.base import Prober
from app.probes.net import join_host_port, split_host_port
from app.probes.urls import parse_url

PROBERS: dict[str, Prober] = {
    "http": http.probe,
    "https": http.probe,
    "websocket": websocket.probe,
    "tcp": tcp.probe,
    "udp": udp.probe,
}
PROTOCOLS: tuple[str, ...] = tuple(PROBERS)

_URL_SCHEMES = {"http": ("http",), "https": ("https",), "websocket": ("ws", "wss")}


class UnknownProtocolError(ValueError):
    def __init__(self, protocol: str) -> None:
        super().__init__(f"unknown protocol “{protocol}”; expected one of: {', '.join(PROTOCOLS)}")


def get_prober(protocol: str) -> Prober:
    try:
        return PROBERS[protocol]
    except KeyError:
        raise UnknownProtocolError(protocol) from None


def _validate_url(protocol: str, target: str) -> str:
    schemes = _URL_SCHEMES[protocol]
    scheme = target.partition(":")[0].lower()
    if scheme not in schemes:
        raise ValueError(f"{protocol} targets must start with {' or '.join(s + '://' for s in schemes)}")
    return str(parse_url(target))


def validate_target(protocol: str, target: str) -> str:
    """The normalised target, or ``ValueError`` with a one-line message for the user."""
    get_prober(protocol)
    target = target.strip()
    if not target:
        raise ValueError("target is empty")
    if any(char.isspace() for char in target):
        raise ValueError("target must not contain whitespace")
    if protocol in _URL_SCHEMES:
        return _validate_url(protocol, target)
    return join_host_port(*split_host_port(target))
