"""An execution's output: stored in order in ``ansible_execution_events``, published live to a
Redis stream, read back in pages or followed to the end.

The database is the record and the stream only its live copy: a batch of events is
inserted (one statement) and committed first, then added to the stream
``admin_mit:ansible:events:<id>`` under the entry id ``<seq>-0``. A reader that knows the
last ``seq`` it saw resumes with ``XREAD`` from ``<seq>-0`` and gets exactly what came
after; where the stream has a gap (trimmed to its last ``STREAM_MAXLEN`` entries, an event
too big to copy, Redis restarted) it reads the missing part from the database. The end
of an execution is the entry ``<last seq>-1`` with its final status.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import redis
from sqlalchemy import insert, select, update

from app.core.config import active_settings
from app.core.redis_client import get_redis
from app.extensions import db
from app.models import AnsibleExecution, AnsibleExecutionEvent
from app.models.ansible import FINISHED_STATUSES

if TYPE_CHECKING:
    from app.ansible.runs import RunEvent

log = logging.getLogger(__name__)

STREAM_KEY = "admin_mit:ansible:events:{}"
STREAM_MAXLEN = 2000
# Events whose JSON is bigger than this are not copied into the stream; readers fetch them
# from the database (keeps Redis memory per execution bounded by about 2000 × 16 KiB).
STREAM_EVENT_MAX_BYTES = 16 * 1024
PAGE_SIZE = 1000
# Events a worker keeps while the database refuses them, before it gives the run up.
MAX_UNWRITTEN = 100_000
RETRY_SECONDS = 1.0
# When the run has ended, how long the worker keeps trying to store what is left.
CLOSE_PATIENCE_SECONDS = 60.0


def event_fields(row: AnsibleExecutionEvent | dict[str, Any]) -> dict[str, Any]:
    """An event as the API shows it (and as the stream carries it)."""
    get = row.get if isinstance(row, dict) else lambda name: getattr(row, name)
    created = get("created_at")
    return {"seq": get("seq"), "event": get("event"), "created_at": created.isoformat() if created else None,
            "host": get("host"), "play": get("play"), "task": get("task"), "stdout": get("stdout"),
            "data": get("data"), "truncated": get("truncated")}


def _row(execution_id: int, event: RunEvent) -> dict[str, Any]:
    return {"execution_id": execution_id, "seq": event.seq, "event": event.event[:64], "created_at": event.created,
            "host": _cut(event.host, 255), "play": _cut(event.play, 1024), "task": _cut(event.task, 1024),
            "stdout": event.stdout, "data": event.data, "truncated": event.truncated}


def _cut(value: str | None, length: int) -> str | None:
    return value[:length] if value is not None else None


class EventWriter:
    """Buffers a running execution's events and writes them every ``flush_interval_ms`` or
    ``flush_events`` events: a bulk insert, the execution's ``event_count``, then the stream."""

    def __init__(self, execution_id: int) -> None:
        settings = active_settings().ansible
        self.execution_id = execution_id
        self._interval = settings.flush_interval_ms / 1000
        self._batch = settings.flush_events
        self._buffer: list[dict[str, Any]] = []
        self._last_flush = time.monotonic()
        self._retry_at = 0.0
        self.written = 0

    def add(self, event: RunEvent) -> None:
        self._buffer.append(_row(self.execution_id, event))
        if len(self._buffer) >= self._batch and time.monotonic() >= self._retry_at:
            self.flush()

    def tick(self) -> None:
        """Flush what waits if the interval has passed (called while the run is quiet too)."""
        if self._buffer and time.monotonic() - self._last_flush >= self._interval \
                and time.monotonic() >= self._retry_at:
            self.flush()

    def flush(self) -> bool:
        """Write what waits; False if the database refused it (kept, tried again a second later)."""
        if not self._buffer:
            return True
        rows = self._buffer
        try:
            db.session.execute(insert(AnsibleExecutionEvent), rows)
            db.session.execute(
                update(AnsibleExecution).where(AnsibleExecution.id == self.execution_id)
                .values(event_count=rows[-1]["seq"]).execution_options(synchronize_session=False))
            db.session.commit()
        except Exception:
            db.session.rollback()
            if len(rows) >= MAX_UNWRITTEN:
                raise
            log.warning("execution %d: %d events wait for the database", self.execution_id, len(rows),
                        exc_info=log.isEnabledFor(logging.DEBUG))
            self._last_flush = time.monotonic()
            self._retry_at = self._last_flush + RETRY_SECONDS
            return False
        self._buffer = []
        self._last_flush = time.monotonic()
        self.written = rows[-1]["seq"]
        _publish(self.execution_id, rows)
        return True

    def close(self, patience_seconds: float = CLOSE_PATIENCE_SECONDS) -> int:
        """Write the rest once the run has ended, trying for a while if the database is away;
        returns how many events could not be stored (the ending says so)."""
        deadline = time.monotonic() + patience_seconds
        while not self.flush() and time.monotonic() < deadline:
            time.sleep(RETRY_SECONDS)
        return len(self._buffer)


