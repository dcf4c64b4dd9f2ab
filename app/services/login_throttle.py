"""Slow down password guessing: after too many failed logins for one username, or from
one client address, within a window, further attempts are refused (429) until the
window has passed. Counters live in Redis so every API process shares them."""

from __future__ import annotations

import hashlib

from app.core.config import active_settings
from app.core.redis_client import get_redis
from app.services.errors import RateLimitedError

_KEY = "admin_mit:login-failures:{}:{}"


def _key(kind: str, value: str) -> str:
    # Hashed: the keys should not spell out usernames and addresses for anyone reading Redis.
    return _KEY.format(kind, hashlib.sha256(value.encode()).hexdigest()[:32])


def _user_key(username: str) -> str:
    return _key("user", username.strip().lower())


def _keys(username: str, client: str) -> list[tuple[str, int]]:
    """Each counter with its limit."""
    settings = active_settings().api
    return [
        (_user_key(username), settings.login_max_failures),
        (_key("client", client), settings.login_max_failures_per_ip),
    ]


def check(username: str, client: str) -> None:
    """Raise ``RateLimitedError`` while the username or the client is locked out."""
    redis = get_redis()
    keys = _keys(username, client)
    with redis.pipeline() as pipe:
        for key, _ in keys:
            pipe.get(key)
            pipe.ttl(key)
        replies = pipe.execute()
    for index, (_, limit) in enumerate(keys):
        count, ttl = replies[2 * index], replies[2 * index + 1]
        if count is not None and int(count) >= limit:
            wait = max(int(ttl), 1)
            raise RateLimitedError(f"too many failed logins; try again in {wait} s", retry_after=wait)


def record_failure(username: str, client: str) -> None:
    window = active_settings().api.login_window_seconds
    redis = get_redis()
    keys = [key for key, _ in _keys(username, client)]
    with redis.pipeline() as pipe:
        for key in keys:
            pipe.incr(key)
            pipe.ttl(key)
        replies = pipe.execute()
    # The window starts at the first failure; a key left without expiry is given one too.
    for index, key in enumerate(keys):
        if replies[2 * index + 1] < 0:
            redis.expire(key, window)


def clear(username: str) -> None:
    """A successful login forgives the username's failures (not the client's)."""
    get_redis().delete(_user_key(username))
