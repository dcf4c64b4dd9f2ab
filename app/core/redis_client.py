"""The application's own Redis client (status cache, counters), one per process and URL."""

from __future__ import annotations

from functools import lru_cache

import redis

from app.core.config import active_settings


@lru_cache(maxsize=4)
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, decode_responses=True, socket_timeout=5, health_check_interval=30)


def get_redis() -> redis.Redis:
    return _client(active_settings().redis_url)
