"""The ``admin-mit`` command (a Flask CLI group: ``admin-mit db upgrade`` comes from Flask-Migrate).

Alerting's commands (``channel``, ``rule``, ``alert``) live in ``app.cli.alerts``, the
maintenance windows' in ``app.cli.maintenance``.

Every failure a user can cause — a bad option, an unknown id, broken
configuration — ends in one line on stderr and a non-zero exit code.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from types import FrameType
from typing import Any, Iterator, NoReturn

import click
from flask import Flask
from flask.cli import FlaskGroup, with_appcontext
from redis.exceptions import RedisError
from sqlalchemy.exc import OperationalError, ProgrammingError, SQLAlchemyError

from app.core.config import ConfigError, active_settings
from app.core.embedded_redis import EmbeddedRedisError
from app.core.redis_client import BrokerUnavailable
from app.core.secret_box import UndecryptableSecret
from app.probes import PROTOCOLS
from app.services.errors import ServiceError

PROG = "admin-mit"
# click >= 8.2 raises this for a group run without a command; older versions print the help themselves.
_NO_ARGS_IS_HELP: type[Exception] | tuple[()] = getattr(click.exceptions, "NoArgsIsHelpError", ())


def _create_app() -> Flask:
    from app import create_app

    return create_app()


def _fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"{PROG}: error: {message}", err=True)
    sys.exit(code)


class AdminMitGroup(FlaskGroup):
    """FlaskGroup whose errors are one line each instead of a usage block or a traceback."""

    def main(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        kwargs["standalone_mode"] = False
        try:
            result = super().main(*args, **kwargs)
        except _NO_ARGS_IS_HELP as exc:  # a bare group: its help, not an error line
            click.echo(exc.format_message(), err=True)
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
            _fail(f"{exc.format_message()}{hint}", 2)
        except click.ClickException as exc:
            _fail(exc.format_message(), exc.exit_code)
        except click.Abort:
            _fail("aborted", 1)
        except (ConfigError, EmbeddedRedisError, BrokerUnavailable, ServiceError, UndecryptableSecret) as exc:
            _fail(str(exc))
        except SQLAlchemyError as exc:
            _fail(_database_error(exc))
        except RedisError as exc:
            _fail(f"redis: {exc}")
        return sys.exit(result if isinstance(result, int) else 0)


def _database_error(exc: SQLAlchemyError) -> str:
    message = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
    missing_table = "no such table" in message or ("relation" in message and "does not exist" in message)
    if isinstance(exc, ProgrammingError | OperationalError) and missing_table:
        message += f" (run '{PROG} db upgrade' first)"
    elif message == "unable to open database file":  # SQLite names neither the file nor the cause
        message += f" {active_settings().database_url.removeprefix('sqlite:///')} (does its directory exist?)"
    return f"database: {message}"


cli = AdminMitGroup(create_app=_create_app, add_version_option=False, load_dotenv=False,
                    help="admin-mit-backend: network probes, alerts and playbook runs on a Celery task queue.")


def _ensure_redis() -> None:
    """On the embedded default, make the private Redis available until this command ends.

    If none runs, a temporary server is started and stopped again when the command
    ends (by the last command still using it), so a CLI call leaves no process behind.
    """
    settings = active_settings()
    if not settings.uses_embedded_redis:
        return
    root = click.get_current_context().find_root()
    if root.meta.get("admin_mit.redis_in_use"):
        return
    from app.core.embedded_redis import in_use

    root.with_resource(_exit_on_termination())
    root.with_resource(in_use(settings))
    root.call_on_close(_forget_result_subscriptions)  # runs first: callbacks unwind in reverse
    root.meta["admin_mit.redis_in_use"] = True


def _forget_result_subscriptions() -> None:
    """Drop the result subscriptions of tasks this command waited for, before a temporary Redis
    stops: Celery would otherwise unsubscribe when the process exits, from a server that is
    gone, and print a traceback."""
    from app.celery_app import celery

    consumer = getattr(celery.backend, "result_consumer", None)
    subscribed = getattr(consumer, "subscribed_to", None)
    if subscribed:
        subscribed.clear()
        consumer.stop()


@contextmanager
def _exit_on_termination() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into a normal exit, so clean-up (stopping a temporary Redis) runs."""
    def leave(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = {signum: signal.signal(signum, leave) for signum in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _check_broker(attempts: int = 1) -> None:
    """Fail in one line now, rather than after Celery's reconnect attempts, if Redis is down."""
    from app.celery_app import celery
    from app.core.redis_client import check_broker

    check_broker(celery, attempts)


def _print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str, ensure_ascii=False))


