"""The ``admin-mit`` command, run as a user runs it: ``python -m app …`` in a subprocess.

Real Redis (db 12), a SQLite file migrated by ``db upgrade``, loopback HTTP targets,
and for ``--queue`` a real worker process.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import pytest
import redis

from app.core.config import PROJECT_ROOT
from tests.conftest import SUBPROCESS_REDIS_DB, subprocess_environ
from tests.targets import LoopbackTargets, free_port

START_TIMEOUT = 60.0


def admin_mit(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "app", *args], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert "Traceback" not in done.stderr, done.stderr
    return done


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    """The command failed with exactly one line on stderr; return it."""
    lines = done.stderr.strip().splitlines()
    assert done.returncode != 0
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("admin-mit: error: ")
    return lines[0]


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A migrated SQLite database and an empty subprocess Redis db, shared by the module's tests."""
    instance = tmp_path_factory.mktemp("cli")
    redis.Redis(host=os.environ["ADMIN_MIT_REDIS__HOST"], port=int(os.environ["ADMIN_MIT_REDIS__PORT"]),
                db=int(SUBPROCESS_REDIS_DB)).flushdb()
    env = subprocess_environ(instance, f"sqlite:///{instance / 'cli.db'}")
    done = admin_mit(env, "db", "upgrade")
    assert done.returncode == 0, done.stderr
    assert admin_mit(env, "tenant", "add", "acme").returncode == 0
    return env


@pytest.fixture(scope="module")
def manual_probe(cli_env: dict[str, str], targets: LoopbackTargets) -> int:
    """An http probe to /ok that only runs on demand."""
    return add_probe(cli_env, f"{targets.http_url}/ok", "--manual-only")


def add_probe(env: dict[str, str], target: str, *options: str) -> int:
    name = f"probe-{uuid.uuid4().hex[:8]}"
    done = admin_mit(env, "probe", "add", "--tenant", "acme", "--name", name, "--protocol", "http",
                     "--target", target, *options)
    assert done.returncode == 0, done.stderr
    found = re.match(rf"probe (\d+) '{name}' created", done.stdout)
    assert found, done.stdout
    return int(found.group(1))


def listed(env: dict[str, str]) -> dict[int, list[str]]:
    """``probe list`` as {id: columns}."""
    done = admin_mit(env, "probe", "list")
    assert done.returncode == 0, done.stderr
    header, *rows = done.stdout.strip().splitlines()
    assert header.split("\t")[0] == "ID"
    return {int(row.split("\t")[0]): row.split("\t") for row in rows}


def stored_probes(env: dict[str, str]) -> int:
    path = env["ADMIN_MIT_DATABASE__URL"].removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT count(*) FROM probes").fetchone()[0]


