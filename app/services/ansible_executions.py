"""Executions: request, start, finish, cancel, and the reaper of executions whose worker died.

Life of an execution (docs/ansible.md): ``create`` stores it ``pending`` with everything it
will run (playbook version, inventory text, credential ids, options) and publishes one
message on ``ansible``. A worker ``start``s it by compare-and-set ``pending`` → ``running``,
only while fewer than ``ansible.max_concurrent_per_tenant`` of its tenant run; otherwise it
stays pending and is published again when one of them ends (``publish_startable``). Only
the worker that started it can ``finish`` it (``running`` and its ``worker``), so a
redelivered message never starts a second run, and a run the reaper declared ``lost`` is
not resurrected by a late ending.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import func, select, update

from app.core.config import active_settings
from app.core.redis_client import get_redis
from app.extensions import db
from app.models import AnsibleExecution, AnsibleInventory, Tenant
from app.models.ansible import FINISHED_STATUSES
from app.services import ansible_credentials, ansible_inventories, ansible_playbooks, execution_events
from app.services.ansible_templates import RunOptions
from app.services.errors import ConflictError, InvalidInputError
from app.services.task_queue import RUN_EXECUTION, Message, publish_all
from app.services.tenant_rows import owned

CANCEL_KEY = "admin_mit:ansible:cancel:{}"
# A pending execution whose message was published this long ago and that has not started
# (a message lost with Redis, or a tenant slot that freed while nobody looked) is published again.
REPUBLISH_AFTER = timedelta(seconds=30)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def create(tenant_id: int, user_id: int | None, playbook_id: int, inventory_id: int, credential_ids: list[int],
           options: RunOptions, template_id: int | None = None) -> AnsibleExecution:
    """Store a pending execution with what it will run, then publish its message. Commits."""
    settings = active_settings().ansible
    playbook, version = ansible_playbooks.for_run(tenant_id, playbook_id)
    inventory = owned(AnsibleInventory, tenant_id, inventory_id, "inventory")
    inventory_text, inventory_format = ansible_inventories.inventory_text(inventory)
    ansible_credentials.check_ids(tenant_id, credential_ids)
    timeout = options.timeout_seconds or settings.default_timeout_seconds
    if timeout > settings.max_timeout_seconds:
        raise InvalidInputError(f"must be at most {settings.max_timeout_seconds}", field="timeout_seconds")
    stored_options = options.model_dump()
    stored_options.update(timeout_seconds=timeout, inventory_format=inventory_format,
                          idle_timeout_seconds=options.idle_timeout_seconds or settings.default_idle_timeout_seconds)
    execution = AnsibleExecution(
        tenant_id=tenant_id, playbook_id=playbook.id, playbook_version_id=version.id, playbook_name=playbook.name,
        inventory_id=inventory.id, template_id=template_id, inventory_text=inventory_text,
        credential_ids=list(credential_ids), options=stored_options, status="pending", created_by=user_id,
        task_id=str(uuid.uuid4()), published_at=_now())
    db.session.add(execution)
    db.session.commit()
    _publish([execution])
    return execution


def _publish(executions: list[AnsibleExecution]) -> None:
    """Publish run messages. A failure leaves them pending; beat publishes them again."""
    publish_all([Message(RUN_EXECUTION, {"execution_id": row.id}, task_id=row.task_id, ignore_result=True)
                 for row in executions])


def start(execution_id: int, worker: str) -> bool:
    """Take a pending execution for ``worker`` if its tenant has a free slot. Commits.

    False: it is not pending any more (a redelivered message, a cancel) or the tenant's
    slots are full (it stays pending and is published again when one frees up).
    """
    execution = db.session.get(AnsibleExecution, execution_id)
    if execution is None or execution.status != "pending":
        db.session.rollback()
        return False
    tenant_id = execution.tenant_id
    if db.session.get_bind().dialect.name == "postgresql":
        # One starter at a time per tenant: the count below is then exact.
        db.session.execute(select(Tenant.id).where(Tenant.id == tenant_id).with_for_update())
    running = (select(func.count()).select_from(AnsibleExecution)
               .where(AnsibleExecution.tenant_id == tenant_id, AnsibleExecution.status == "running")
               .scalar_subquery())
    now = _now()
    taken = db.session.execute(
        update(AnsibleExecution)
        .where(AnsibleExecution.id == execution_id, AnsibleExecution.status == "pending",
               running < active_settings().ansible.max_concurrent_per_tenant)
        .values(status="running", worker=worker, started_at=now, heartbeat_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    db.session.commit()
    return taken == 1


def heartbeat(execution_id: int, worker: str) -> bool | None:
    """Record that ``worker`` still runs the execution. Commits.

    Returns whether a cancel was requested, or None when the execution is no longer this
    worker's to run (the reaper declared it lost): the caller must end the run.
    """
    row = db.session.execute(
        update(AnsibleExecution)
        .where(AnsibleExecution.id == execution_id, AnsibleExecution.status == "running",
               AnsibleExecution.worker == worker)
        .values(heartbeat_at=_now())
        .returning(AnsibleExecution.cancel_requested_at)
        .execution_options(synchronize_session=False)
    ).first()
    db.session.commit()
    return None if row is None else row.cancel_requested_at is not None


def cancel_requested(execution_id: int) -> bool:
    """The cheap check a running execution makes several times a second."""
    return bool(get_redis().exists(CANCEL_KEY.format(execution_id)))


@dataclass(frozen=True)
class Ending:
    status: str
    rc: int | None = None
    reason: str | None = None
    hosts: dict[str, dict[str, int]] | None = None


def finish(execution_id: int, worker: str, ending: Ending) -> bool:
    """End a running execution of ``worker``; False if it was not (it was reaped). Commits,
    then closes its live stream and publishes the tenant's next pending execution."""
    values: dict[str, Any] = {"status": ending.status, "rc": ending.rc, "reason": ending.reason,
                              "finished_at": _now()}
    if ending.hosts is not None:
        values["host_summary"] = ending.hosts
    row = db.session.execute(
        update(AnsibleExecution)
        .where(AnsibleExecution.id == execution_id, AnsibleExecution.status == "running",
               AnsibleExecution.worker == worker)
        .values(**values)
        .returning(AnsibleExecution.tenant_id, AnsibleExecution.event_count)
        .execution_options(synchronize_session=False)
    ).first()
    db.session.commit()
    if row is None:
        return False
    _ended(execution_id, row.tenant_id, row.event_count, ending.status)
    return True


