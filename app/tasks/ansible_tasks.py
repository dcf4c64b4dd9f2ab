"""Ansible tasks (queue ``ansible``): run an execution, and beat's housekeeping.

Run a dedicated worker for this queue (``-Q ansible``, prefork, ``-O fair``): each run
holds a pool process for its whole length. Beyond the concurrency, messages wait in the
queue; beyond a tenant's limit, executions wait as ``pending`` (docs/ansible.md).
"""

from __future__ import annotations

import logging
from typing import Any

from celery import signals

from app.celery_app import celery, get_flask_app
from app.core.config import active_settings
from app.tasks.base import AnsibleTask

log = logging.getLogger(__name__)

# A run may last ansible.max_timeout_seconds; the hard limit only catches a worker that
# failed to end it (the run's own timeout ends the playbook first).
_RUN_LIMIT = active_settings().ansible.max_timeout_seconds + 300


@celery.task(bind=True, base=AnsibleTask, ignore_result=True, time_limit=_RUN_LIMIT, soft_time_limit=_RUN_LIMIT - 60)
def run_execution(self: AnsibleTask, execution_id: int) -> str | None:
    """Run one execution if it is still pending and its tenant has a free slot."""
    from app.services import execution_runs

    return execution_runs.run(int(execution_id), self.request.hostname or "worker")


@celery.task(bind=True, base=AnsibleTask, ignore_result=True, time_limit=120, soft_time_limit=100)
def ansible_housekeeping(self: AnsibleTask) -> dict[str, Any]:
    """Beat's pass: executions whose worker went silent are lost; pending ones whose message
    was lost are published again; due schedules start."""
    from app.services import ansible_executions, ansible_schedules

    lost = ansible_executions.reap()
    started = ansible_schedules.start_due()
    republished = ansible_executions.publish_startable(stale_only=True)
    return {"lost": len(lost), "scheduled": len(started), "republished": republished}


@signals.worker_ready.connect
def _reap_what_this_worker_ran_before(sender: Any = None, **_: Any) -> None:
    """A worker starting under a name ends what the previous process of that name left:
    its executions still marked running are lost, and its playbook processes are ended."""
    from app.ansible.processes import end_process_groups, processes_with_marker
    from app.services import ansible_executions, execution_runs

    worker = getattr(sender, "hostname", None)
    consumed = getattr(getattr(getattr(sender, "app", None), "amqp", None), "queues", None)
    if not worker or "ansible" not in (getattr(consumed, "consume_from", None) or {}):
        return  # only workers of the ansible queue run playbooks
    try:
        with get_flask_app().app_context():
            lost = ansible_executions.reap(worker_restarted=worker)
    except Exception as exc:  # the database may not be up yet: beat's pass catches them later
        log.warning("could not check for executions lost by %s: %s", worker, exc)
        lost = []
    orphans = processes_with_marker(prefix=execution_runs.marker_prefix(worker))
    if orphans:
        end_process_groups(orphans, active_settings().ansible.kill_grace_seconds)
    if lost or orphans:
        log.warning("worker %s restarted: %d executions marked lost, %d leftover playbook processes ended",
                    worker, len(lost), len(orphans))
