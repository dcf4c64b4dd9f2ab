"""``admin-mit rollups rebuild``: roll up stored results again (after an upgrade, or to repair)."""

from __future__ import annotations

from datetime import datetime

import click
from flask.cli import with_appcontext

from app.cli import cli


@cli.group()
def rollups() -> None:
    """The minute, hour and day history of probes."""


@rollups.command("rebuild")
@click.option("--probe", "probe_id", type=int, default=None, help="Only this probe (default: every probe).")
@click.option("--since", "since", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              help="First UTC day to rebuild, YYYY-MM-DD (default: the day of the oldest stored result).")
@with_appcontext
def rollups_rebuild(probe_id: int | None, since: datetime | None) -> None:
    """Replace the rollups from a day on with what the stored results say. Running it again changes nothing."""
    from app.services import rollups as service

    report = service.rebuild(probe_id=probe_id, since=since.date() if since else None)
    if report["since"] is None:
        click.echo("no stored results: nothing to roll up")
        return
    click.echo(f"rolled up {report['results']} results from {report['since']}")
