"""Task priority: 0–10, a larger number runs sooner.

Redis has no real priorities: kombu splits each queue into buckets and reads
bucket 0 first, so on the wire a *smaller* number is sooner, and kombu clamps
it to 0–9. We translate at publish time (``to_broker``) and back when Celery
re-sends a task it received (a retry), so a priority survives retries
unchanged. Levels 0 and 1 share the lowest bucket.
"""

from __future__ import annotations

MIN_PRIORITY = 0
MAX_PRIORITY = 10
DEFAULT_PRIORITY = 5
BROKER_STEPS = list(range(10))  # kombu's Redis transport clamps priorities to 0..9


def clamp(priority: int) -> int:
    return max(MIN_PRIORITY, min(MAX_PRIORITY, int(priority)))


def to_broker(priority: int | None) -> int:
    """User priority (10 = most urgent) -> Redis bucket (0 = read first)."""
    user = DEFAULT_PRIORITY if priority is None else clamp(priority)
    return min(BROKER_STEPS[-1], MAX_PRIORITY - user)


def from_broker(bucket: int) -> int:
    """Redis bucket -> user priority, the inverse of ``to_broker`` (0 and 1 both read back as 1)."""
    return MAX_PRIORITY - int(bucket)