def run_all(env: dict[str, str], invocations: dict[str, list[str]]) -> dict[str, subprocess.CompletedProcess[str]]:
    """Independent invocations, side by side (each one is mostly Python start-up)."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {case: pool.submit(admin_mit, env, *args) for case, args in invocations.items()}
        return {case: future.result() for case, future in futures.items()}


# --- tenants and probes ----------------------------------------------------------------------

def test_tenant_add_and_list(cli_env: dict[str, str]) -> None:
    done = admin_mit(cli_env, "tenant", "add", "globex")
    assert done.returncode == 0
    assert re.fullmatch(r"tenant \d+ 'globex' created", done.stdout.strip())

    again = admin_mit(cli_env, "tenant", "add", "globex")

    assert "globex" in one_error_line(again)
    names = [line.split("\t")[1] for line in admin_mit(cli_env, "tenant", "list").stdout.splitlines()]
    assert sorted(names) == ["acme", "globex"]


def test_probe_add_run_and_list(cli_env: dict[str, str], targets: LoopbackTargets) -> None:
    """A new probe lists as never run; ``probe run`` runs it here, prints the result, and the list shows it."""
    probe_id = add_probe(cli_env, f"{targets.http_url}/ok", "--interval", "30", "--timeout", "2")
    assert listed(cli_env)[probe_id][3:8] == ["http", f"{targets.http_url}/ok", "30s", "enabled", "never run"]
    hits = targets.hits("/ok")

    done = admin_mit(cli_env, "probe", "run", str(probe_id))

    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["probe_id"], result["status"], result["status_code"]) == (probe_id, "success", 200)
    assert targets.hits("/ok") == hits + 1
    assert listed(cli_env)[probe_id][7].startswith("success")


def test_probe_list_masks_url_credentials(cli_env: dict[str, str], targets: LoopbackTargets) -> None:
    host = targets.http_url.removeprefix("http://")
    probe_id = add_probe(cli_env, f"http://ops:hunter2-pass@{host}/ok?api_key=k-77&v=2")
    assert listed(cli_env)[probe_id][4] == f"http://ops:********@{host}/ok?api_key=********&v=2"


def test_a_tcp_probe_sends_its_payload_with_its_line_end(cli_env: dict[str, str], targets: LoopbackTargets) -> None:
    added = admin_mit(cli_env, "probe", "add", "--tenant", "acme", "--name", f"redis-{uuid.uuid4().hex[:6]}",
                      "--protocol", "tcp", "--target", targets.tcp_resp, "--body", "PING\r\n", "--expect", "+PONG\r\n")
    assert added.returncode == 0, added.stderr
    probe_id = int(added.stdout.split()[1])

    done = admin_mit(cli_env, "probe", "run", str(probe_id))

    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["status"] == "success"


def test_spec_json_gives_any_protocol_its_fields(cli_env: dict[str, str]) -> None:
    added = admin_mit(cli_env, "probe", "add", "--tenant", "acme", "--name", f"udp-{uuid.uuid4().hex[:6]}",
                      "--protocol", "udp", "--target", "127.0.0.1:9", "--spec", '{"body": " x ", "expect": "y"}')
    assert added.returncode == 0, added.stderr
    refused = admin_mit(cli_env, "probe", "add", "--tenant", "acme", "--name", f"udp-{uuid.uuid4().hex[:6]}",
                        "--protocol", "udp", "--target", "127.0.0.1:9", "--method", "POST")
    assert "spec.method: unknown field" in one_error_line(refused)


INVALID_PROBES = {
    "unknown protocol": (["--protocol", "gopher", "--target", "gopher://127.0.0.1/"], "unknown protocol"),
    "bad target": (["--protocol", "http", "--target", "127.0.0.1:80"], "http"),
    "timeout not below interval": (["--protocol", "http", "--target", "http://127.0.0.1:9/",
                                    "--interval", "10", "--timeout", "10"], "timeout"),
    "bad conditions json": (["--protocol", "http", "--target", "http://127.0.0.1:9/",
                             "--conditions", "{expected_status: [200]"], "--conditions"),
    "unknown condition": (["--protocol", "http", "--target", "http://127.0.0.1:9/",
                           "--conditions", '{"expected_stat": [200]}'], "expected_stat"),
    "bad header": (["--protocol", "http", "--target", "http://127.0.0.1:9/", "--header", "no-colon"], "--header"),
    "bad spec json": (["--protocol", "http", "--target", "http://127.0.0.1:9/", "--spec", "{method: GET"], "--spec"),
    "spec not an object": (["--protocol", "http", "--target", "http://127.0.0.1:9/", "--spec", "[1]"], "--spec"),
    "header name not http": (["--protocol", "http", "--target", "http://127.0.0.1:9/", "--header", "a b: c"],
                             "spec.headers"),
}


def test_invalid_probes_are_rejected_in_one_line_and_nothing_is_created(cli_env: dict[str, str]) -> None:
    before = stored_probes(cli_env)

    results = run_all(cli_env, {
        case: ["probe", "add", "--tenant", "acme", "--name", f"bad-{uuid.uuid4().hex[:6]}", *options]
        for case, (options, _) in INVALID_PROBES.items()
    })

    for case, done in results.items():
        assert INVALID_PROBES[case][1] in one_error_line(done), case
    assert stored_probes(cli_env) == before


def test_probe_for_unknown_tenant_is_rejected(cli_env: dict[str, str]) -> None:
    before = stored_probes(cli_env)

    done = admin_mit(cli_env, "probe", "add", "--tenant", "nobody", "--name", "x", "--protocol", "http",
                     "--target", "http://127.0.0.1:9/")

    assert "tenant nobody not found" in one_error_line(done)
    assert stored_probes(cli_env) == before


# --- running probes --------------------------------------------------------------------------

def test_probe_run_of_failing_target_exits_3(cli_env: dict[str, str], targets: LoopbackTargets) -> None:
    probe_id = add_probe(cli_env, f"{targets.http_url}/status/503", "--timeout", "5")

    done = admin_mit(cli_env, "probe", "run", str(probe_id))

    assert done.returncode == 3
    result = json.loads(done.stdout)
    assert (result["status"], result["status_code"]) == ("failed", 503)


def test_probe_disable_shows_in_list(cli_env: dict[str, str], targets: LoopbackTargets) -> None:
    probe_id = add_probe(cli_env, f"{targets.http_url}/ok")

    assert admin_mit(cli_env, "probe", "disable", str(probe_id)).stdout.strip() == f"probe {probe_id} disabled"

    assert listed(cli_env)[probe_id][6] == "disabled"


def test_probe_delete_removes_it_from_the_list(cli_env: dict[str, str], targets: LoopbackTargets) -> None:
    probe_id = add_probe(cli_env, f"{targets.http_url}/ok")

    assert admin_mit(cli_env, "probe", "delete", str(probe_id)).returncode == 0

    assert probe_id not in listed(cli_env)


@pytest.fixture(scope="module")
def worker(cli_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[subprocess.Popen[bytes]]:
    """A real worker process on every queue (solo pool), with the CLI's configuration."""
    log_path = tmp_path_factory.mktemp("worker") / "worker.log"
    command = [sys.executable, "-m", "celery", "-A", "celery_worker.celery", "worker",
               "-Q", "network_probes,alerts,ansible,celery", "--pool=solo", "--loglevel=info"]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=cli_env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while " ready." not in log_path.read_text(errors="replace"):
            assert process.poll() is None, log_path.read_text(errors="replace")
            assert time.monotonic() < deadline, "worker did not get ready"
            time.sleep(0.1)
        yield process
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_probe_run_via_queue_returns_the_workers_result(cli_env: dict[str, str], manual_probe: int,
                                                       worker: subprocess.Popen[bytes]) -> None:
    probe_id = manual_probe

    done = admin_mit(cli_env, "probe", "run", str(probe_id), "--queue", "--wait", "60")

    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["probe_id"], result["status"]) == (probe_id, "success")
    queued = re.fullmatch(r"task (\S+) queued", done.stderr.strip())
    assert queued, done.stderr

    status = admin_mit(cli_env, "task", "status", queued.group(1))
    assert status.returncode == 0, status.stderr
    shown = json.loads(status.stdout)
    assert (shown["state"], shown["ready"], shown["successful"]) == ("SUCCESS", True, True)
    assert shown["result"]["probe_id"] == probe_id
    state, latest = listed(cli_env)[probe_id][6:8]
    assert state == "manual"
    assert latest.startswith("success")


