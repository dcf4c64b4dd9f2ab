"""``admin-mit rule add`` with grouping, flapping and escalation options, ``rule list`` and ``alert list``
showing them: run as a user runs them, in a subprocess on a migrated SQLite file."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from tests import test_cli
from tests.targets import free_port
from tests.test_cli import add_probe, admin_mit, one_error_line

pytestmark = pytest.mark.timeout(300)
cli_env = test_cli.cli_env  # a migrated SQLite file and the tenant "acme", for this module


def _channel(env: dict[str, str]) -> int:
    done = admin_mit(env, "channel", "add", "--tenant", "acme", "--name", f"hook-{uuid.uuid4().hex[:6]}",
                     "--kind", "webhook", "--url", f"http://127.0.0.1:{free_port()}/hook")
    assert done.returncode == 0, done.stderr
    return int(done.stdout.split()[1])


def _rules(env: dict[str, str]) -> dict[str, list[str]]:
    """``rule list`` as {name: columns}."""
    done = admin_mit(env, "rule", "list")
    assert done.returncode == 0, done.stderr
    header, *rows = done.stdout.strip().splitlines()
    assert header.split("\t")[-2:] == ["GROUPING", "ESCALATION"]
    return {row.split("\t")[2]: row.split("\t") for row in rows}


def _alerts(env: dict[str, str], *options: str) -> dict[int, list[str]]:
    """``alert list`` as {id: columns}."""
    done = admin_mit(env, "alert", "list", *options)
    assert done.returncode == 0, done.stderr
    header, *rows = done.stdout.strip().splitlines()
    assert header.split("\t")[6] == "FLAGS"
    return {int(row.split("\t")[0]): row.split("\t") for row in rows}


def test_rule_add_takes_grouping_flapping_and_escalation_and_rule_list_shows_them(cli_env: dict[str, str]) -> None:
    oncall, manager = _channel(cli_env), _channel(cli_env)
    name = f"down-{uuid.uuid4().hex[:6]}"
    done = admin_mit(cli_env, "rule", "add", "--tenant", "acme", "--name", name, "--kind", "down",
                     "--channel", str(oncall), "--group-by", "rule", "--group-wait", "10", "--group-interval", "60",
                     "--flap-changes", "4", "--flap-window", "300", "--flap-settle", "120",
                     "--escalate", f"300:{manager}", "--escalate", f"900:{manager},{oncall}")
    assert done.returncode == 0, done.stderr
    assert re.match(rf"rule \d+ '{name}' created: .*, escalating in 2 step\(s\)$", done.stdout.strip()), done.stdout

    columns = _rules(cli_env)[name]
    assert columns[-2:] == ["rule 10s/60s", f"300:{manager} 900:{manager},{oncall}"]

    plain = f"plain-{uuid.uuid4().hex[:6]}"
    assert admin_mit(cli_env, "rule", "add", "--tenant", "acme", "--name", plain, "--kind", "down").returncode == 0
    assert _rules(cli_env)[plain][-2:] == ["none", "-"]


BAD_OPTIONS = [
    (["--escalate", "300"], "expected AFTER_SECONDS:CHANNEL_ID"),
    (["--escalate", "300:four"], "expected AFTER_SECONDS:CHANNEL_ID"),
    (["--escalate", "five:{channel}"], "expected AFTER_SECONDS:CHANNEL_ID"),
    (["--escalate", "0:{channel}"], "after_seconds"),
    (["--escalate", "600:{channel}", "--escalate", "300:{channel}"], "increasing after_seconds"),
    (["--escalate", "300:987654"], "notification channel 987654 not found"),
    (["--group-by", "probe"], "--group-by"),
    (["--group-wait", "-1"], "--group-wait"),
    (["--group-interval", "0"], "--group-interval"),
    (["--flap-changes", "51"], "--flap-changes"),
    (["--flap-window", "0"], "--flap-window"),
    (["--flap-settle", "x"], "--flap-settle"),
]


def test_a_bad_rule_option_is_one_error_line_and_writes_nothing(cli_env: dict[str, str]) -> None:
    channel = _channel(cli_env)
    names = []
    for options, expected in BAD_OPTIONS:
        names.append(f"bad-{uuid.uuid4().hex[:6]}")
        done = admin_mit(cli_env, "rule", "add", "--tenant", "acme", "--name", names[-1], "--kind", "down",
                         *[option.format(channel=channel) for option in options])
        assert expected in one_error_line(done), options
    assert not set(names) & set(_rules(cli_env))


def _sqlite_path(env: dict[str, str]) -> str:
    return env["ADMIN_MIT_DATABASE__URL"].removeprefix("sqlite:///")


def _open_alert(env: dict[str, str], rule_id: int, probe_id: int, status: str, **columns: object) -> int:
    """An open alert written straight into the CLI's database: the state a worker leaves behind."""
    at = (datetime.now(timezone.utc) - timedelta(minutes=5)).replace(tzinfo=None).isoformat(sep=" ")
    values = {"tenant_id": 1, "rule_id": rule_id, "probe_id": probe_id, "status": status, "reason": "a failure",
              "opened_at": at, "since": at, "reminders_sent": 0, **columns}
    with sqlite3.connect(_sqlite_path(env)) as connection:
        cursor = connection.execute(f"INSERT INTO alerts ({', '.join(values)}) VALUES "
                                    f"({', '.join('?' for _ in values)})", list(values.values()))
        return int(cursor.lastrowid or 0)


def test_alert_list_shows_suppressed_alerts_and_marks_flapping_and_escalated_ones(cli_env: dict[str, str]) -> None:
    flapping_probe = add_probe(cli_env, f"http://127.0.0.1:{free_port()}/", "--manual-only")
    child, parent = (add_probe(cli_env, f"http://127.0.0.1:{free_port()}/", "--manual-only") for _ in range(2))
    name = f"all-{uuid.uuid4().hex[:6]}"
    done = admin_mit(cli_env, "rule", "add", "--tenant", "acme", "--name", name, "--kind", "down")
    assert done.returncode == 0, done.stderr
    rule_id = int(done.stdout.split()[1])
    flapping = _open_alert(cli_env, rule_id, flapping_probe, "firing", flapping=True, escalation_step=1)
    suppressed = _open_alert(cli_env, rule_id, child, "suppressed", suppressed_by=parent)
    parent_name = _probe_name(cli_env, parent)

    listed = _alerts(cli_env, "--status", "open")
    assert listed[flapping][2] == "firing" and listed[flapping][6] == "flapping, escalation step 1"
    assert listed[suppressed][2] == "suppressed" and listed[suppressed][6] == f"suppressed by {parent_name}"
    assert set(_alerts(cli_env, "--status", "suppressed")) == {suppressed}
    assert flapping in _alerts(cli_env, "--status", "firing")


def _probe_name(env: dict[str, str], probe_id: int) -> str:
    with sqlite3.connect(_sqlite_path(env)) as connection:
        (name,) = connection.execute("SELECT name FROM probes WHERE id = ?", (probe_id,)).fetchone()
    return str(name)


def test_alert_list_refuses_an_unknown_status_in_one_line(cli_env: dict[str, str]) -> None:
    done: subprocess.CompletedProcess[str] = admin_mit(cli_env, "alert", "list", "--status", "flapping")
    assert "--status" in one_error_line(done)
