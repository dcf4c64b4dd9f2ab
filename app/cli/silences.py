"""``admin-mit silence``: mute the alerts of some probes, groups or rules for a while, from the command line."""

from __future__ import annotations

import getpass
import re
from datetime import datetime, timedelta, timezone

import click
from flask.cli import with_appcontext

from app.cli import cli
from app.cli.alerts import _owned, _tenant_id

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(\d{1,7})([smhdw])")


def _duration(text: str) -> timedelta:
    """``90m``, ``2h``, ``1d12h``: a sum of whole numbers of seconds, minutes, hours, days or weeks."""
    compact = text.strip().lower()
    parts = _DURATION.findall(compact)
    if not compact or "".join(number + unit for number, unit in parts) != compact:
        raise click.BadParameter("expected a duration such as 30m, 2h or 1d12h", param_hint="--for")
    return timedelta(seconds=sum(int(number) * _UNITS[unit] for number, unit in parts))


@cli.group()
def silence() -> None:
    """Silences: matching alerts stay open but send no notices until the silence ends."""


@silence.command("add")
@click.option("--tenant", "tenant_ref", required=True, help="Tenant id or name.")
@click.option("--probe", "probe_ids", type=int, multiple=True, help="Probe id it matches (repeatable).")
@click.option("--group", "group_ids", type=int, multiple=True, help="Probe group id it matches (repeatable).")
@click.option("--rule", "rule_ids", type=int, multiple=True, help="Alert rule id it matches (repeatable).")
@click.option("--for", "for_text", default=None, help="How long from now: 30m, 2h, 1d12h.")
@click.option("--until", "until", default=None, help="When it ends: ISO 8601 with a time zone (2026-12-24T08:00Z).")
@click.option("--comment", required=True, help="Why, for the people on call.")
@click.option("--by", "by_name", default=None, help="Who (default: cli:<login name>).")
@with_appcontext
def silence_add(tenant_ref: str, probe_ids: tuple[int, ...], group_ids: tuple[int, ...], rule_ids: tuple[int, ...],
                for_text: str | None, until: str | None, comment: str, by_name: str | None) -> None:
    """Create a silence, starting now. Kinds given together must all match (probe AND group AND rule);
    several ids of one kind match any of them."""
    from app.services.silences import create_silence

    if (for_text is None) == (until is None):
        raise click.UsageError("give one of --for or --until")
    ends_at: datetime | str = until if until is not None else (
        datetime.now(timezone.utc) + _duration(for_text or ""))
    data = {"comment": comment, "ends_at": ends_at, "probe_ids": list(probe_ids), "group_ids": list(group_ids),
            "rule_ids": list(rule_ids)}
    created = create_silence(_tenant_id(tenant_ref) or 0, data, None, by_name or f"cli:{getpass.getuser()}")
    click.echo(f"silence {created.id} created: {_matchers(created)} until {_iso(created.ends_at)}")


@silence.command("list")
@click.option("--tenant", "tenant_ref", required=True, help="Tenant id or name.")
@click.option("--all", "show_all", is_flag=True, help="Expired silences too (default: active and pending).")
@with_appcontext
def silence_list(tenant_ref: str, show_all: bool) -> None:
    """List silences, newest first, with their state and the open alerts each covers now."""
    from app.services import silences

    tenant_id = _tenant_id(tenant_ref) or 0
    rows = silences.list_silences(tenant_id, "all" if show_all else "current", limit=1000)
    covered = silences.covered_alerts(tenant_id, rows)
    click.echo("ID\tSTATE\tMATCHES\tSTARTS\tENDS\tBY\tALERTS\tCOMMENT")
    for item in rows:
        alerts = ",".join(str(alert_id) for alert_id in covered[item.id]) or "-"
        click.echo(f"{item.id}\t{silences.state_of(item)}\t{_matchers(item)}\t{_iso(item.starts_at)}\t"
                   f"{_iso(item.ends_at)}\t{item.created_by_name or '-'}\t{alerts}\t{_one_line(item.comment)}")


@silence.command("expire")
@click.argument("silence_id", type=int)
@click.option("--tenant", "tenant_ref", default=None, help="Tenant id or name, checked against the silence.")
@with_appcontext
def silence_expire(silence_id: int, tenant_ref: str | None) -> None:
    """End a silence now (it is kept, expired)."""
    from app.models import Silence
    from app.services.silences import expire_silence

    found = _owned(Silence, silence_id, tenant_ref, "silence")
    expire_silence(found.tenant_id, found.id)
    click.echo(f"silence {silence_id} expired")


def _matchers(item: object) -> str:
    parts = [f"{label} {','.join(str(i) for i in getattr(item, field))}"
             for field, label in (("probe_ids", "probe"), ("group_ids", "group"), ("rule_ids", "rule"))
             if getattr(item, field)]
    return " and ".join(parts)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _iso(value: datetime) -> str:
    return value.isoformat(timespec="minutes")
