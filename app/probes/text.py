"""How the engine words things for a person: quoted values, durations, sizes, OS errors.

Messages never carry Python reprs (``'x'``, ``[Errno 111]``, class names):
values a user typed or a peer sent are shown in curly quotes, with control
characters written as ``\\r``, ``\\n``, ``\\t`` or ``\\xNN`` so a protocol reply
reads as it went over the wire.
"""

from __future__ import annotations

import math
from datetime import datetime

PREVIEW_CHARS = 60
_ESCAPES = {"\r": "\\r", "\n": "\\n", "\t": "\\t"}


def quote(text: str, limit: int = PREVIEW_CHARS) -> str:
    """``“text”``, control characters escaped, cut after ``limit`` characters with ``…``."""
    cut = len(text) > limit
    shown = "".join(
        _ESCAPES.get(char) or (f"\\x{ord(char):02x}" if ord(char) < 32 or ord(char) == 127 else char)
        for char in text[:limit]
    )
    return f"“{shown}{'…' if cut else ''}”"


def seconds(value: float) -> str:
    return f"{value:g} s"


def size(count: int) -> str:
    """``5 bytes``, ``64 KiB``, ``1 MiB``, ``1.5 MiB``."""
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= scale:
            return f"{count / scale:.1f}".removesuffix(".0") + f" {unit}"
    return f"{count} byte" if count == 1 else f"{count} bytes"


def span(duration: float) -> str:
    """A non-negative number of seconds as whole days, or hours under a day."""
    days = math.floor(duration / 86400)
    if days >= 1:
        return "1 day" if days == 1 else f"{days} days"
    hours = math.floor(duration / 3600)
    if hours >= 1:
        return "1 hour" if hours == 1 else f"{hours} hours"
    return "less than an hour"


def cert_expiry(expires_at: datetime, now: datetime) -> str:
    """``certificate expires in 3 days`` or ``certificate expired on 2026-11-28 (2 days ago)``."""
    left = (expires_at - now).total_seconds()
    if left >= 0:
        return f"certificate expires in {span(left)}"
    return f"certificate expired on {expires_at:%Y-%m-%d} ({span(-left)} ago)"


def os_error(exc: OSError) -> str:
    """``connection refused``, ``connection reset by peer``, ``no route to host`` …"""
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    text = exc.strerror or str(exc) or "network error"
    return text[:1].lower() + text[1:]


def expect_missing(expect: str, received: str, then: str | None = None) -> str:
    """``expected “+PONG” not received (got “-ERR …”)``; ``then`` says how the reply ended."""
    if received:
        detail = f"got {quote(received)}" + (f", then {then}" if then else "")
    else:
        detail = then or "nothing received"
    return f"expected {quote(expect)} not received ({detail})"


def check_plain(target: str) -> None:
    """``ValueError`` for a target that is empty or holds whitespace."""
    if not target:
        raise ValueError("target is empty")
    if any(char.isspace() for char in target):
        raise ValueError("target must not contain whitespace")
