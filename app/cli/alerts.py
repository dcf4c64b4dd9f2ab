"""``admin-mit channel``, ``rule`` and ``alert``: alerting from the command line.

The same services as the API; the CLI acts as the platform operator, so a tenant is
named with ``--tenant`` where something is created, and ids are checked against it
when given.
"""

from __future__ import annotations

import getpass
import json
import sys
from typing import Any

import click
from flask.cli import with_appcontext

from app.alerting.channels import CHANNEL_KINDS
from app.cli import _ensure_redis, _fail, _json_option, cli
from app.probes import PROTOCOLS

_KINDS = ", ".join(CHANNEL_KINDS)
GROUP_BY = ["none", "tenant", "group", "rule"]


def _tenant_id(tenant_ref: str | None) -> int | None:
    from app.services.tenants import get_tenant

    return get_tenant(tenant_ref).id if tenant_ref else None


def _owned(model: Any, item_id: int, tenant_ref: str | None, what: str) -> Any:
    """A row by id, checked against ``--tenant`` when given."""
    from app.extensions import db
    from app.services.errors import NotFoundError

    found = db.session.get(model, item_id)
    tenant_id = _tenant_id(tenant_ref)
    if found is None or (tenant_id is not None and found.tenant_id != tenant_id):
        raise NotFoundError(f"{what} {item_id} not found")
    return found


def _object(value: str | None, name: str) -> dict[str, Any]:
    parsed = _json_option(value, name)
    if parsed is None:
        return {}
    if not isinstance(parsed, dict):
        raise click.BadParameter("must be a JSON object", param_hint=name)
    return parsed


# --- channels ---------------------------------------------------------------------------------

@cli.group()
def channel() -> None:
    """Notification channels: where alert notifications go."""


@channel.command("add")
@click.option("--tenant", "tenant_ref", required=True, help="Tenant id or name.")
@click.option("--name", required=True)
@click.option("--kind", required=True, type=click.Choice(list(CHANNEL_KINDS)), help=f"One of {_KINDS}.")
@click.option("--url", default=None,
              help="webhook: the URL POSTed to (settings.url); apprise: a service URL (secrets.urls), repeatable.",
              multiple=True)
@click.option("--settings", "settings_json", default=None, help="The kind's settings as JSON.")
@click.option("--secrets-stdin", is_flag=True,
              help="Read the kind's secrets as a JSON object from stdin (keeps them out of the process list).")
@click.option("--rate-limit", type=click.IntRange(1, 10000), default=None, help="Sends per window (default 20).")
@click.option("--rate-window", type=click.IntRange(1, 86400), default=None, help="Seconds (default 60).")
@with_appcontext
def channel_add(tenant_ref: str, name: str, kind: str, url: tuple[str, ...], settings_json: str | None,
                secrets_stdin: bool, rate_limit: int | None, rate_window: int | None) -> None:
    """Create a notification channel (checked now: a bad setting is refused, not found at the first alert)."""
    from app.services.notification_channels import create_channel

    settings = _object(settings_json, "--settings")
    secrets = _object(sys.stdin.read(), "--secrets-stdin") if secrets_stdin else {}
    if url and kind == "webhook":
        if len(url) > 1:
            raise click.BadParameter("a webhook has one URL", param_hint="--url")
        settings["url"] = url[0]
    elif url and kind == "apprise":
        secrets["urls"] = [*secrets.get("urls", []), *url]
    elif url:
        raise click.BadParameter(f"not for {kind} channels (use --settings)", param_hint="--url")
    data: dict[str, Any] = {"name": name, "kind": kind, "settings": settings, "secrets": secrets}
    if rate_limit is not None:
        data["rate_limit"] = rate_limit
    if rate_window is not None:
        data["rate_window_seconds"] = rate_window
    created = create_channel(_tenant_id(tenant_ref) or 0, data)
    click.echo(f"channel {created.id} {created.name!r} created ({created.kind})")


@channel.command("list")
@click.option("--tenant", "tenant_ref", default=None, help="Tenant id or name (default: all).")
@with_appcontext
def channel_list(tenant_ref: str | None) -> None:
    """List notification channels; STATE is ok, failing (with the last error) or disabled."""
    from app.services import notification_channels

    click.echo("ID\tTENANT\tNAME\tKIND\tSETTINGS\tSTATE")
    for item in notification_channels.list_channels(_tenant_id(tenant_ref)):
        shown = notification_channels.shown(item)
        state = "disabled" if not item.enabled else (
            f"failing: {item.last_error}" if notification_channels.is_failing(item) else "ok")
        click.echo(f"{item.id}\t{item.tenant_id}\t{item.name}\t{item.kind}\t"
                   f"{json.dumps({**shown.settings, **shown.secrets}, ensure_ascii=False)}\t{state}")


