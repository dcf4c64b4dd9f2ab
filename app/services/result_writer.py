"""The worker process's result writer: micro-batches, and a bounded buffer for database outages.

Probes finish one by one on the executor's event loop and hand their results here.
A thread of its own writes whatever has arrived every ``probes.write_interval_ms`` (at
most ``probes.write_batch_rows`` rows per transaction), so a result is stored about as
soon as it is measured and no transaction is open while probes run. When the database
is unreachable the results stay in memory and the write is retried with a growing
pause; the probes are never run again for it. Past ``probes.write_buffer_max_rows`` the
oldest results are dropped, logged and marked for the dispatcher to count as
``unwritten``.
"""

from __future__ import annotations

import collections
import logging
import time
from typing import Callable

from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from app.core.os_threads import allocate_lock, blocking_sleep, start_thread
from app.services.result_store import MeasuredRun

log = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 5.0
LOG_EVERY_SECONDS = 30.0

Flush = Callable[[list[MeasuredRun]], None]
Drop = Callable[[list[MeasuredRun]], None]


def is_outage(exc: BaseException) -> bool:
    """A fault of the database or the way to it (worth waiting out), not a row it refuses."""
    if isinstance(exc, (OperationalError, InterfaceError, PoolTimeout)):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


class ResultWriter:
    def __init__(self, flush: Flush, on_drop: Drop, interval_seconds: float, batch_rows: int,
                 max_buffered: int) -> None:
        self._flush = flush
        self._on_drop = on_drop
        self._interval = interval_seconds
        self._batch_rows = batch_rows
        self._max_buffered = max_buffered
        self._buffer: collections.deque[MeasuredRun] = collections.deque()
        self._lock = allocate_lock()  # one flush at a time: the thread's, or drain()'s
        self._running = False
        self._failing_since: float | None = None
        self._last_logged = 0.0
        self._backoff = 0.0
        self.written = 0
        self.dropped = 0

    # --- called from any thread ------------------------------------------------------------

    def add(self, run: MeasuredRun) -> None:
        self._buffer.append(run)  # deque.append is atomic: no lock on the hot path

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def start(self) -> None:
        if not self._running:
            self._running = True
            start_thread(self._run, "probe-result-writer")

    def drain(self, timeout: float) -> bool:
        """Write everything buffered, retrying until ``timeout``; drop (and count) what is left."""
        self._running = False
        deadline = time.monotonic() + timeout
        while self._buffer and time.monotonic() < deadline:
            if not self.flush_once():
                blocking_sleep(min(0.5, max(0.0, deadline - time.monotonic())))
        if self._buffer:
            left = [self._buffer.popleft() for _ in range(len(self._buffer))]
            self._drop(left, f"the worker is stopping and the database did not answer within {timeout:g} s")
            return False
        return True

    # --- the writer thread ---------------------------------------------------------------------

    def _run(self) -> None:
        while self._running:
            blocking_sleep(max(self._interval, self._backoff))
            while self._running and self._buffer:
                if not self.flush_once():
                    break

    def flush_once(self) -> bool:
        """Write one batch; False when the database is unavailable (the batch is kept)."""
        with self._lock:
            batch = [self._buffer.popleft() for _ in range(min(self._batch_rows, len(self._buffer)))]
            if not batch:
                return True
            try:
                self._flush(batch)
            except Exception as exc:
                if is_outage(exc):
                    self._buffer.extendleft(reversed(batch))
                    self._outage(exc)
                    return False
                if not self._write_one_by_one(batch, exc):
                    return False
            else:
                self.written += len(batch)
            self._recovered()
            return True

    def _write_one_by_one(self, batch: list[MeasuredRun], error: Exception) -> bool:
        """A batch the database refused (e.g. a probe deleted while it ran): keep every row it accepts.

        False if the database became unavailable meanwhile (the rest of the batch is kept).
        """
        log.warning("writing %d probe results failed (%s); writing them one by one", len(batch),
                    str(error).splitlines()[0])
        for index, run in enumerate(batch):
            try:
                self._flush([run])
                self.written += 1
            except IntegrityError:
                log.info("result of probe %s not stored: the probe no longer exists", run.row["probe_id"])
            except Exception as exc:
                if is_outage(exc):
                    self._buffer.extendleft(reversed(batch[index:]))
                    self._outage(exc)
                    return False
                self._drop([run], f"the database refused it: {str(exc).splitlines()[0]}")
        return True

    def _outage(self, exc: Exception) -> None:
        now = time.monotonic()
        if self._failing_since is None:
            self._failing_since = now
        self._backoff = min(MAX_BACKOFF_SECONDS, max(0.25, self._backoff * 2))
        if now - self._last_logged >= LOG_EVERY_SECONDS or self._last_logged < self._failing_since:
            self._last_logged = now
            log.error("database unavailable (%s): %d probe results are waiting to be written; retrying",
                      str(getattr(exc, "orig", None) or exc).strip().splitlines()[0], len(self._buffer))
        overflow = len(self._buffer) - self._max_buffered
        if overflow > 0:
            self._drop([self._buffer.popleft() for _ in range(overflow)],
                       f"more than {self._max_buffered} results waited for the database")

    def _recovered(self) -> None:
        if self._failing_since is not None:
            log.warning("database available again after %.1f s; writing the %d waiting probe results",
                        time.monotonic() - self._failing_since, len(self._buffer))
        self._failing_since = None
        self._backoff = 0.0

    def _drop(self, runs: list[MeasuredRun], why: str) -> None:
        self.dropped += len(runs)
        log.error("dropped %d measured probe results: %s", len(runs), why)
        try:
            self._on_drop(runs)
        except Exception:
            log.exception("could not record %d dropped probe results", len(runs))
