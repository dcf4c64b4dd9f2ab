"""``admin-mit report alerts``, run as a user runs it (a subprocess) against the database of the
``app`` fixture (SQLite and PostgreSQL), seeded as in tests/test_alert_reports.py."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from tests.conftest import subprocess_environ
from tests.test_alert_reports import Seeded, api_row, seed
from tests.test_cli import admin_mit, one_error_line, run_all

pytestmark = pytest.mark.timeout(180)

WINDOW = ("--from", "2026-03-02T00:00:00Z", "--to", "2026-03-03T00:00:00")


@pytest.fixture
def seeded(app: Flask) -> Seeded:
    return seed()


@pytest.fixture
def env(app: Flask, tmp_path: Path) -> dict[str, str]:
    return subprocess_environ(tmp_path, app.extensions["admin_mit.settings"].database_url)


def table(stdout: str) -> dict[str, list[str]]:
    """The table's rows by name (TOTAL for the total), after the heading and the column names."""
    heading, columns, *rows = stdout.strip().splitlines()
    assert heading.startswith("alerts of tenant acme from 2026-03-02 00:00:00 to 2026-03-03 00:00:00 UTC")
    assert columns.split("\t")[:3] == ["PROBE", "NAME", "ALERTS"]
    return {cells[1]: cells for cells in (line.split("\t") for line in rows)}


def test_the_table_shows_each_probe_and_the_total(seeded: Seeded, env: dict[str, str]) -> None:
    done = admin_mit(env, "report", "alerts", "--tenant", "acme", *WINDOW)

    assert done.returncode == 0, done.stderr
    rows = table(done.stdout)
    assert list(rows) == ["api", "db", "legacy", "TOTAL"]
    assert rows["api"] == [str(seeded.api.id), "api", "5", "0", "3", "4", "2m00s", "4m24s", "12m30s", "18m30s",
                           "8", "65.0", "45.0", "50.0"]
    assert rows["db"][2:10] == ["2", "1", "1", "1", "30s", "30s", "45s", "45s"]
    assert rows["legacy"][6:] == ["-", "-", "-", "-", "0", "1440.0", "0.0", "1440.0"]
    assert rows["TOTAL"] == ["-", "TOTAL", "7", "1", "4", "5", "1m30s", "4m06s", "10m00s", "18m00s", "8", "1505.0",
                             "45.0", "1490.0"]


def test_json_for_one_probe_and_a_window_given_as_a_duration(seeded: Seeded, env: dict[str, str]) -> None:
    done = run_all(env, {
        "probe": ["report", "alerts", "--tenant", "acme", *WINDOW, "--probe", str(seeded.api.id), "--json"],
        "since": ["report", "alerts", "--tenant", "acme", "--since", "2w", "--json"],
    })

    assert done["probe"].returncode == 0, done["probe"].stderr
    report: dict[str, Any] = json.loads(done["probe"].stdout)
    assert (report["from"], report["to"]) == ("2026-03-02T00:00:00+00:00", "2026-03-03T00:00:00+00:00")
    expected = api_row(seeded)
    assert report["probes"] == [asdict(expected)]
    assert report["total"]["minutes_down"] == expected.minutes_down
    recent = json.loads(done["since"].stdout)
    assert datetime.fromisoformat(recent["to"]) - datetime.fromisoformat(recent["from"]) == timedelta(weeks=2)
    assert recent["total"]["alerts"] == 0


def test_every_mistake_is_one_line(seeded: Seeded, env: dict[str, str]) -> None:
    base = ["report", "alerts", "--tenant", "acme"]
    done = run_all(env, {
        "both": [*base, "--since", "7d", "--from", "2026-03-02T00:00:00Z"],
        "since": [*base, "--since", "a week"],
        "from": [*base, "--from", "last monday"],
        "order": [*base, "--from", "2026-03-03T00:00:00Z", "--to", "2026-03-02T00:00:00Z"],
        "long": [*base, "--from", "2025-01-01T00:00:00Z", "--to", "2026-03-02T00:00:00Z"],
        "tenant": ["report", "alerts", "--tenant", "initech"],
        "probe": [*base, "--probe", str(seeded.other.id)],
    })

    assert "--since or --from/--to" in one_error_line(done["both"])
    assert "--since" in one_error_line(done["since"])
    assert "--from" in one_error_line(done["from"])
    assert one_error_line(done["order"]).endswith("to: must be later than from")
    assert "at most 400 days" in one_error_line(done["long"])
    assert "initech" in one_error_line(done["tenant"])
    assert one_error_line(done["probe"]).endswith(f"probe {seeded.other.id} not found")