@channel.command("test")
@click.argument("channel_id", type=int)
@click.option("--tenant", "tenant_ref", default=None, help="Tenant id or name (checked against the channel).")
@with_appcontext
def channel_test(channel_id: int, tenant_ref: str | None) -> None:
    """Send a test notification now; exit 1 with the channel's answer if it was not taken."""
    from app.models import NotificationChannel
    from app.services import notification_channels

    found = _owned(NotificationChannel, channel_id, tenant_ref, "notification channel")
    outcome = notification_channels.send_test(found.tenant_id, found.id)
    if not outcome.ok:
        _fail(f"channel {found.id} {found.name!r}: {outcome.error}")
    click.echo(f"test notification {outcome.notification_id} sent through channel {found.id} {found.name!r}")


class EscalationStepType(click.ParamType):
    """``AFTER_SECONDS:CHANNEL_ID[,CHANNEL_ID...]`` as an escalation step; ranges and order are the service's."""

    name = "AFTER_SECONDS:CHANNEL_ID[,CHANNEL_ID...]"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> dict[str, Any]:
        if isinstance(value, dict):
            return value
        after, colon, channels = str(value).partition(":")
        try:
            if not colon:
                raise ValueError
            return {"after_seconds": int(after), "channel_ids": [int(part) for part in channels.split(",")]}
        except ValueError:
            self.fail(f"{value!r}: expected AFTER_SECONDS:CHANNEL_ID[,CHANNEL_ID...], e.g. 300:4,5", param, ctx)


# --- rules ------------------------------------------------------------------------------------

@cli.group()
def rule() -> None:
    """Alert rules: when an alert opens and resolves, and whom it tells."""


@rule.command("add")
@click.option("--tenant", "tenant_ref", required=True, help="Tenant id or name.")
@click.option("--name", required=True)
@click.option("--kind", required=True, type=click.Choice(["down", "slow", "certificate"]),
              help="down: failed runs; slow: runs slower than --slow-ms; certificate: fewer than --cert-days left.")
@click.option("--probe", "probe_id", type=int, default=None, help="One probe (default: every probe of the tenant).")
@click.option("--group", "group_id", type=int, default=None, help="Only probes of this group.")
@click.option("--protocol", type=click.Choice(PROTOCOLS), default=None, help="Only probes of this protocol.")
@click.option("--threshold", type=click.IntRange(1, 100), default=None, help="Bad runs that open it (default 3) ...")
@click.option("--window", type=click.IntRange(1, 100), default=None,
              help="... among the last this many (default: --threshold, i.e. in a row).")
@click.option("--recovery", type=click.IntRange(1, 100), default=None, help="Good runs in a row that resolve it (1).")
@click.option("--slow-ms", type=float, default=None)
@click.option("--cert-days", type=int, default=None)
@click.option("--reminder", "reminder_seconds", type=int, default=None,
              help="Seconds between reminders while firing (default 0: none).")
@click.option("--channel", "channel_ids", type=int, multiple=True, help="Channel id to notify (repeatable).")
@click.option("--no-resolved", is_flag=True, help="Do not notify when the alert resolves.")
@click.option("--group-by", type=click.Choice(GROUP_BY), default=None,
              help="Send alerts that open together as one message per channel: the tenant's, the probe "
                   "group's or the rule's (default none: one message each).")
@click.option("--group-wait", "group_wait_seconds", type=click.IntRange(0, 3600), default=None,
              help="Seconds the first alerts of a group are gathered (default 30).")
@click.option("--group-interval", "group_interval_seconds", type=click.IntRange(1, 86400), default=None,
              help="Seconds later alerts of a running group are gathered (default 300).")
@click.option("--flap-changes", type=click.IntRange(0, 50), default=None,
              help="More changes than this within --flap-window mark a probe flapping (default 5; 0: never).")
@click.option("--flap-window", "flap_window_seconds", type=click.IntRange(1, 86400), default=None,
              help="Seconds (default 600).")
@click.option("--flap-settle", "flap_settle_seconds", type=click.IntRange(1, 86400), default=None,
              help="Seconds without a change after which a flapping probe is told again (default 600).")
@click.option("--escalate", "escalation", type=EscalationStepType(), multiple=True,
              help="AFTER_SECONDS:CHANNEL_ID[,CHANNEL_ID...]: not acknowledged that long after it fired, "
                   "notify these channels too, once (repeatable, in increasing AFTER_SECONDS).")
@with_appcontext
def rule_add(tenant_ref: str, no_resolved: bool, channel_ids: tuple[int, ...],
             escalation: tuple[dict[str, Any], ...], **fields: Any) -> None:
    """Create an alert rule."""
    from app.services.alert_rules import create_rule

    data = {name: value for name, value in fields.items() if value is not None}
    data["channel_ids"] = list(channel_ids)
    data["escalation"] = list(escalation)
    if no_resolved:
        data["send_resolved"] = False
    created = create_rule(_tenant_id(tenant_ref) or 0, data)
    scope = f"probe {created.probe_id}" if created.probe_id else "every probe" + (
        f" of group {created.group_id}" if created.group_id else "") + (
        f" ({created.protocol})" if created.protocol else "")
    steps = f", escalating in {len(created.escalation)} step(s)" if created.escalation else ""
    click.echo(f"rule {created.id} {created.name!r} created: {created.kind} on {scope}, "
               f"notifying {len(created.channels)} channel(s){steps}")