def _publish(execution_id: int, rows: list[dict[str, Any]]) -> None:
    key = STREAM_KEY.format(execution_id)
    try:
        pipe = get_redis().pipeline(transaction=False)
        for row in rows:
            text = json.dumps(event_fields(row), separators=(",", ":"), default=str)
            fields = {"e": text} if len(text) <= STREAM_EVENT_MAX_BYTES else {"big": "1"}
            pipe.xadd(key, fields, id=f"{row['seq']}-0", maxlen=STREAM_MAXLEN, approximate=True)
        pipe.expire(key, active_settings().ansible.stream_ttl_seconds + active_settings().ansible.max_timeout_seconds)
        pipe.execute(raise_on_error=False)
    except redis.RedisError as exc:  # the events are stored; readers fall back to the database
        log.warning("execution %d: live output not published (%s)", execution_id, exc)


def close_stream(execution_id: int, last_seq: int, status: str) -> None:
    """Add the end entry (``<last seq>-1``) and let the stream expire after ``stream_ttl_seconds``."""
    key = STREAM_KEY.format(execution_id)
    try:
        pipe = get_redis().pipeline(transaction=False)
        pipe.xadd(key, {"end": status}, id=f"{last_seq}-1")
        pipe.expire(key, active_settings().ansible.stream_ttl_seconds)
        pipe.execute(raise_on_error=False)
    except redis.RedisError as exc:
        log.warning("execution %d: end of live output not published (%s)", execution_id, exc)


def page(execution_id: int, after: int, limit: int = PAGE_SIZE) -> list[AnsibleExecutionEvent]:
    return list(db.session.scalars(
        select(AnsibleExecutionEvent)
        .where(AnsibleExecutionEvent.execution_id == execution_id, AnsibleExecutionEvent.seq > after)
        .order_by(AnsibleExecutionEvent.seq).limit(limit)))


@dataclass(frozen=True)
class Followed:
    """One item of ``follow``: an event's fields, the end (``status`` set), or neither (a quiet spell)."""

    seq: int
    fields: dict[str, Any] | None = None
    status: str | None = None


def _state(execution_id: int) -> tuple[str, int]:
    db.session.expire_all()
    row = db.session.execute(select(AnsibleExecution.status, AnsibleExecution.event_count)
                             .where(AnsibleExecution.id == execution_id)).one()
    db.session.rollback()  # end the read transaction: a stream may follow for hours
    return row.status, row.event_count


def follow(execution_id: int, after: int, block_ms: int = 5000,
           deadline: float | None = None) -> Iterator[Followed]:
    """Every event after ``after``, in order, then the end; waits for events while it runs.

    ``deadline`` (``time.monotonic()``): stop there without an end (the client reconnects
    with the last seq it got).
    """
    last = after
    while deadline is None or time.monotonic() < deadline:
        rows = [(row.seq, event_fields(row)) for row in page(execution_id, last)]
        db.session.rollback()  # no transaction stays open between pages (the fields are read already)
        for seq, fields in rows:
            last = seq
            yield Followed(seq, fields)
        if len(rows) == PAGE_SIZE:
            continue
        status, count = _state(execution_id)
        if status in FINISHED_STATUSES and last >= count:
            yield Followed(last, status=status)
            return
        fresh = False
        for item in _live(execution_id, last, block_ms):
            if item.status is not None or item.fields is None:
                break  # the end, a gap or a big event: read what the database holds, above
            last, fresh = item.seq, True
            yield item
        if not fresh:
            yield Followed(last)  # nothing new for a while: a reader may send a keep-alive


def _live(execution_id: int, after: int, block_ms: int) -> Iterator[Followed]:
    """Stream entries after ``after`` while they follow on; stops at a gap, a big event or the end."""
    try:
        answer = get_redis().xread({STREAM_KEY.format(execution_id): f"{after}-0"}, count=PAGE_SIZE, block=block_ms)
    except redis.RedisError as exc:
        log.warning("execution %d: live output unavailable (%s); reading stored events", execution_id, exc)
        time.sleep(1)
        return
    expected = after + 1
    for _key, entries in answer or []:
        for entry_id, fields in entries:
            seq, part = (int(piece) for piece in entry_id.split("-"))
            if part == 1:
                yield Followed(seq, status=fields.get("end"))
                return
            if seq != expected or "e" not in fields:
                yield Followed(seq)
                return
            yield Followed(seq, json.loads(fields["e"]))
            expected = seq + 1