def _ended(execution_id: int, tenant_id: int, last_seq: int, status: str) -> None:
    execution_events.close_stream(execution_id, last_seq, status)
    get_redis().delete(CANCEL_KEY.format(execution_id))
    publish_startable([tenant_id])


def cancel(tenant_id: int, execution_id: int) -> AnsibleExecution:
    """Cancel a pending execution at once, or ask its worker to end a running one. Commits."""
    execution = owned(AnsibleExecution, tenant_id, execution_id, "execution")
    if execution.status in FINISHED_STATUSES:
        raise ConflictError(f"execution {execution_id} has already ended ({execution.status})")
    now = _now()
    ended = db.session.execute(
        update(AnsibleExecution)
        .where(AnsibleExecution.id == execution_id, AnsibleExecution.status == "pending")
        .values(status="canceled", reason="canceled before it started", finished_at=now, cancel_requested_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    if not ended:
        db.session.execute(
            update(AnsibleExecution)
            .where(AnsibleExecution.id == execution_id, AnsibleExecution.status == "running",
                   AnsibleExecution.cancel_requested_at.is_(None))
            .values(cancel_requested_at=now)
            .execution_options(synchronize_session=False))
    db.session.commit()
    if ended:
        execution_events.close_stream(execution_id, execution.event_count, "canceled")
    else:
        # The worker polls this key several times a second; the column is its fallback
        # (read with every heartbeat) should Redis lose the key.
        get_redis().set(CANCEL_KEY.format(execution_id), "1", ex=active_settings().ansible.max_timeout_seconds)
    db.session.refresh(execution)
    return execution


def publish_startable(tenant_ids: list[int] | None = None, stale_only: bool = False) -> int:
    """Publish again the oldest pending executions that a free slot of their tenant could start.

    ``stale_only``: only those published more than ``REPUBLISH_AFTER`` ago (beat's pass,
    for messages lost with Redis). Commits. Returns how many were published.
    """
    limit = active_settings().ansible.max_concurrent_per_tenant
    running = dict(db.session.execute(
        select(AnsibleExecution.tenant_id, func.count())
        .where(AnsibleExecution.status == "running")
        .group_by(AnsibleExecution.tenant_id)).all())
    query = select(AnsibleExecution).where(AnsibleExecution.status == "pending")
    if tenant_ids is not None:
        query = query.where(AnsibleExecution.tenant_id.in_(tenant_ids))
    if stale_only:
        query = query.where(AnsibleExecution.published_at < _now() - REPUBLISH_AFTER)
    chosen: list[AnsibleExecution] = []
    free: dict[int, int] = {}
    for execution in db.session.scalars(query.order_by(AnsibleExecution.id).limit(1000)):
        slots = free.setdefault(execution.tenant_id, limit - running.get(execution.tenant_id, 0))
        if slots > 0:
            free[execution.tenant_id] = slots - 1
            execution.published_at = _now()
            chosen.append(execution)
    db.session.commit()
    if chosen:
        _publish(chosen)
    return len(chosen)


def reap(worker_restarted: str | None = None) -> list[int]:
    """Mark ``lost`` the running executions whose worker is gone. Commits.

    Beat's pass (``worker_restarted`` None): those whose heartbeat is older than
    ``ansible.lost_after_seconds``. A worker starting up under a name passes it: whatever
    that name was running belonged to the process that came before, which is dead.
    """
    now = _now()
    if worker_restarted is None:
        lost_after = active_settings().ansible.lost_after_seconds
        condition = AnsibleExecution.heartbeat_at < now - timedelta(seconds=lost_after)
        reason = f"lost: its worker sent no heartbeat for {lost_after:g} s (it died or lost the database)"
    else:
        condition = AnsibleExecution.worker == worker_restarted
        reason = f"lost: its worker {worker_restarted} restarted while it ran"
    rows = db.session.execute(
        update(AnsibleExecution)
        .where(AnsibleExecution.status == "running", condition)
        .values(status="lost", reason=reason, finished_at=now)
        .returning(AnsibleExecution.id, AnsibleExecution.tenant_id, AnsibleExecution.event_count)
        .execution_options(synchronize_session=False)
    ).all()
    db.session.commit()
    for row in rows:
        execution_events.close_stream(row.id, row.event_count, "lost")
    if rows:
        publish_startable(sorted({row.tenant_id for row in rows}))
    return [row.id for row in rows]
