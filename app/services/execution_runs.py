"""Running one execution on this worker: start it, run the playbook, store its output, end it.

Called by the ``ansible`` task with an execution id. While the playbook runs, the runner
polls ``should_cancel`` several times a second; that poll is also where the worker
flushes buffered events, writes its heartbeat (every ``ansible.heartbeat_seconds``) and
learns of a cancel (the Redis key at every poll, the database column with every
heartbeat). A heartbeat that finds the execution no longer this worker's (the reaper
declared it lost) ends the run too.
"""

from __future__ import annotations

import logging
import shlex
import time
from dataclasses import replace
from pathlib import Path

from app.ansible.runs import RunOutcome, RunRequest, run_playbook
from app.core.config import Settings, active_settings
from app.extensions import db
from app.models import AnsibleExecution, AnsiblePlaybookVersion
from app.services import ansible_credentials, ansible_executions
from app.services.ansible_executions import Ending
from app.services.execution_events import EventWriter

log = logging.getLogger(__name__)

MARKER_PREFIX = "admin-mit"


def marker_prefix(worker: str) -> str:
    """What every process of this worker's runs carries: the start-up reaper finds them by it."""
    return f"{MARKER_PREFIX}/{worker}/"


def run(execution_id: int, worker: str) -> str | None:
    """Run the execution if this worker can start it; returns its final status (None: not started)."""
    if not ansible_executions.start(execution_id, worker):
        return None
    try:
        request = _request(execution_id, worker)
    except Exception as exc:
        ending = Ending("failed", reason=f"could not prepare the run: {exc}")
        ansible_executions.finish(execution_id, worker, ending)
        return ending.status
    watch = _Watch(execution_id, worker)
    try:
        outcome = run_playbook(request, on_event=watch.add, should_cancel=watch.should_cancel)
        unwritten = watch.writer.close()
        ending = _ending(outcome, watch)
        if unwritten:
            ending = replace(ending, reason=f"{ending.reason or ending.status}; the last {unwritten} events "
                                            f"could not be stored (the database did not answer)")
    except Exception as exc:
        log.exception("execution %d failed in the worker", execution_id)
        db.session.rollback()
        ending = Ending("failed", reason=f"the worker failed while it ran: {type(exc).__name__}")
    ansible_executions.finish(execution_id, worker, ending)
    return ending.status


def _ending(outcome: RunOutcome, watch: _Watch) -> Ending:
    if watch.lost:
        return Ending("lost", outcome.rc, "lost: the execution was declared lost while it ran", outcome.hosts)
    if outcome.status == "canceled":
        return Ending("canceled", outcome.rc, "canceled", outcome.hosts)
    return Ending(outcome.status, outcome.rc, outcome.reason, outcome.hosts)


def _request(execution_id: int, worker: str) -> RunRequest:
    settings = active_settings()
    execution = db.session.get(AnsibleExecution, execution_id)
    assert execution is not None
    options = execution.options
    credentials = ansible_credentials.for_run(execution.tenant_id, execution.credential_ids)
    content, path = _playbook(execution)
    request = RunRequest(
        runs_dir=settings.ansible_runs_dir,
        name=f"execution-{execution_id}",
        marker=f"{marker_prefix(worker)}{execution_id}",
        inventory=execution.inventory_text,
        playbook_content=content,
        playbook_path=path,
        extravars=dict(options.get("extra_vars") or {}),
        limit=options.get("limit"),
        tags=tuple(options.get("tags") or ()),
        skip_tags=tuple(options.get("skip_tags") or ()),
        check=bool(options.get("check")),
        diff=bool(options.get("diff")),
        forks=int(options.get("forks") or 5),
        verbosity=int(options.get("verbosity") or 0),
        remote_user=credentials.username,
        ssh_key=credentials.ssh_key,
        ssh_key_passphrase=credentials.ssh_key_passphrase,
        ssh_password=credentials.ssh_password,
        become_password=credentials.become_password,
        become_method=credentials.become_method,
        become_user=credentials.become_user,
        vault_password=credentials.vault_password,
        vault_id=credentials.vault_id,
        job_timeout=float(options["timeout_seconds"]),
        idle_timeout=float(options["idle_timeout_seconds"]),
        kill_grace_seconds=settings.ansible.kill_grace_seconds,
        max_event_bytes=settings.ansible.max_event_bytes,
        extra_env=_ssh_env(settings),
    )
    db.session.rollback()  # no transaction stays open while the playbook runs
    return request


def _ssh_env(settings: Settings) -> dict[str, str]:
    """How runs check SSH host keys (``ansible.host_key_checking``, ``ansible.known_hosts_file``)."""
    section = settings.ansible
    if section.host_key_checking == "off":
        return {"ANSIBLE_HOST_KEY_CHECKING": "False"}
    options = []
    if settings.ansible_known_hosts_file:
        options.append(f"-o UserKnownHostsFile={shlex.quote(str(settings.ansible_known_hosts_file))}")
    if section.host_key_checking == "accept_new":
        options.append("-o StrictHostKeyChecking=accept-new")
    return {"ANSIBLE_SSH_COMMON_ARGS": " ".join(options)} if options else {}


def _playbook(execution: AnsibleExecution) -> tuple[str | None, Path | None]:
    version = db.session.get(AnsiblePlaybookVersion, execution.playbook_version_id) \
        if execution.playbook_version_id else None
    if version is None:
        raise RuntimeError("its playbook version was deleted")
    if version.content is not None:
        return version.content, None
    root = active_settings().ansible_projects_root
    if root is None or not version.project_dir or not version.playbook_file:
        raise RuntimeError("project playbooks are not configured on this worker (ansible.projects_root)")
    from app.ansible.syntax import check_project_playbook

    return None, check_project_playbook(root, version.project_dir, version.playbook_file)


class _Watch:
    """The run's link to the rest of the system: events in, heartbeats and cancel out."""

    def __init__(self, execution_id: int, worker: str) -> None:
        self.execution_id = execution_id
        self.worker = worker
        self.writer = EventWriter(execution_id)
        self._heartbeat_every = active_settings().ansible.heartbeat_seconds
        self._next_heartbeat = time.monotonic() + self._heartbeat_every
        self.canceled = False
        self.lost = False

    def add(self, event) -> None:  # type: ignore[no-untyped-def]
        self.writer.add(event)

    def should_cancel(self) -> bool:
        self.writer.tick()
        if time.monotonic() >= self._next_heartbeat:
            self._next_heartbeat = time.monotonic() + self._heartbeat_every
            try:
                answer = ansible_executions.heartbeat(self.execution_id, self.worker)
            except Exception as exc:  # the database is away: the run goes on, the events wait
                db.session.rollback()
                log.warning("execution %d: heartbeat not written (%s)", self.execution_id, exc)
                answer = False
            if answer is None:
                self.lost = True
            elif answer:
                self.canceled = True
        if not self.canceled:
            try:
                self.canceled = ansible_executions.cancel_requested(self.execution_id)
            except Exception:  # Redis away: the heartbeat reads the database's flag
                pass
        return self.canceled or self.lost