def test_task_status_of_unknown_id_is_one_error_line(cli_env: dict[str, str]) -> None:
    task_id = str(uuid.uuid4())

    assert task_id in one_error_line(admin_mit(cli_env, "task", "status", task_id))


def test_probe_run_via_queue_with_redis_down_fails_fast_in_one_line(cli_env: dict[str, str],
                                                                   manual_probe: int) -> None:
    env = {**cli_env, "ADMIN_MIT_REDIS__PORT": str(free_port())}

    line = one_error_line(admin_mit(env, "probe", "run", str(manual_probe), "--queue", "--wait", "30"))

    assert "connect" in line.lower()


# --- bad invocations -------------------------------------------------------------------------

BAD_ARGUMENTS = {
    "unknown command": (["frobnicate"], "No such command 'frobnicate'"),
    "non-integer id": (["probe", "run", "one"], "'one' is not a valid integer"),
    "unknown option": (["probe", "list", "--colour"], "--colour"),
    "priority out of range": (["probe", "run", "1", "--queue", "--priority", "11"], "--priority"),
    "unknown probe": (["probe", "run", "424242"], "probe 424242 not found"),
}


def test_bad_arguments_give_one_error_line(cli_env: dict[str, str]) -> None:
    results = run_all(cli_env, {case: args for case, (args, _) in BAD_ARGUMENTS.items()})

    for case, done in results.items():
        assert BAD_ARGUMENTS[case][1] in one_error_line(done), case


