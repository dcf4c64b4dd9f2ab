"""Execution templates on a cron schedule: beat starts the due ones, each occurrence once.

A template's ``next_run_at`` (epoch ms) is moved to its next occurrence by one
compare-and-set per template, as a probe's slot is, so two beats never start the same
occurrence twice. Occurrences that passed while no beat ran are skipped, not replayed: a
playbook run an hour late, several times over, is rarely what anyone wants.
"""

from __future__ import annotations

import logging
import time

from sqlalchemy import select, update

from app.extensions import db
from app.models import AnsibleExecutionTemplate
from app.services import ansible_executions
from app.services.ansible_templates import RunOptions, next_cron_ms
from app.services.errors import ServiceError

log = logging.getLogger(__name__)


def start_due(now_ms: int | None = None) -> list[int]:
    """Start an execution for every enabled template whose occurrence is due; returns their ids."""
    now_ms = now_ms or int(time.time() * 1000)
    due = db.session.execute(
        select(AnsibleExecutionTemplate.id, AnsibleExecutionTemplate.next_run_at, AnsibleExecutionTemplate.cron,
               AnsibleExecutionTemplate.timezone)
        .where(AnsibleExecutionTemplate.enabled.is_(True), AnsibleExecutionTemplate.next_run_at <= now_ms)
        .order_by(AnsibleExecutionTemplate.next_run_at).limit(100)).all()
    db.session.rollback()
    started = []
    for row in due:
        following = next_cron_ms(row.cron, row.timezone, now_ms) if row.cron else None
        claimed = db.session.execute(
            update(AnsibleExecutionTemplate)
            .where(AnsibleExecutionTemplate.id == row.id, AnsibleExecutionTemplate.next_run_at == row.next_run_at)
            .values(next_run_at=following, updated_at=AnsibleExecutionTemplate.updated_at)
            .execution_options(synchronize_session=False)).rowcount
        db.session.commit()
        if claimed != 1:
            continue  # another beat took this occurrence
        execution_id = _start(row.id)
        if execution_id is not None:
            started.append(execution_id)
    return started


def _start(template_id: int) -> int | None:
    template = db.session.get(AnsibleExecutionTemplate, template_id)
    if template is None:
        return None
    try:
        execution = ansible_executions.create(
            template.tenant_id, None, template.playbook_id, template.inventory_id, list(template.credential_ids),
            RunOptions(**template.options), template_id=template.id)
    except ServiceError as exc:  # e.g. a credential deleted since: the occurrence is skipped, said in the log
        db.session.rollback()
        log.warning("template %d (%s): scheduled run not started: %s", template.id, template.name, exc)
        return None
    return execution.id
