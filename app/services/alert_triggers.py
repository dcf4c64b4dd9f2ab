"""Hand stored results to the ``alerts`` queue: one message per stored batch.

Called by the result store right after a batch commits. Only results of tenants with an
enabled rule are handed over, so a deployment without rules publishes nothing; which
tenants have rules is read at most every ``RULE_TENANTS_TTL_SECONDS`` per process (a new
rule is evaluated on results stored from then on). A message that cannot be published
(Redis is down) is not retried here — the writer must not wait for the broker — and the
catch-up sweep (``alert_evaluation.catch_up``) evaluates those results later.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Iterable

from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import RedisError
from sqlalchemy import select

from app.extensions import db
from app.models import AlertRule
from app.services import task_queue

log = logging.getLogger(__name__)

RULE_TENANTS_TTL_SECONDS = 5.0
WARN_EVERY_SECONDS = 30.0
_last_warned = float("-inf")
_lock = threading.Lock()
_rule_tenants: tuple[float, frozenset[int]] = (float("-inf"), frozenset())


def tenants_with_rules() -> frozenset[int]:
    """Tenants that have an enabled alert rule, read on a connection of its own (no session
    transaction is left open in the caller)."""
    global _rule_tenants
    read_at, tenants = _rule_tenants
    if time.monotonic() - read_at < RULE_TENANTS_TTL_SECONDS:
        return tenants
    with _lock:
        if time.monotonic() - _rule_tenants[0] >= RULE_TENANTS_TTL_SECONDS:
            with db.engine.connect() as connection:
                found = connection.scalars(
                    select(AlertRule.tenant_id).where(AlertRule.enabled.is_(True)).distinct()).all()
            _rule_tenants = (time.monotonic(), frozenset(found))
        return _rule_tenants[1]


def forget_rule_tenants() -> None:
    """Read the tenants with rules again on the next hand-over (a rule was just changed here)."""
    global _rule_tenants
    _rule_tenants = (float("-inf"), frozenset())


def hand_over(rows: Iterable[dict[str, Any]]) -> bool:
    """Publish one evaluation message for the stored ``rows`` (probe_results rows with ``id``).

    Returns False if the message could not be published (logged; caught up later).
    """
    rows = list(rows)
    if not rows:
        return True
    try:
        tenants = tenants_with_rules()
        stored = [[row["probe_id"], row["id"]] for row in rows if row["tenant_id"] in tenants]
        if stored:
            task_queue.publish(task_queue.Message(task_queue.EVALUATE_RESULTS, {"results": stored},
                                                  ignore_result=True, retry=False))
        return True
    except (BrokerError, RedisError, OSError) as exc:
        _warn(f"could not hand stored results to the alerts queue ({exc}); the catch-up evaluation will "
              f"look at them")
    except Exception as exc:
        _warn(f"could not hand stored results to the alerts queue: {type(exc).__name__}: {exc}")
    return False


def _warn(message: str) -> None:
    """One line per outage, not one per stored batch (ten a second)."""
    global _last_warned
    if time.monotonic() - _last_warned >= WARN_EVERY_SECONDS:
        _last_warned = time.monotonic()
        log.warning(message)