def test_database_without_schema_says_to_run_db_upgrade(tmp_path: Path) -> None:
    env = subprocess_environ(tmp_path, f"sqlite:///{tmp_path / 'empty.db'}")

    line = one_error_line(admin_mit(env, "tenant", "list"))

    assert "db upgrade" in line


# --- alerting ---------------------------------------------------------------------------------

def _created_id(done: subprocess.CompletedProcess[str], what: str) -> int:
    assert done.returncode == 0, done.stderr
    found = re.match(rf"{what} (\d+) ", done.stdout)
    assert found, done.stdout
    return int(found.group(1))


def _admin_mit_stdin(env: dict[str, str], stdin: str, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "app", *args], cwd=PROJECT_ROOT, env=env, input=stdin,
                          capture_output=True, text=True, timeout=120)
    assert "Traceback" not in done.stderr, done.stderr
    return done


def test_channel_add_list_and_test_with_a_secret_from_stdin(cli_env: dict[str, str]) -> None:
    from tests.receivers import WebhookReceiver

    key = "cli-signing-key-0123456789"
    with WebhookReceiver() as receiver:
        channel_id = _created_id(_admin_mit_stdin(
            cli_env, json.dumps({"signing_key": key}), "channel", "add", "--tenant", "acme", "--name",
            f"hook-{uuid.uuid4().hex[:6]}", "--kind", "webhook", "--url", f"{receiver.url}/hook",
            "--secrets-stdin"), "channel")
        rows = {int(row.split("\t")[0]): row.split("\t")
                for row in admin_mit(cli_env, "channel", "list").stdout.strip().splitlines()[1:]}
        assert key not in json.dumps(rows)
        assert json.loads(rows[channel_id][4])["signing_key"] == "********" and rows[channel_id][5] == "ok"

        done = admin_mit(cli_env, "channel", "test", str(channel_id))
        assert done.returncode == 0 and "sent" in done.stdout, done.stderr
        assert receiver.verify(key, receiver.wait_for(1)[0])

        receiver.respond_next(1, 503)
        assert "503" in one_error_line(admin_mit(cli_env, "channel", "test", str(channel_id)))


@pytest.mark.parametrize("args, expected", [
    (["--kind", "email"], "settings.host"),
    (["--kind", "webhook", "--url", "ftp://127.0.0.1/"], "settings.url"),
    (["--kind", "webhook", "--settings", "[1]"], "--settings"),
])
def test_a_bad_channel_is_one_error_line(cli_env: dict[str, str], args: list[str], expected: str) -> None:
    done = admin_mit(cli_env, "channel", "add", "--tenant", "acme", "--name", f"bad-{uuid.uuid4().hex[:6]}", *args)
    assert expected in one_error_line(done)


