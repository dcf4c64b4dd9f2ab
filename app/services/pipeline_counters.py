"""Running totals of the probe pipeline per tenant, in Redis, for ``/metrics``.

One hash (``admin_mit:stats:pipeline``), a field ``<tenant id>:<event>`` per tenant and
event, incremented with HINCRBY after the transaction that did the work committed, so
every dispatcher, worker and API process adds to the same totals and a scrape reads
them with one command. The totals only grow (a Redis flush starts them again at zero,
which Prometheus reads as a counter reset). ``probe_run_losses`` keeps the losses by
slot for ``/runs/stats``; a late result withdraws its loss there, while the total here
keeps it: it counts what happened when.

Events: ``dispatched`` (slots published to workers, re-issues included), ``reissued``
(of those, re-issues of an expired lease), ``stored`` (results written), ``duplicates``
(runs skipped at write because they were stored before), and the loss reasons of
``run_losses.REASONS``.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any, Iterable

from redis.exceptions import RedisError

from app.core.redis_client import get_redis
from app.services.run_losses import REASONS, Loss

log = logging.getLogger(__name__)

KEY = "admin_mit:stats:pipeline"
EVENTS = ("dispatched", "reissued", "stored", "duplicates", *REASONS)


def add(counts: Counter[tuple[int, str]]) -> None:
    """Add ``{(tenant_id, event): n}``; a Redis failure is logged, never raised (the work is done)."""
    counts = Counter({key: n for key, n in counts.items() if n})
    if not counts:
        return
    try:
        with get_redis().pipeline(transaction=False) as pipe:
            for (tenant_id, event), n in counts.items():
                pipe.hincrby(KEY, f"{tenant_id}:{event}", n)
            pipe.execute()
    except RedisError as exc:
        log.warning("could not add to the pipeline totals in Redis (%s): /metrics will undercount", exc)


def count_dispatch(dispatched: Iterable[Any], reissued: Iterable[Any]) -> None:
    """Slots published to workers (``LeasedRun``s: anything with ``tenant_id``)."""
    counts: Counter[tuple[int, str]] = Counter()
    for run in dispatched:
        counts[(run.tenant_id, "dispatched")] += 1
    for run in reissued:
        counts[(run.tenant_id, "reissued")] += 1
    add(counts)


def count_losses(losses: Iterable[Loss]) -> None:
    counts: Counter[tuple[int, str]] = Counter()
    for loss in losses:
        counts[(loss.tenant_id, loss.reason)] += loss.slots
    add(counts)


def count_stored(rows: Iterable[dict[str, Any]], skipped: Iterable[dict[str, Any]]) -> None:
    """Result rows written, and rows skipped as stored before (``probe_results`` rows with ``tenant_id``)."""
    counts: Counter[tuple[int, str]] = Counter()
    for row in rows:
        counts[(row["tenant_id"], "stored")] += 1
    for row in skipped:
        counts[(row["tenant_id"], "duplicates")] += 1
    add(counts)


def totals() -> dict[int, dict[str, int]]:
    """``{tenant_id: {event: total}}`` for every tenant with a count (events never counted are absent)."""
    found: dict[int, dict[str, int]] = {}
    for field, value in get_redis().hgetall(KEY).items():
        tenant, _, event = field.partition(":")
        if event in EVENTS and tenant.isdigit():
            found.setdefault(int(tenant), {})[event] = int(value)
    return found
