"""What happens when a task gives up: a log line, a database row, the registered callbacks."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

from app.extensions import db
from app.models import TaskFailure, Tenant

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class FailureInfo:
    """What a failure callback is told: a snapshot, safe to keep after the session is gone."""

    failure_id: int
    task_id: str
    task_name: str
    tenant_id: int | None
    args: list[Any]
    kwargs: dict[str, Any]
    error: str
    retries: int


FailureCallback = Callable[[FailureInfo], None]
_callbacks: list[FailureCallback] = []


def register_failure_callback(callback: FailureCallback) -> FailureCallback:
    """Call ``callback(info)`` whenever a task fails for good. Usable as a decorator."""
    _callbacks.append(callback)
    return callback


def unregister_failure_callback(callback: FailureCallback) -> None:
    _callbacks.remove(callback)


def record_task_failure(*, task_id: str, task_name: str, args: list[Any], kwargs: dict[str, Any],
                        error: BaseException, traceback: str | None, retries: int) -> FailureInfo:
    log.error("task %s[%s] failed after %d retries: %r", task_name, task_id, retries, error)
    db.session.rollback()  # the failing statement may have left the session unusable
    tenant_id = kwargs.get("tenant_id")
    if not isinstance(tenant_id, int) or db.session.get(Tenant, tenant_id) is None:
        tenant_id = None
    failure = TaskFailure(
        task_id=task_id,
        task_name=task_name,
        tenant_id=tenant_id,
        args=list(args),
        kwargs=dict(kwargs),
        error=f"{type(error).__name__}: {error}",
        traceback=traceback,
        retries=retries,
    )
    db.session.add(failure)
    db.session.commit()
    info = FailureInfo(failure.id, failure.task_id, failure.task_name, failure.tenant_id,
                       failure.args, failure.kwargs, failure.error, failure.retries)
    for callback in list(_callbacks):
        try:
            callback(info)
        except Exception:
            log.exception("failure callback %r raised", callback)
    return info
