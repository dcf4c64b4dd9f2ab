"""The application's own Redis client (status cache, counters), one per process and URL,
and the start-up check that the broker answers."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

import redis

from app.core.config import active_settings

if TYPE_CHECKING:
    from celery import Celery

# A worker or beat that cannot reach Redis tries this often, 1 s, 2 s, 3 s … apart (each
# attempt bounded by Celery's broker_connection_timeout), then exits with one line.
STARTUP_BROKER_ATTEMPTS = 5


class BrokerUnavailable(RuntimeError):
    """The broker or the result backend does not answer; the message is one line."""


@lru_cache(maxsize=4)
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, decode_responses=True, socket_timeout=5, health_check_interval=30)


def get_redis() -> redis.Redis:
    return _client(active_settings().redis_url)


def check_broker(app: Celery, attempts: int = 1) -> None:
    """Connect to ``app``'s broker and ping its result backend, trying ``attempts`` times,
    or raise ``BrokerUnavailable``.

    Celery's own start-up retries (``broker_connection_retry_on_startup`` with
    ``broker_connection_max_retries``, 100 by default) log a line per attempt and end
    in a traceback; checking first turns an unreachable Redis into one line. Once a
    worker runs, it reconnects for good (``app.worker_consumer``).
    """
    from kombu.exceptions import OperationalError

    with app.connection_for_write() as conn:
        try:
            conn.ensure_connection(max_retries=attempts - 1, interval_start=1, interval_step=1, interval_max=5)
        except OperationalError as exc:
            tries = f" after {attempts} attempts" if attempts > 1 else ""
            raise BrokerUnavailable(f"broker {conn.as_uri()} unreachable{tries}: {_one_line(exc)}") from None
    client = getattr(app.backend, "client", None)
    if client is not None:
        try:
            client.ping()
        except redis.RedisError as exc:
            raise BrokerUnavailable(f"result backend {app.backend.as_uri()} unreachable: {_one_line(exc)}") from None


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