# --- tenants ---------------------------------------------------------------------------------

@cli.group()
def tenant() -> None:
    """Tenants: every probe belongs to one."""


@tenant.command("add")
@click.argument("name")
@with_appcontext
def tenant_add(name: str) -> None:
    """Create a tenant."""
    from app.services.tenants import create_tenant

    created = create_tenant(name)
    click.echo(f"tenant {created.id} {created.name!r} created")


@tenant.command("list")
@with_appcontext
def tenant_list() -> None:
    """List tenants."""
    from app.services.tenants import list_tenants

    for item in list_tenants():
        click.echo(f"{item.id}\t{item.name}")


# --- users -----------------------------------------------------------------------------------

def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


@cli.group()
def user() -> None:
    """API users: add, grant a role, list."""


@user.command("add")
@click.argument("username")
@click.option("--tenant", "tenant_ref", default=None, help="Tenant id or name to give the user a role in.")
@click.option("--role", type=click.Choice(["viewer", "operator", "admin"]), default="admin", show_default=True)
@click.option("--platform-admin", is_flag=True, help="May manage tenants, workers and queues.")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
@with_appcontext
def user_add(username: str, tenant_ref: str | None, role: str, platform_admin: bool, password_stdin: bool) -> None:
    """Create a user (with a role in a tenant, or as a platform administrator)."""
    from app.extensions import db
    from app.services import users
    from app.services.tenants import get_tenant

    if tenant_ref is None and not platform_admin:
        raise click.UsageError("give --tenant, --platform-admin, or both")
    owner = get_tenant(tenant_ref) if tenant_ref else None
    created = users.create_user(username, _read_password(password_stdin), platform_admin=platform_admin)
    if owner is not None:
        users.grant(owner.id, created, role)
    db.session.commit()
    where = f" as {role} of tenant {owner.name}" if owner else ""
    kind = "platform administrator " if platform_admin else ""
    click.echo(f"{kind}user {created.id} {created.username!r} created{where}")


@user.command("grant")
@click.argument("username")
@click.option("--tenant", "tenant_ref", required=True, help="Tenant id or name.")
@click.option("--role", type=click.Choice(["viewer", "operator", "admin"]), required=True)
@with_appcontext
def user_grant(username: str, tenant_ref: str, role: str) -> None:
    """Give an existing user a role in a tenant (or change it)."""
    from app.services import users
    from app.services.tenants import get_tenant

    owner = get_tenant(tenant_ref)
    users.grant(owner.id, users.get_user_by_name(username), role)
    click.echo(f"user {username!r} is {role} of tenant {owner.name}")


@user.command("list")
@with_appcontext
def user_list() -> None:
    """List users with their roles."""
    from sqlalchemy import select

    from app.extensions import db
    from app.models import User

    click.echo("ID\tUSERNAME\tPLATFORM_ADMIN\tACTIVE\tROLES (tenant:role)")
    for item in db.session.scalars(select(User).order_by(User.id)):
        roles = ",".join(f"{m.tenant_id}:{m.role}" for m in sorted(item.memberships, key=lambda m: m.tenant_id))
        click.echo(f"{item.id}\t{item.username}\t{'yes' if item.is_platform_admin else 'no'}\t"
                   f"{'yes' if item.is_active else 'no'}\t{roles or '-'}")


# --- probes ----------------------------------------------------------------------------------

def _json_option(value: str | None, name: str) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON ({exc.msg})", param_hint=name) from None


def _headers(values: tuple[str, ...]) -> dict[str, str]:
    headers = {}
    for value in values:
        key, sep, content = value.partition(":")
        if not sep or not key.strip():
            raise click.BadParameter(f"{value!r} is not 'Name: value'", param_hint="--header")
        headers[key.strip()] = content.strip()
    return headers


@cli.group()
def probe() -> None:
    """Network probes: add, list, run, depend, enable, disable, delete."""


@probe.command("add")
@click.option("--tenant", "tenant_ref", required=True, help="Tenant id or name.")
@click.option("--name", required=True)
@click.option("--protocol", required=True, help=f"One of: {', '.join(PROTOCOLS)}.")
@click.option("--target", required=True,
              help="URL (http/https/ws/wss), host:port (tcp/udp), the name to look up (dns), a host (icmp).")
