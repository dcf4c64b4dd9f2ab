"""``admin-mit report``: reports over a window, printed as a table or as JSON."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import click
from flask.cli import with_appcontext

from app.cli import _print_json, cli

_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_LONGEST_SINCE = timedelta(days=400 * 2)  # beyond the report's limit, which then names the problem
_COLUMNS = ("PROBE", "NAME", "ALERTS", "SUPPRESSED", "ACKED", "RESOLVED", "ACK_MEDIAN", "ACK_P90",
            "RESOLVE_MEDIAN", "RESOLVE_P90", "RESULTS", "DOWN_MIN", "MAINT_MIN", "DOWN_OUTSIDE_MIN")


@cli.group()
def report() -> None:
    """Reports over a window: alerts and their handling, time down and in maintenance."""


@report.command("alerts")
@click.option("--tenant", "tenant_ref", required=True, help="Tenant id or name.")
@click.option("--since", "since_text", default=None, help="The window ends now and began this long ago: 30m, 6h, "
                                                          "7d, 2w [default: 7d].")
@click.option("--from", "from_text", default=None, help="Start, ISO 8601 (UTC when no zone is given).")
@click.option("--to", "to_text", default=None, help="End, ISO 8601 [default: now].")
@click.option("--probe", "probe_id", type=int, default=None, help="Only this probe.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (the API's shape).")
@with_appcontext
def report_alerts(tenant_ref: str, since_text: str | None, from_text: str | None, to_text: str | None,
                  probe_id: int | None, as_json: bool) -> None:
    """Per probe and in total: alerts opened, time to acknowledge and to resolve (median, p90),
    minutes down and in maintenance. See docs/alerts.md, "Reports"."""
    from app.services import alert_reports
    from app.services.tenants import get_tenant

    if since_text is not None and (from_text is not None or to_text is not None):
        raise click.UsageError("give --since or --from/--to, not both")
    owner = get_tenant(tenant_ref)
    if since_text is not None:
        end = datetime.now(timezone.utc)
        start, end = alert_reports.window(end - _duration(since_text), end)
    else:
        start, end = alert_reports.window(_time(from_text, "--from"), _time(to_text, "--to"))
    made = alert_reports.report(owner.id, start, end, probe_id=probe_id)
    if as_json:
        _print_json({key: value.isoformat() if isinstance(value, datetime) else value
                     for key, value in made.as_dict().items()})
        return
    click.echo(f"alerts of tenant {owner.name} from {_when(made.start)} to {_when(made.end)} UTC"
               f" (time counted up to {_when(made.until)}):")
    click.echo("\t".join(_COLUMNS))
    for item in made.probes:
        click.echo("\t".join([str(item.probe_id), item.probe_name, *_cells(item)]))
    click.echo("\t".join(["-", "TOTAL", *_cells(made.total)]))


def _duration(text: str) -> timedelta:
    value = text.strip()
    if len(value) < 2 or value[-1] not in _UNITS or not value[:-1].isdecimal():
        raise click.BadParameter("expected a duration such as 30m, 6h, 7d or 2w", param_hint="--since")
    seconds = int(value[:-1]) * _UNITS[value[-1]]
    if not 0 < seconds <= _LONGEST_SINCE.total_seconds():
        raise click.BadParameter(f"must be more than 0 and at most {_LONGEST_SINCE.days} days",
                                 param_hint="--since")
    return timedelta(seconds=seconds)


def _time(text: str | None, option: str) -> datetime | None:
    if text is None:
        return None
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise click.BadParameter("expected an ISO 8601 time, e.g. 2026-12-01T08:00:00Z", param_hint=option) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _cells(figures: Any) -> list[str]:
    return [str(figures.alerts), str(figures.suppressed), str(figures.acknowledged), str(figures.resolved),
            _span(figures.time_to_acknowledge_median_seconds), _span(figures.time_to_acknowledge_p90_seconds),
            _span(figures.time_to_resolve_median_seconds), _span(figures.time_to_resolve_p90_seconds),
            str(figures.results), f"{figures.minutes_down:.1f}", f"{figures.minutes_in_maintenance:.1f}",
            f"{figures.minutes_down_outside_maintenance:.1f}"]


def _span(seconds: float | None) -> str:
    """A duration to the second: ``45s``, ``4m24s``, ``1h02m05s``; ``-`` for none."""
    if seconds is None:
        return "-"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _when(value: datetime) -> str:
    return f"{value.astimezone(timezone.utc):%Y-%m-%d %H:%M:%S}"
