"""``admin-mit maintenance``: plan, list and remove maintenance windows from the command line."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import click
from flask.cli import with_appcontext

from app.cli import cli
from app.cli.alerts import _tenant_id


@cli.group()
def maintenance() -> None:
    """Maintenance windows: probes run, alerts stay quiet."""


@maintenance.command("add")
@click.option("--tenant", "tenant_ref", required=True, help="Tenant id or name.")
@click.option("--name", required=True)
@click.option("--comment", default=None)
@click.option("--start", "starts_at", required=True,
              help="ISO 8601 with a time zone (2026-12-24T22:00:00+01:00); recurring: no occurrence before it.")
@click.option("--end", "ends_at", default=None, help="One-off: its end. Recurring: no occurrence after it.")
@click.option("--cron", default=None, help='Recurring: when each occurrence starts, e.g. "0 2 * * 0".')
@click.option("--duration", "duration_seconds", type=int, default=None, help="Recurring: seconds each lasts.")
@click.option("--timezone", default=None, help="IANA time zone of --cron (default UTC).")
@click.option("--probe", "probe_ids", type=int, multiple=True, help="Probe id it covers (repeatable).")
@click.option("--group", "group_ids", type=int, multiple=True, help="Probe group id it covers (repeatable).")
@click.option("--all-probes", is_flag=True, help="Covers every probe of the tenant.")
@with_appcontext
def maintenance_add(tenant_ref: str, probe_ids: tuple[int, ...], group_ids: tuple[int, ...], all_probes: bool,
                    **fields: Any) -> None:
    """Create a maintenance window."""
    from app.services.maintenance import create_window, status

    data = {name: value for name, value in fields.items() if value is not None}
    data.update(probe_ids=list(probe_ids), group_ids=list(group_ids), all_probes=all_probes)
    created = create_window(_tenant_id(tenant_ref) or 0, data)
    upcoming = status(created).next_occurrence
    when = f"next {_iso(upcoming[0])} to {_iso(upcoming[1])}" if upcoming else "no occurrence to come"
    click.echo(f"maintenance window {created.id} {created.name!r} created: {when}")


@maintenance.command("list")
@click.option("--tenant", "tenant_ref", default=None, help="Tenant id or name (default: all).")
@with_appcontext
def maintenance_list(tenant_ref: str | None) -> None:
    """List maintenance windows, with whether each is open and when it next is."""
    from app.services.maintenance import list_windows, status

    click.echo("ID\tTENANT\tNAME\tSCHEDULE\tCOVERS\tOPEN\tNEXT")
    for item in list_windows(_tenant_id(tenant_ref)):
        schedule = (f"{item.cron} {item.timezone} for {item.duration_seconds}s" if item.cron
                    else f"{_iso(item.starts_at)} to {_iso(item.ends_at)}")
        covers = "all" if item.all_probes else " ".join(
            [f"probe {probe.id}" for probe in item.probes] + [f"group {group.id}" for group in item.groups])
        state = status(item)
        upcoming = state.next_occurrence
        click.echo(f"{item.id}\t{item.tenant_id}\t{item.name}\t{schedule}\t{covers}\t"
                   f"{'yes' if state.open_now else 'no'}\t{_iso(upcoming[0]) if upcoming else '-'}")


@maintenance.command("delete")
@click.argument("window_id", type=int)
@click.option("--tenant", "tenant_ref", default=None, help="Tenant id or name, checked against the window.")
@with_appcontext
def maintenance_delete(window_id: int, tenant_ref: str | None) -> None:
    """Delete a maintenance window."""
    from app.models import MaintenanceWindow
    from app.services.maintenance import delete_window

    from app.cli.alerts import _owned

    window = _owned(MaintenanceWindow, window_id, tenant_ref, "maintenance window")
    delete_window(window.tenant_id, window.id)
    click.echo(f"maintenance window {window_id} deleted")


def _iso(value: datetime | None) -> str:
    return value.isoformat(timespec="minutes") if value else "-"