@click.option("--interval", "interval_seconds", type=int, default=60, show_default=True, help="Seconds between runs.")
@click.option("--timeout", "timeout_seconds", type=float, default=None,
              help="Seconds [default: 10, or half the interval when that is shorter].")
@click.option("--spec", "spec_json", default=None,
              help='The protocol\'s own fields as JSON, e.g. \'{"record_type": "MX"}\' for dns.')
@click.option("--method", default=None, help="HTTP method (spec.method) [default: GET].")
@click.option("--header", "headers", multiple=True, help="'Name: value', repeatable (spec.headers).")
@click.option("--secret-header", "secret_headers", multiple=True,
              help="A header whose value is a credential: sent, never shown (spec.secret_headers), repeatable.")
@click.option("--body", default=None, help="Request body, or the payload sent by tcp/udp/websocket (spec.body).")
@click.option("--expect", default=None, help="Text the reply (HTTP: the body) must contain (spec.expect).")
@click.option("--conditions", default=None,
              help='JSON, e.g. \'{"expected_status": [200], "body_contains": "ok", "max_response_time_ms": 500}\'.')
@click.option("--no-verify-tls", is_flag=True, help="Accept untrusted certificates (spec.verify_tls).")
@click.option("--no-follow-redirects", is_flag=True, help="spec.follow_redirects false.")
@click.option("--manual-only", is_flag=True, help="Never run on a schedule, only on demand.")
@click.option("--disabled", is_flag=True, help="Create it disabled.")
@click.option("--depends-on", "depends_on", type=int, multiple=True, metavar="ID",
              help="A probe of the tenant it depends on (its alerts are suppressed while that one is down), repeatable.")
@with_appcontext
def probe_add(tenant_ref: str, spec_json: str | None, method: str | None, headers: tuple[str, ...],
              secret_headers: tuple[str, ...], body: str | None, expect: str | None, conditions: str | None,
              no_verify_tls: bool, no_follow_redirects: bool, manual_only: bool, disabled: bool,
              depends_on: tuple[int, ...], **fields: Any) -> None:
    """Create a probe. The options marked spec.* are shorthands for fields of --spec."""
    from app.services.probes import create_probe
    from app.services.tenants import get_tenant

    spec = _json_option(spec_json, "--spec")
    if spec is None:
        spec = {}
    elif not isinstance(spec, dict):
        raise click.BadParameter("must be a JSON object", param_hint="--spec")
    given = {"method": method, "headers": _headers(headers) or None, "secret_headers": list(secret_headers) or None,
             "body": body, "expect": expect, "verify_tls": False if no_verify_tls else None,
             "follow_redirects": False if no_follow_redirects else None}
    spec.update({name: value for name, value in given.items() if value is not None})
    owner = get_tenant(tenant_ref)
    data = {
        **fields,
        "spec": spec,
        "conditions": _json_option(conditions, "--conditions") or {},
        "auto_probe": not manual_only,
        "enabled": not disabled,
        "depends_on": list(depends_on),
    }
    created = create_probe(owner.id, data)
    when = (time.strftime("%H:%M:%S", time.localtime(created.next_run_at / 1000))
            if created.next_run_at else "not scheduled")
    click.echo(f"probe {created.id} {created.name!r} created (tenant {owner.name}); first scheduled run: {when}")


def _status_cell(entry: dict[str, Any] | None) -> str:
    if entry is None:
        return "never run"
    timing = f" {entry['response_time_ms']:.0f}ms" if entry.get("response_time_ms") is not None else ""
    return f"{entry['status']}{timing} @ {entry['checked_at'][:19]}"


@probe.command("list")
@click.option("--tenant", "tenant_ref", default=None, help="Tenant id or name (default: all).")
@with_appcontext
def probe_list(tenant_ref: str | None) -> None:
    """List probes with their latest status."""
    from app.services import status_cache
    from app.services.probe_dependencies import parents_of
    from app.services.probes import list_probes, shown_target
    from app.services.tenants import get_tenant

    tenant_id = get_tenant(tenant_ref).id if tenant_ref else None
    probes = list_probes(tenant_id)
    parents = parents_of([p.id for p in probes])
    _ensure_redis()
    latest: dict[int, dict[int, Any]] = {}
    for tid in {p.tenant_id for p in probes}:
        latest[tid] = status_cache.latest(tid, [p.id for p in probes if p.tenant_id == tid])
    click.echo("ID\tTENANT\tNAME\tPROTOCOL\tTARGET\tINTERVAL\tSTATE\tLATEST\tDEPENDS_ON")
    for item in probes:
        state = "enabled" if item.enabled else "disabled"
        if item.enabled and not item.auto_probe:
            state = "manual"
        click.echo(
            f"{item.id}\t{item.tenant_id}\t{item.name}\t{item.protocol}\t{shown_target(item)}\t"
            f"{item.interval_seconds}s\t{state}\t{_status_cell(latest[item.tenant_id].get(item.id))}\t"
            f"{','.join(map(str, parents[item.id])) or '-'}"
        )


