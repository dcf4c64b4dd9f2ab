"""``admin-mit run`` and ``admin-mit execution``: start a playbook run and follow its output in the
terminal; list, show and cancel executions.

``run`` queues the execution on ``ansible`` like the API does (a worker of that queue runs
it), prints each event's output as it is stored, and exits with the run's status:
0 successful, 1 failed, 3 canceled, 4 timeout, 5 lost (2 stays click's usage error).
Ctrl-C cancels the run and follows it to its end (a second Ctrl-C stops following);
``--detach`` only prints its id.
"""

from __future__ import annotations

import json
import signal
import sys
from typing import Any

import click
from flask.cli import with_appcontext
from sqlalchemy import select

from app.cli import cli
from app.cli.alerts import _owned, _tenant_id

EXIT_CODES = {"successful": 0, "failed": 1, "canceled": 3, "timeout": 4, "lost": 5}


def _by_ref(model: Any, tenant_id: int, ref: str, what: str) -> Any:
    """A tenant's row by id or by name."""
    from app.extensions import db
    from app.services.errors import NotFoundError

    row = db.session.get(model, int(ref)) if ref.isdigit() and int(ref) < 2**31 else None
    if row is None or row.tenant_id != tenant_id:
        row = db.session.scalar(select(model).where(model.tenant_id == tenant_id, model.name == ref))
    if row is None:
        raise NotFoundError(f"{what} {ref!r} not found")
    return row