def test_rule_alert_list_ack_and_resolve(cli_env: dict[str, str], worker: subprocess.Popen[bytes]) -> None:
    from tests.receivers import WebhookReceiver

    with WebhookReceiver() as receiver:
        channel_id = _created_id(admin_mit(cli_env, "channel", "add", "--tenant", "acme", "--name",
                                           f"hook-{uuid.uuid4().hex[:6]}", "--kind", "webhook", "--url",
                                           f"{receiver.url}/hook"), "channel")
        probe_id = add_probe(cli_env, f"http://127.0.0.1:{free_port()}/", "--manual-only")
        rule_name = f"down-{uuid.uuid4().hex[:6]}"
        rule_id = _created_id(admin_mit(cli_env, "rule", "add", "--tenant", "acme", "--name", rule_name, "--kind",
                                        "down", "--probe", str(probe_id), "--threshold", "1", "--channel",
                                        str(channel_id)), "rule")
        rules = {int(row.split("\t")[0]): row.split("\t")
                 for row in admin_mit(cli_env, "rule", "list").stdout.strip().splitlines()[1:]}
        assert rules[rule_id][2:8] == [rule_name, "down", f"probe {probe_id}", "a failure", str(channel_id),
                                       "enabled"]

        assert admin_mit(cli_env, "probe", "run", str(probe_id)).returncode == 3  # refused: a failed result
        firing = receiver.wait_for(1, timeout=30)[0].json
        alert_id = firing["data"]["alert"]["id"]
        open_rows = admin_mit(cli_env, "alert", "list", "--status", "open").stdout.strip().splitlines()[1:]
        mine = [row.split("\t") for row in open_rows if row.split("\t")[0] == str(alert_id)]
        assert mine and mine[0][2] == "firing" and mine[0][4] == rule_name

        done = admin_mit(cli_env, "alert", "ack", str(alert_id), "--note", "on it", "--by", "alice")
        assert done.stdout.strip() == f"alert {alert_id} acknowledged", done.stderr
        acknowledged = receiver.wait_for(2, timeout=30)[1].json
        assert acknowledged["event"] == "acknowledged"
        assert acknowledged["data"]["alert"]["note"] == "on it"
        again = one_error_line(admin_mit(cli_env, "alert", "ack", str(alert_id)))
        assert "only a firing alert can be acknowledged" in again

        done = admin_mit(cli_env, "alert", "resolve", str(alert_id), "--tenant", "acme")
        assert done.stdout.strip() == f"alert {alert_id} resolved", done.stderr
        assert "already resolved" in one_error_line(admin_mit(cli_env, "alert", "resolve", str(alert_id)))
        still_open = admin_mit(cli_env, "alert", "list", "--status", "open").stdout.strip().splitlines()[1:]
        assert str(alert_id) not in [row.split("\t")[0] for row in still_open]
        assert "not found" in one_error_line(admin_mit(cli_env, "alert", "ack", "987654"))


def test_maintenance_add_list_delete_and_a_bad_cron_is_one_line(cli_env: dict[str, str]) -> None:
    probe_id = add_probe(cli_env, f"http://127.0.0.1:{free_port()}/", "--manual-only")
    name = f"patching-{uuid.uuid4().hex[:6]}"
    done = admin_mit(cli_env, "maintenance", "add", "--tenant", "acme", "--name", name, "--start",
                     "2026-01-01T00:00:00Z", "--cron", "0 2 * * 0", "--duration", "7200", "--timezone",
                     "Europe/Berlin", "--probe", str(probe_id))
    assert done.returncode == 0, done.stderr
    window_id = _created_id(done, "maintenance window")
    assert " to " in done.stdout and "next " in done.stdout
    rows = {int(row.split("\t")[0]): row.split("\t")
            for row in admin_mit(cli_env, "maintenance", "list").stdout.strip().splitlines()[1:]}
    assert rows[window_id][2:5] == [name, "0 2 * * 0 Europe/Berlin for 7200s", f"probe {probe_id}"]

    refused = admin_mit(cli_env, "maintenance", "add", "--tenant", "acme", "--name", "bad", "--start",
                        "2026-01-01T00:00:00Z", "--cron", "at two", "--duration", "600", "--all-probes")
    assert refused.returncode != 0
    assert "cron: not a five-field cron expression" in one_error_line(refused)

    assert admin_mit(cli_env, "maintenance", "delete", str(window_id)).stdout.strip() == (
        f"maintenance window {window_id} deleted")
    missing = admin_mit(cli_env, "maintenance", "delete", str(window_id))
    assert f"maintenance window {window_id} not found" in one_error_line(missing)