def _probe_in(tenant_ref: str | None, probe_id: int) -> Any:
    """A probe by id, checked against ``--tenant`` when given."""
    from app.extensions import db
    from app.models import Probe
    from app.services.errors import NotFoundError
    from app.services.probes import get_probe
    from app.services.tenants import get_tenant

    if tenant_ref:
        return get_probe(get_tenant(tenant_ref).id, probe_id)
    found = db.session.get(Probe, probe_id)
    if found is None:
        raise NotFoundError(f"probe {probe_id} not found")
    return found


@probe.command("run")
@click.argument("probe_id", type=int)
@click.option("--tenant", "tenant_ref", default=None, help="Tenant id or name (checked against the probe).")
@click.option("--queue", "via_queue", is_flag=True, help="Send it to a worker and wait, instead of running here.")
@click.option("--priority", type=click.IntRange(0, 10), default=None, help="With --queue: 0-10, larger runs sooner.")
@click.option("--wait", "wait_seconds", type=float, default=60.0, show_default=True, help="With --queue: seconds.")
@with_appcontext
def probe_run(probe_id: int, tenant_ref: str | None, via_queue: bool, priority: int | None,
              wait_seconds: float) -> None:
    """Run one probe now and print its result (stored as a manual run)."""
    found = _probe_in(tenant_ref, probe_id)
    _ensure_redis()
    if via_queue:
        from celery.exceptions import TimeoutError as CeleryTimeout

        from app.tasks.network_probe_tasks import execute_probe

        _check_broker()
        task = execute_probe.apply_async(
            kwargs={"probe_id": found.id, "tenant_id": found.tenant_id, "probe_type": "manual"}, priority=priority
        )
        click.echo(f"task {task.id} queued", err=True)
        try:
            result = task.get(timeout=wait_seconds, propagate=False)
        except CeleryTimeout:
            _fail(f"no result within {wait_seconds:g}s (is a worker running on network_probes?); "
                  f"check later with: {PROG} task status {task.id}")
        if task.failed():
            _fail(f"task {task.id} failed: {result}")
    else:
        from app.services import probe_runs

        requests = probe_runs.run_requests([found.id], "manual", f"cli-{uuid.uuid4().hex}")
        try:
            result = probe_runs.execute_runs(found.tenant_id, requests, "manual")[0]
        except probe_runs.ResultsNotStored as exc:
            _print_json(probe_runs.report_unstored(found.tenant_id, exc.runs)[0])
            _fail(f"database: {exc}")
    _print_json(result)
    if result.get("status") != "success":
        sys.exit(3)


@probe.command("depend")
@click.argument("probe_id", type=int)
@click.option("--on", "parent_ids", type=int, multiple=True, metavar="PARENT_ID",
              help="A probe it depends on, repeatable; the list replaces its parents.")
@click.option("--none", "no_parents", is_flag=True, help="Depend on no probe.")
@click.option("--tenant", "tenant_ref", default=None, help="Tenant id or name (checked against the probe).")
@with_appcontext
def probe_depend(probe_id: int, parent_ids: tuple[int, ...], no_parents: bool, tenant_ref: str | None) -> None:
    """Set the probes a probe depends on: while one of them is down, its alerts open suppressed."""
    from app.services.probe_dependencies import set_parents

    if bool(parent_ids) == no_parents:
        raise click.UsageError("give --on PARENT_ID (repeatable) or --none")
    found = _probe_in(tenant_ref, probe_id)
    parents = set_parents(found.tenant_id, found.id, parent_ids)
    click.echo(f"probe {found.id} depends on {', '.join(map(str, parents)) or 'no probe'}")


