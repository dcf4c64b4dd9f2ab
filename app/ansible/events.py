"""A run's events as the rest of the application gets them: capped in size, secrets masked.

The cap: an event's ``stdout`` is cut to ``max_bytes`` UTF-8 bytes (ending in
``TRUNCATED_MARK``), and its ``data`` (ansible-runner's ``event_data``) is shortened until
its JSON is at most ``max_bytes``: first the module result ``res`` (long strings cut, long
lists and mappings shortened, then ``res`` dropped), then the rest the same way, and as a
last resort only the names of host, task and play are kept. A trimmed ``data`` says
``"truncated": true``; ``RunEvent.truncated`` is true when either was cut.

Independently of that, ansible-runner's display callback already replaces a ``res`` whose
text is over 700 000 characters by ``{}`` (its ``MAX_EVENT_RES``), before the event leaves
ansible.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

TRUNCATED_MARK = "… [truncated]"
MASK = "********"
# Secrets shorter than this are not masked in output: masking every "a" or "12" would make
# the output unreadable and hide nothing.
MIN_MASKED_LENGTH = 4
_STEPS = (4096, 1024, 256, 64, 16)
_NAMES = ("host", "task", "play", "task_action", "playbook", "remote_addr")


@dataclass(frozen=True)
class RunEvent:
    seq: int
    uuid: str
    event: str
    created: datetime
    host: str | None
    play: str | None
    task: str | None
    stdout: str
    data: dict[str, Any]
    truncated: bool


class Masker:
    """Replaces each of a run's secrets by ``MASK`` wherever it shows in text, and the
    private directory's path by nothing (``/tmp/…/project/main.yml`` reads ``project/main.yml``)."""

    def __init__(self, secrets: list[str], private_prefix: str | None = None) -> None:
        found = {s for s in secrets if s and len(s) >= MIN_MASKED_LENGTH}
        self._pairs = [(secret, MASK) for secret in sorted(found, key=len, reverse=True)]
        if private_prefix:
            self._pairs.append((private_prefix, ""))

    def text(self, value: str) -> str:
        for old, new in self._pairs:
            if old in value:
                value = value.replace(old, new)
        return value

    def value(self, value: Any) -> Any:
        if not self._pairs:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.text(k) if isinstance(k, str) else k: self.value(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(item) for item in value]
        return value


def secrets_of_key(key: str) -> list[str]:
    """The parts of a private key file worth masking: the whole text and each line of its body."""
    lines = [line.strip() for line in key.splitlines()]
    return [key.strip()] + [line for line in lines if len(line) >= 16 and not line.startswith("-----")]


def make_event(raw: dict[str, Any], max_bytes: int, masker: Masker) -> RunEvent:
    """The RunEvent of one ansible-runner event (its dict as given to ``event_handler``)."""
    data = raw.get("event_data") or {}
    if not isinstance(data, dict):
        data = {"value": data}
    data = masker.value(data)
    host, play, task = (_name(data.get(key)) for key in ("host", "play", "task"))
    stdout = masker.text(str(raw.get("stdout") or "").replace("\r\n", "\n"))
    stdout, cut_stdout = cap_text(stdout, max_bytes)
    data, cut_data = cap_data(data, max_bytes)
    return RunEvent(
        seq=int(raw["counter"]),
        uuid=str(raw.get("uuid") or ""),
        event=str(raw.get("event") or "verbose"),
        created=_created(raw.get("created")),
        host=host,
        play=play,
        task=task,
        stdout=stdout,
        data=data,
        truncated=cut_stdout or cut_data,
    )


def cap_text(text: str, max_bytes: int) -> tuple[str, bool]:
    encoded = text.encode("utf-8", "surrogatepass")
    if len(encoded) <= max_bytes:
        return text, False
    room = max(0, max_bytes - len(TRUNCATED_MARK.encode()))
    return encoded[:room].decode("utf-8", "ignore") + TRUNCATED_MARK, True


def cap_data(data: dict[str, Any], max_bytes: int) -> tuple[dict[str, Any], bool]:
    if _size(data) <= max_bytes:
        return data, False
    trimmed = dict(data, truncated=True)
    if "res" in data:
        for step in _STEPS:
            trimmed["res"] = _shorten(data["res"], step)
            if _size(trimmed) <= max_bytes:
                return trimmed, True
        trimmed["res"] = {}
        if _size(trimmed) <= max_bytes:
            return trimmed, True
    for step in _STEPS:
        shortened = _shorten(trimmed, step)
        shortened["truncated"] = True
        if _size(shortened) <= max_bytes:
            return shortened, True
    minimal: dict[str, Any] = {"truncated": True}
    for key in _NAMES:
        if isinstance(data.get(key), str):
            minimal[key] = _shorten(data[key], 64)
    return (minimal if _size(minimal) <= max_bytes else {"truncated": True}), True


def _shorten(value: Any, limit: int) -> Any:
    """``value`` with strings over ``limit`` characters cut, and lists and mappings cut to
    a number of items that goes down with ``limit``."""
    items = max(4, limit // 32)
    if isinstance(value, str):
        return value if len(value) <= limit else value[:limit] + TRUNCATED_MARK
    if isinstance(value, dict):
        out = {k: _shorten(v, limit) for k, v in list(value.items())[:items]}
        if len(value) > items:
            out[TRUNCATED_MARK] = f"{len(value) - items} more"
        return out
    if isinstance(value, list):
        out_list = [_shorten(v, limit) for v in value[:items]]
        if len(value) > items:
            out_list.append(f"{TRUNCATED_MARK} {len(value) - items} more")
        return out_list
    return value


def _size(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
               .encode("utf-8", "surrogatepass"))


def _created(value: Any) -> datetime:
    try:
        created = datetime.fromisoformat(str(value))
    except ValueError:
        return datetime.now(timezone.utc)
    return created.replace(tzinfo=timezone.utc) if created.tzinfo is None else created.astimezone(timezone.utc)


def _name(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