@rule.command("list")
@click.option("--tenant", "tenant_ref", default=None, help="Tenant id or name (default: all).")
@with_appcontext
def rule_list(tenant_ref: str | None) -> None:
    """List alert rules with their condition, grouping (by, wait/interval) and escalation steps."""
    from app.services.alert_rules import list_rules
    from app.services.outbox import condition_text

    click.echo("ID\tTENANT\tNAME\tKIND\tSCOPE\tCONDITION\tCHANNELS\tSTATE\tGROUPING\tESCALATION")
    for item in list_rules(_tenant_id(tenant_ref)):
        scope = (f"probe {item.probe_id}" if item.probe_id else
                 "all" + (f" group {item.group_id}" if item.group_id else "") + (f" {item.protocol}" if item.protocol
                                                                                  else ""))
        channels = ",".join(str(c.id) for c in item.channels) or "-"
        click.echo(f"{item.id}\t{item.tenant_id}\t{item.name}\t{item.kind}\t{scope}\t{condition_text(item)}\t"
                   f"{channels}\t{'enabled' if item.enabled else 'disabled'}\t{_grouping(item)}\t{_escalation(item)}")


def _grouping(item: Any) -> str:
    """``none``, or ``<by> <wait>s/<interval>s``."""
    if item.group_by == "none":
        return "none"
    return f"{item.group_by} {item.group_wait_seconds}s/{item.group_interval_seconds}s"


def _escalation(item: Any) -> str:
    """The steps as ``--escalate`` takes them, space-separated (``-``: none)."""
    steps = item.escalation or []
    return " ".join(f"{step['after_seconds']}:{','.join(str(c) for c in step['channel_ids'])}"
                    for step in steps) or "-"


# --- alerts -----------------------------------------------------------------------------------

@cli.group()
def alert() -> None:
    """Alerts: list, acknowledge, resolve."""


@alert.command("list")
@click.option("--tenant", "tenant_ref", default=None, help="Tenant id or name (default: all).")
@click.option("--status", type=click.Choice(["open", "firing", "acknowledged", "suppressed", "resolved"]),
              default=None, help="open: firing, acknowledged or suppressed.")
@click.option("--limit", type=click.IntRange(1, 10000), default=50, show_default=True)
@with_appcontext
def alert_list(tenant_ref: str | None, status: str | None, limit: int) -> None:
    """List alerts, newest first. FLAGS: flapping, which probe suppresses it, escalation steps taken."""
    from app.services import alerts

    rows = alerts.list_alerts(_tenant_id(tenant_ref), status=status, limit=limit)
    names = alerts.labels(rows)
    click.echo("ID\tTENANT\tSTATUS\tPROBE\tRULE\tSINCE\tFLAGS\tREASON")
    for item in rows:
        click.echo(f"{item.id}\t{item.tenant_id}\t{item.status}\t{names.probes.get(item.probe_id, item.probe_id)}\t"
                   f"{names.rules.get(item.rule_id, item.rule_id)}\t{item.since.isoformat(timespec='seconds')}\t"
                   f"{_flags(item, names)}\t{item.reason}")


def _flags(item: Any, names: Any) -> str:
    flags = ["flapping"] if item.flapping else []
    if item.status == "suppressed" and item.suppressed_by:
        flags.append(f"suppressed by {names.probes.get(item.suppressed_by, item.suppressed_by)}")
    if item.escalation_step:
        flags.append(f"escalation step {item.escalation_step}")
    return ", ".join(flags) or "-"


def _operator(name: str | None) -> Any:
    from app.services import alerts

    return alerts.Actor(name or f"cli:{getpass.getuser()}")


@alert.command("ack")
@click.argument("alert_id", type=int)
@click.option("--note", default="", help="Why, for the history and the notification.")
@click.option("--by", "by_name", default=None, help="Who (default: cli:<login name>).")
@click.option("--tenant", "tenant_ref", default=None, help="Tenant id or name (checked against the alert).")
@with_appcontext
def alert_ack(alert_id: int, note: str, by_name: str | None, tenant_ref: str | None) -> None:
    """Acknowledge a firing alert: reminders stop until it resolves."""
    from app.models import Alert
    from app.services import alerts

    found = _owned(Alert, alert_id, tenant_ref, "alert")
    _ensure_redis()
    done = alerts.acknowledge(found.tenant_id, found.id, _operator(by_name), note)
    click.echo(f"alert {done.id} acknowledged")


@alert.command("resolve")
@click.argument("alert_id", type=int)
@click.option("--note", default="", help="Why, for the history and the notification.")
@click.option("--by", "by_name", default=None, help="Who (default: cli:<login name>).")
@click.option("--tenant", "tenant_ref", default=None, help="Tenant id or name (checked against the alert).")
@with_appcontext
def alert_resolve(alert_id: int, note: str, by_name: str | None, tenant_ref: str | None) -> None:
    """Resolve an alert by hand."""
    from app.models import Alert
    from app.services import alerts

    found = _owned(Alert, alert_id, tenant_ref, "alert")
    _ensure_redis()
    done = alerts.resolve(found.tenant_id, found.id, _operator(by_name), note)
    click.echo(f"alert {done.id} resolved")