def _set_enabled(probe_id: int, tenant_ref: str | None, enabled: bool) -> None:
    from app.services.probes import update_probe

    found = _probe_in(tenant_ref, probe_id)
    update_probe(found.tenant_id, found.id, {"enabled": enabled})
    click.echo(f"probe {found.id} {'enabled' if enabled else 'disabled'}")


@probe.command("enable")
@click.argument("probe_id", type=int)
@click.option("--tenant", "tenant_ref", default=None)
@with_appcontext
def probe_enable(probe_id: int, tenant_ref: str | None) -> None:
    """Put a probe back on its schedule."""
    _set_enabled(probe_id, tenant_ref, True)


@probe.command("disable")
@click.argument("probe_id", type=int)
@click.option("--tenant", "tenant_ref", default=None)
@with_appcontext
def probe_disable(probe_id: int, tenant_ref: str | None) -> None:
    """Stop scheduling a probe (within one dispatch tick)."""
    _set_enabled(probe_id, tenant_ref, False)


@probe.command("delete")
@click.argument("probe_id", type=int)
@click.option("--tenant", "tenant_ref", default=None)
@with_appcontext
def probe_delete(probe_id: int, tenant_ref: str | None) -> None:
    """Delete a probe and its results."""
    from app.services.probes import delete_probe

    found = _probe_in(tenant_ref, probe_id)
    delete_probe(found.tenant_id, found.id)
    click.echo(f"probe {probe_id} deleted")


# --- secrets ---------------------------------------------------------------------------------

@cli.group("secrets")
def secrets_group() -> None:
    """Secrets stored encrypted (secrets.keys): key rotation."""


@secrets_group.command("rotate")
@click.option("--batch-size", type=click.IntRange(min=1, max=10000), default=500, show_default=True,
              help="Values read and rewritten per statement.")
@with_appcontext
def secrets_rotate(batch_size: int) -> None:
    """Re-encrypt every stored secret with the newest key (the first of secrets.keys).

    Run it after every process was restarted with the new key listed first; remove the
    old key only once it has succeeded.
    """
    from app.services.secret_rotation import RotationFailed, rotate_all

    def report(table: str, count: int) -> None:
        click.echo(f"{table}: {count} value{'' if count == 1 else 's'} re-encrypted")

    try:
        done = rotate_all(batch_size=batch_size, progress=report)
    except RotationFailed as exc:
        _fail(f"{exc}; nothing of that table was changed")
    if not done:
        click.echo("no encrypted columns")


# --- tasks -----------------------------------------------------------------------------------

@cli.group()
def task() -> None:
    """Celery tasks: status and revoke."""


@task.command("status")
@click.argument("task_id")
def task_status(task_id: str) -> None:
    """Show a task's state and result."""
    _ensure_redis()
    from app.celery_utils import get_task_status

    status = get_task_status(task_id)
    if not status["exists"]:
        _fail(f"task {task_id} not found (never submitted, or its record expired)")
    _print_json(status)


@task.command("revoke")
@click.argument("task_id")
@click.option("--terminate", is_flag=True, help="Also kill it if it is running.")
def task_revoke(task_id: str, terminate: bool) -> None:
    """Revoke a task."""
    _ensure_redis()
    from app.celery_utils import revoke_task

    result = revoke_task(task_id, terminate=terminate)
    if not result["success"]:
        _fail(f"task {task_id}: {result['error']}")
    _print_json(result)


# --- what happened to the runs ---------------------------------------------------------------

_STATS_ROWS = (
    ("stored", "results stored (scheduled and on demand)"),
    ("missed", "slots nothing dispatched: no beat ran, or network_probes was over probes.max_queue_backlog"),
    ("expired", "slots claimed but started by no worker before the probe's next slot"),
    ("lost", "slots started by a worker that died, and not run again while current"),
    ("unwritten", "measured results dropped: the database was down longer than the worker's buffer held"),
    ("in_flight", "claimed slots not stored yet (now)"),
)
_DURATION = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _since(value: str) -> datetime:
    """``30m``, ``6h``, ``7d`` ago, or an ISO 8601 time (UTC when no zone is given)."""
    text = value.strip()
    if len(text) > 1 and text[-1] in _DURATION and text[:-1].isdecimal():
        return datetime.now(timezone.utc) - timedelta(seconds=int(text[:-1]) * _DURATION[text[-1]])
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter("expected a duration such as 30m, 6h, 7d, or an ISO 8601 time",
                                 param_hint="--since") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