def _extra_vars(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``-e k=v`` (a string) or ``-e '{"k": 1}'`` (JSON), later ones winning."""
    values: dict[str, Any] = {}
    for pair in pairs:
        if pair.lstrip().startswith("{"):
            try:
                parsed = json.loads(pair)
            except ValueError as exc:
                raise click.BadParameter(f"not JSON: {exc}", param_hint="--extra-vars") from None
            if not isinstance(parsed, dict):
                raise click.BadParameter("JSON must be an object", param_hint="--extra-vars")
            values.update(parsed)
        elif "=" in pair:
            key, value = pair.split("=", 1)
            values[key.strip()] = value
        else:
            raise click.BadParameter(f"expected key=value or a JSON object, got {pair!r}", param_hint="--extra-vars")
    return values


@cli.command("run")
@click.argument("playbook")
@click.option("--inventory", "inventory_ref", required=True, help="Inventory id or name.")
@click.option("--tenant", "tenant_ref", required=True, help="Tenant id or name.")
@click.option("--limit", default=None, help="Run on this subset of the inventory (Ansible's --limit).")
@click.option("--credential", "credential_refs", multiple=True, help="Credential id or name (repeatable).")
@click.option("-e", "--extra-vars", "extra_vars", multiple=True, help="key=value or a JSON object (repeatable).")
@click.option("--tags", default=None, help="Comma-separated tags to run.")
@click.option("--skip-tags", default=None, help="Comma-separated tags to skip.")
@click.option("--check", is_flag=True, help="Check mode: report what would change, change nothing.")
@click.option("--diff", is_flag=True, help="Show the differences of changed files and templates.")
@click.option("--forks", type=click.IntRange(1, 100), default=5, show_default=True)
@click.option("-v", "--verbose", "verbosity", count=True, help="More output from ansible (-vvvv at most).")
@click.option("--timeout", "timeout_seconds", type=click.IntRange(1), default=None, help="Job timeout in seconds.")
@click.option("--detach", is_flag=True, help="Print the execution id and return at once.")
@with_appcontext
def run_playbook(playbook: str, inventory_ref: str, tenant_ref: str, limit: str | None,
                 credential_refs: tuple[str, ...], extra_vars: tuple[str, ...], tags: str | None,
                 skip_tags: str | None, check: bool, diff: bool, forks: int, verbosity: int,
                 timeout_seconds: int | None, detach: bool) -> None:
    """Run PLAYBOOK (a stored playbook's id or name) on a worker of the ansible queue and stream its output."""
    from app.models import AnsibleCredential, AnsibleInventory, AnsiblePlaybook
    from app.services import ansible_executions
    from app.services.ansible_templates import RunOptions

    tenant_id = _tenant_id(tenant_ref) or 0
    options = RunOptions(limit=limit, extra_vars=_extra_vars(extra_vars), tags=_split(tags),
                         skip_tags=_split(skip_tags), check=check, diff=diff, forks=forks,
                         verbosity=min(verbosity, 4), timeout_seconds=timeout_seconds)
    execution = ansible_executions.create(
        tenant_id, None, _by_ref(AnsiblePlaybook, tenant_id, playbook, "playbook").id,
        _by_ref(AnsibleInventory, tenant_id, inventory_ref, "inventory").id,
        [_by_ref(AnsibleCredential, tenant_id, ref, "credential").id for ref in credential_refs], options)
    click.echo(f"execution {execution.id} queued (task {execution.task_id})", err=True)
    if detach:
        click.echo(execution.id)
        return
    sys.exit(_follow(tenant_id, execution.id))


def _split(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def _follow(tenant_id: int, execution_id: int, after: int = 0) -> int:
    """Print the execution's output until it ends; Ctrl-C asks for a cancel once. Returns the exit code.

    Ctrl-C only raises a flag, looked at between events (at least every second): an
    interrupt in the middle of a query would leave its connection unusable for the cancel.
    """
    from app.services import ansible_executions, execution_events
    from app.services.errors import ConflictError

    interrupts: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda _signum, _frame: interrupts.append(1))
    asked = False
    try:
        for item in execution_events.follow(execution_id, after, block_ms=1000):
            if interrupts and not asked:
                asked = True
                click.echo(f"canceling execution {execution_id} (Ctrl-C again stops following it)", err=True)
                try:
                    ansible_executions.cancel(tenant_id, execution_id)
                except ConflictError:
                    pass  # it ended meanwhile: its end is printed next
            elif len(interrupts) > 1:
                click.echo(f"execution {execution_id}: no longer followed (its cancel was asked for)", err=True)
                return EXIT_CODES["canceled"]
            if item.status is not None:
                click.echo(f"execution {execution_id} {item.status}", err=True)
                return EXIT_CODES.get(item.status, 1)
            if item.fields is not None and item.fields["stdout"]:
                click.echo(item.fields["stdout"])
    finally:
        signal.signal(signal.SIGINT, previous)
    return EXIT_CODES["lost"]  # not reached: follow ends with the execution's end


@cli.group()
def execution() -> None:
    """Playbook executions: list, show, follow and cancel."""


@execution.command("list")
@click.option("--tenant", "tenant_ref", required=True, help="Tenant id or name.")
@click.option("--status", type=click.Choice(["pending", "running", "successful", "failed", "canceled", "timeout",
                                             "lost"]), default=None)
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@with_appcontext
def execution_list(tenant_ref: str, status: str | None, limit: int) -> None:
    """List executions, newest first."""
    from app.extensions import db
    from app.models import AnsibleExecution

    statement = select(AnsibleExecution).where(AnsibleExecution.tenant_id == (_tenant_id(tenant_ref) or 0))
    if status:
        statement = statement.where(AnsibleExecution.status == status)
    click.echo("ID\tSTATUS\tPLAYBOOK\tCREATED\tSTARTED\tFINISHED\tEVENTS")
    for row in db.session.scalars(statement.order_by(AnsibleExecution.id.desc()).limit(limit)):
        click.echo(f"{row.id}\t{row.status}\t{row.playbook_name}\t{_iso(row.created_at)}\t{_iso(row.started_at)}\t"
                   f"{_iso(row.finished_at)}\t{row.event_count}")


@execution.command("show")
@click.argument("execution_id", type=int)
@click.option("--tenant", "tenant_ref", default=None, help="Tenant id or name, checked against the execution.")
@click.option("--follow", is_flag=True, help="Then print its output until it ends (exit code: its status).")
@with_appcontext
def execution_show(execution_id: int, tenant_ref: str | None, follow: bool) -> None:
    """Show an execution: status, reason, per-host summary."""
    from app.models import AnsibleExecution
    from app.models.ansible import FINISHED_STATUSES

    row = _owned(AnsibleExecution, execution_id, tenant_ref, "execution")
    click.echo(f"execution {row.id}: {row.status}" + (f" ({row.reason})" if row.reason else ""))
    click.echo(f"playbook {row.playbook_name} (version {row.playbook_version_id}), rc {row.rc}, "
               f"{row.event_count} events, worker {row.worker or '-'}")
    click.echo(f"created {_iso(row.created_at)}, started {_iso(row.started_at)}, finished {_iso(row.finished_at)}")
    if row.host_summary:
        click.echo("HOST\tOK\tCHANGED\tFAILED\tUNREACHABLE\tSKIPPED\tRESCUED\tIGNORED")
        for host, counts in sorted(row.host_summary.items()):
            click.echo("\t".join([host, *(str(counts.get(key, 0)) for key in
                                          ("ok", "changed", "failed", "unreachable", "skipped", "rescued",
                                           "ignored"))]))
    if follow:
        sys.exit(_follow(row.tenant_id, row.id) if row.status not in FINISHED_STATUSES else
                 EXIT_CODES.get(row.status, 1))


@execution.command("cancel")
@click.argument("execution_id", type=int)
@click.option("--tenant", "tenant_ref", default=None, help="Tenant id or name, checked against the execution.")
@with_appcontext
def execution_cancel(execution_id: int, tenant_ref: str | None) -> None:
    """Cancel a pending execution, or ask its worker to end a running one."""
    from app.models import AnsibleExecution
    from app.services import ansible_executions

    row = _owned(AnsibleExecution, execution_id, tenant_ref, "execution")
    changed = ansible_executions.cancel(row.tenant_id, row.id)
    click.echo(f"execution {execution_id} " + ("canceled" if changed.status == "canceled" else "cancel requested"))


def _iso(value: Any) -> str:
    return value.isoformat(timespec="seconds") if value else "-"
