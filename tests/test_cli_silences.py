"""``admin-mit silence``, run as a user runs it: add, list and expire, and every mistake in one line."""

from __future__ import annotations

import getpass
import re
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from tests import test_cli
from tests.targets import free_port
from tests.test_cli import _created_id, add_probe, admin_mit, one_error_line, run_all

cli_env = test_cli.cli_env  # the migrated database and tenant "acme", once for this module

pytestmark = pytest.mark.timeout(300)


def _rule(env: dict[str, str]) -> int:
    return _created_id(admin_mit(env, "rule", "add", "--tenant", "acme", "--name", f"down-{uuid.uuid4().hex[:6]}",
                                 "--kind", "down"), "rule")


def _rows(env: dict[str, str], *options: str) -> dict[int, list[str]]:
    done = admin_mit(env, "silence", "list", "--tenant", "acme", *options)
    assert done.returncode == 0, done.stderr
    header, *rows = done.stdout.strip().splitlines()
    assert header.split("\t") == ["ID", "STATE", "MATCHES", "STARTS", "ENDS", "BY", "ALERTS", "COMMENT"]
    return {int(row.split("\t")[0]): row.split("\t") for row in rows}


def test_silence_add_list_and_expire(cli_env: dict[str, str]) -> None:
    probe_id = add_probe(cli_env, f"http://127.0.0.1:{free_port()}/", "--manual-only")
    rule_id = _rule(cli_env)
    done = admin_mit(cli_env, "silence", "add", "--tenant", "acme", "--probe", str(probe_id), "--rule", str(rule_id),
                     "--for", "2h", "--comment", "replacing the disk")
    silence_id = _created_id(done, "silence")
    assert f"probe {probe_id} and rule {rule_id} until " in done.stdout
    ends = datetime.fromisoformat(done.stdout.strip().rsplit(" ", 1)[1])
    assert timedelta(hours=1, minutes=58) < ends - datetime.now(timezone.utc) <= timedelta(hours=2)
    in_a_month = (datetime.now(timezone.utc) + timedelta(days=30)).astimezone(timezone(timedelta(hours=1)))
    until = admin_mit(cli_env, "silence", "add", "--tenant", "acme", "--rule", str(rule_id), "--until",
                      in_a_month.isoformat(timespec="seconds"), "--comment", "the whole\nmonth", "--by", "alice")
    later_id = _created_id(until, "silence")

    rows = _rows(cli_env)
    assert rows[silence_id][1:3] == ["active", f"probe {probe_id} and rule {rule_id}"]
    assert rows[silence_id][5:] == [f"cli:{getpass.getuser()}", "-", "replacing the disk"]
    assert datetime.fromisoformat(rows[later_id][4]) == in_a_month.replace(second=0, microsecond=0)
    assert rows[later_id][5:] == ["alice", "-", "the whole month"]

    assert admin_mit(cli_env, "silence", "expire", str(silence_id)).stdout.strip() == f"silence {silence_id} expired"
    assert f"silence {silence_id} has already expired" in one_error_line(
        admin_mit(cli_env, "silence", "expire", str(silence_id)))
    assert silence_id not in _rows(cli_env)
    assert _rows(cli_env, "--all")[silence_id][1] == "expired"
    assert "silence 987654 not found" in one_error_line(admin_mit(cli_env, "silence", "expire", "987654"))


BAD = {
    "probe 987654 not found": ["--probe", "987654", "--for", "1h"],
    "probe group 987654 not found": ["--group", "987654", "--for", "1h"],
    "probe_ids: name at least one probe, group or rule": ["--for", "1h"],
    "give one of --for or --until": ["--rule", "987654"],
    "--for": ["--rule", "987654", "--for", "soon"],
    "ends_at: must be in the future": ["--rule", "987654", "--until", "2020-01-01T00:00:00Z"],
    "ends_at: Input should have timezone info": ["--rule", "987654", "--until", "2099-01-01T00:00:00"],
    "ends_at: a silence lasts at most 365 days": ["--rule", "987654", "--for", "400d"],
}


def test_a_bad_silence_is_one_error_line_and_nothing_is_written(cli_env: dict[str, str]) -> None:
    before = _rows(cli_env, "--all")
    outcomes = run_all(cli_env, {expected: ["silence", "add", "--tenant", "acme", "--comment", "x", *args]
                                 for expected, args in BAD.items()}
                       | {"both": ["silence", "add", "--tenant", "acme", "--comment", "x", "--rule", "987654",
                                   "--for", "1h", "--until", "2099-01-01T00:00:00Z"]})
    for expected, done in outcomes.items():
        assert (expected if expected != "both" else "give one of --for or --until") in one_error_line(done)
    assert _rows(cli_env, "--all") == before


def test_an_unknown_tenant_is_one_error_line(cli_env: dict[str, str]) -> None:
    outcomes = run_all(cli_env, {
        "add": ["silence", "add", "--tenant", "nobody", "--rule", "1", "--for", "1h", "--comment", "x"],
        "list": ["silence", "list", "--tenant", "nobody"],
    })
    for done in outcomes.values():
        assert re.search(r"tenant .*nobody.* not found", one_error_line(done)), done.stderr