@cli.command("stats")
@click.option("--tenant", "tenant_ref", default=None, help="Tenant id or name (default: all).")
@click.option("--since", "since_text", default="24h", show_default=True, help="30m, 6h, 7d, or an ISO time.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@with_appcontext
def stats(tenant_ref: str | None, since_text: str, as_json: bool) -> None:
    """Scheduled runs stored and lost by reason: every slot is one or the other."""
    from app.services import run_losses
    from app.services.tenants import get_tenant

    owner = get_tenant(tenant_ref) if tenant_ref else None
    since, until = _since(since_text), datetime.now(timezone.utc)
    if since >= until:
        raise click.BadParameter("must be in the past", param_hint="--since")
    totals = run_losses.totals(since, until, owner.id if owner else None).as_dict()
    if as_json:
        _print_json(totals)
        return
    scope = f"tenant {owner.name}" if owner else "all tenants"
    click.echo(f"runs from {since:%Y-%m-%d %H:%M:%S} to {until:%Y-%m-%d %H:%M:%S} UTC, {scope}:")
    for key, meaning in _STATS_ROWS:
        click.echo(f"  {key.replace('_', ' '):<10} {totals[key]:>10}   {meaning}")


# --- running the parts -----------------------------------------------------------------------

def _exec_celery(command: list[str]) -> NoReturn:
    """Become ``celery …`` in the same working directory (so it reads the same ``config/``);
    ``celery_worker`` starts the embedded Redis and checks the broker."""
    os.execv(command[0], command)


@cli.command("worker", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("--queues", "-Q", default=None, help="Comma-separated (default: all queues).")
@click.option("--concurrency", "-c", type=int, default=None)
@click.pass_context
def worker(ctx: click.Context, queues: str | None, concurrency: int | None) -> None:
    """Start a Celery worker (extra options go to `celery worker`)."""
    from app.runner import worker_command

    command = worker_command(active_settings().app.log_level.lower(), concurrency)
    if queues:
        command[command.index("-Q") + 1] = queues
    _exec_celery(command + list(ctx.args))


@cli.command("beat", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.pass_context
def beat(ctx: click.Context) -> None:
    """Start beat: the periodic tasks and the probe dispatcher (extra options go to `celery beat`)."""
    from app.runner import beat_command

    _exec_celery(beat_command(active_settings().app.log_level.lower()) + list(ctx.args))


@cli.command("redis")
@click.option("--stop", is_flag=True, help="Stop a running embedded server.")
def redis_server(stop: bool) -> None:
    """Run the embedded Redis server in the foreground (redis.embedded: true)."""
    from app.core import embedded_redis

    settings = active_settings()
    if not settings.redis.embedded:
        _fail("redis.embedded is false: this deployment uses an external Redis")
    if stop:
        stopped = embedded_redis.stop(settings)
        click.echo("embedded Redis stopped" if stopped else "embedded Redis was not running")
        return
    executable = embedded_redis.server_executable()
    embedded_redis.prepare_foreground(settings)
    os.execv(executable, embedded_redis.server_command(settings, daemonize=False))


@cli.command("up")
@click.option("--concurrency", "-c", type=click.IntRange(min=1), default=None,
              help="Worker processes (default: one per core).")
@with_appcontext
def up(concurrency: int | None) -> None:
    """Migrate, then run Redis (embedded default), a worker on every queue, beat and the API until Ctrl-C."""
    from flask_migrate import upgrade

    from app.runner import Supervisor, configure_logging

    settings = active_settings()
    if not settings.uses_embedded_redis:
        _check_broker()  # before the migration logs anything
    upgrade()
    configure_logging()
    sys.exit(Supervisor(settings, concurrency).run())


from app.cli import alerts as _alerts  # noqa: E402,F401  (registers channel, rule and alert)
from app.cli import ansible as _ansible  # noqa: E402,F401  (registers host, playbook and inventory)
from app.cli import executions as _executions  # noqa: E402,F401  (registers run, in place of Flask's, and execution)
from app.cli import maintenance as _maintenance  # noqa: E402,F401  (registers maintenance)
from app.cli import reports as _reports  # noqa: E402,F401  (registers report)
from app.cli import rollups as _rollups  # noqa: E402,F401  (registers rollups)
from app.cli import silences as _silences  # noqa: E402,F401  (registers silence)


def main() -> None:
    cli.main(prog_name=PROG)
