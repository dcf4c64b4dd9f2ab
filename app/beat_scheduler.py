"""Beat's scheduler, extended to dispatch due probes about every second.

Scheduled probes are not beat entries (thousands of them would make beat's
bookkeeping the bottleneck and put a scheduling message on the queue per
probe). Instead, between its own entries, beat claims due probes straight from
the database (``services.dispatch``), so no scheduling message ever waits in a
queue. Claims are compare-and-set, so running two beats is safe.

``BeatCommand`` is what ``celery … beat`` runs (``AdminMitCelery.Beat``): Celery's own,
with a stop signal during start-up handled.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import beat
from celery.apps.beat import Beat
from celery.beat import PersistentScheduler

from app.celery_app import get_flask_app
from app.core.config import active_settings
from app.services.dispatch import dispatch_due

log = logging.getLogger(__name__)


class ProbeDispatchScheduler(PersistentScheduler):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._next_dispatch = 0.0
        self._dispatching = False
        self._closed = False

    def close(self) -> None:
        self._closed = True
        super().close()

    def tick(self, *args: Any, **kwargs: Any) -> float:
        """A closed scheduler ticks no more: a stop signal can close the store in the middle of a
        tick, and the ``SystemExit`` Celery's handler raises is lost when the signal lands in a
        weak-reference callback; the loop then ends on ``_is_shutdown`` (see ``_BeatService``)."""
        if self._closed:
            return 0.0
        try:
            delay = super().tick(*args, **kwargs)
        except ValueError:  # "invalid operation on closed shelf"
            if self._closed:
                return 0.0
            raise
        if self._closed:
            return 0.0
        interval = active_settings().probes.dispatch_interval_seconds
        if time.monotonic() >= self._next_dispatch:
            self._next_dispatch = time.monotonic() + interval
            self._dispatch()
        return min(delay, max(0.0, self._next_dispatch - time.monotonic()))

    def _dispatch(self) -> None:
        try:
            with get_flask_app().app_context():
                dispatch_due()
            if not self._dispatching:
                self._dispatching = True
                log.info("dispatcher: claiming due probes every %gs",
                         active_settings().probes.dispatch_interval_seconds)
        except Exception as exc:  # keep beat alive: the next tick retries
            log.error("dispatching due probes failed: %s", exc, exc_info=log.isEnabledFor(logging.DEBUG))


class _BeatService(beat.Service):
    def sync(self) -> None:
        """Save and close the scheduler on SIGTERM/SIGINT, if it has been built.

        Celery's handler calls this at any moment, then raises ``SystemExit``; during start-up, while the scheduler
        is still being imported or built, reaching for it would build a second one inside
        the first and exit with a traceback. Nothing is open yet then, so nothing to save.
        """
        if "scheduler" in self.__dict__:  # the cached property has been filled
            self.scheduler.close()
        self._is_stopped.set()
        self._is_shutdown.set()  # ends the loop even if the handler's SystemExit is lost


class BeatCommand(Beat):
    Service = _BeatService
