"""Operating-system threads and waits that work the same under every Celery pool.

A worker process runs its probes on an event loop in a thread of its own and writes
their results from another (``app.services.probe_executor``). Under the gevent pool
(``--pool=gevent``) the ``threading`` and ``time`` modules are monkey-patched: a
``threading.Thread`` is a greenlet and ``time.sleep`` yields to the hub. Those threads
must be real ones, and what they share with the pool's greenlets must be primitives
that are safe across OS threads. This module hands out the originals when gevent has
patched them, and the standard ones otherwise.
"""

from __future__ import annotations

import _thread
import concurrent.futures
import sys
import threading
import time
from typing import Any, Callable, TypeVar

T = TypeVar("T")

_POLL_SECONDS = 0.005


def gevent_patched() -> bool:
    """True when gevent has monkey-patched ``threading`` in this process."""
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and bool(monkey.is_module_patched("threading"))


def _original(module: str, name: str, default: Any) -> Any:
    if not gevent_patched():
        return default
    from gevent import monkey

    return monkey.get_original(module, name)


def start_thread(target: Callable[[], None], name: str) -> None:
    """Run ``target`` on a new OS thread that never keeps the process alive."""
    if gevent_patched():
        from gevent import monkey

        monkey.get_original("_thread", "start_new_thread")(target, ())
    else:
        threading.Thread(target=target, name=name, daemon=True).start()


def allocate_lock() -> Any:
    """A lock that OS threads and greenlets can share."""
    return _original("_thread", "allocate_lock", _thread.allocate_lock)()


def blocking_sleep(seconds: float) -> None:
    """Sleep this OS thread (never a gevent yield: for the engine's own threads)."""
    _original("time", "sleep", time.sleep)(seconds)


def wait_future(future: concurrent.futures.Future[T], timeout: float | None) -> T:
    """``future.result(timeout)``, without blocking the gevent hub when called from a greenlet.

    A future completed on another OS thread cannot wake a greenlet through ``threading``
    (patched to gevent's primitives, which are per hub); under gevent this polls with a
    cooperative sleep instead.
    """
    if not gevent_patched():
        return future.result(timeout)
    deadline = None if timeout is None else time.monotonic() + timeout
    while not future.done():
        if deadline is not None and time.monotonic() >= deadline:
            raise concurrent.futures.TimeoutError()
        time.sleep(_POLL_SECONDS)  # gevent's: lets the other greenlets run
    return future.result()


def cooperative_sleep(seconds: float) -> None:
    """Wait in the calling task: a gevent yield under gevent, a plain sleep otherwise."""
    time.sleep(seconds)
