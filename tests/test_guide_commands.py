"""Every ``celery -A celery_worker.celery …`` line of the guide, run as written from the project root.

Each one runs as a real process against the test Redis (db 12) and a migrated SQLite
file, must get ready, and must stop cleanly on SIGTERM (exit 0, no process left).
The deploy/ units are checked to be the guide's and are run the same way.
"""

from __future__ import annotations

import configparser
import os
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import pytest
import redis
from celery import Celery

from app.celery_app import build_config
from app.core.config import PROJECT_ROOT, load_settings
from tests.conftest import SUBPROCESS_REDIS_DB, subprocess_environ
from tests.targets import free_port

READY_TIMEOUT = 90.0
STOP_TIMEOUT = 60.0
CELERY = [sys.executable, "-m", "celery"]  # `celery` of this virtualenv


def _live_members(group: int) -> list[int]:
    """Processes of a process group that are still running (zombies of exited ones don't count)."""
    alive = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] != "Z" and int(fields[2]) == group:
            alive.append(int(entry.name))
    return alive


def _pid_alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


@dataclass
class Env:
    variables: dict[str, str]
    redis: redis.Redis
    control: Celery
    logs: Path

    def pings(self) -> list[str]:
        return [name for reply in self.control.control.ping(timeout=0.5) for name in reply]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    instance = tmp_path_factory.mktemp("guide")
    variables = subprocess_environ(instance, f"sqlite:///{instance / 'guide.db'}")
    migrated = subprocess.run([sys.executable, "-m", "app", "db", "upgrade"], cwd=PROJECT_ROOT, env=variables,
                              capture_output=True, text=True, timeout=120)
    assert migrated.returncode == 0, migrated.stderr
    client = redis.Redis(host=variables["ADMIN_MIT_REDIS__HOST"], port=int(variables["ADMIN_MIT_REDIS__PORT"]),
                         db=int(SUBPROCESS_REDIS_DB))
    client.flushdb()
    control = Celery("guide-commands-test")
    control.conf.update(build_config(load_settings(environ=variables)))
    yield Env(variables, client, control, instance)
    control.close()
    client.flushdb()


# --- running a command -----------------------------------------------------------------------

class Started:
    """A command started as the guide says (cwd = project root), with its output in a file."""

    def __init__(self, env: Env, args: list[str], name: str) -> None:
        self.log_path = env.logs / f"{name}.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(CELERY + args, cwd=PROJECT_ROOT, env=env.variables, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_until(self, ready: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while not ready():
            assert self.process.poll() is None, f"exited with {self.process.returncode} before {what}:\n{self.log}"
            assert time.monotonic() < deadline, f"no {what} within {READY_TIMEOUT:g}s:\n{self.log}"
            time.sleep(0.1)

    def wait_for_line(self, text: str) -> None:
        self.wait_until(lambda: text in self.log, repr(text))

    def stop(self) -> int:
        """SIGTERM to the main process, as supervisor does; the exit code once the whole group is gone."""
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(STOP_TIMEOUT)
        deadline = time.monotonic() + 10
        while _live_members(self.process.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        return code

    def kill(self) -> None:
        if _live_members(self.process.pid):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


@pytest.fixture
def start(env: Env) -> Iterator[Callable[[list[str], str], Started]]:
    started: list[Started] = []

    def run(args: list[str], name: str) -> Started:
        started.append(Started(env, args, name))
        return started[-1]

    yield run
    for item in started:
        item.kill()


# --- the guide's command lines ---------------------------------------------------------------

@dataclass(frozen=True)
class GuideCommand:
    line: str  # exactly as in the guide, after `celery `
    queues: frozenset[str] = field(default_factory=frozenset)  # -Q: consumed, and only these
    send_tasks: bool = False  # also check with real messages that other queues are left alone

    @property
    def args(self) -> list[str]:
        return shlex.split(self.line)

    @property
    def is_worker(self) -> bool:
        return "worker" in self.args

    @property
    def runs_beat(self) -> bool:
        return "beat" in self.args or "--beat" in self.args

    @property
    def logs_info(self) -> bool:
        return "--loglevel=info" in self.args


GUIDE_COMMANDS = [
    GuideCommand("-A celery_worker.celery worker --loglevel=info"),
    GuideCommand("-A celery_worker.celery worker --loglevel=info --concurrency=4"),
    GuideCommand("-A celery_worker.celery worker --loglevel=info -Q network_probes,alerts",
                 frozenset({"network_probes", "alerts"}), send_tasks=True),
    GuideCommand("-A celery_worker.celery beat --loglevel=info"),
    GuideCommand("-A celery_worker.celery worker --beat --loglevel=info"),
    GuideCommand("-A celery_worker.celery worker --concurrency=4"),
    GuideCommand("-A celery_worker.celery worker -Q network_probes --concurrency=8", frozenset({"network_probes"})),
    GuideCommand("-A celery_worker.celery worker -Q alerts --concurrency=4", frozenset({"alerts"})),
]


def _queue_length(env: Env, queue: str) -> int:
    with env.control.connection_for_read() as conn:
        try:
            return conn.default_channel.queue_declare(queue=queue, passive=True).message_count
        except conn.channel_errors:
            return 0


def _check_listens_only_on(env: Env, queues: frozenset[str]) -> None:
    replies = env.control.control.inspect(timeout=1).active_queues() or {}
    assert len(replies) == 1, replies
    assert {queue["name"] for queue in next(iter(replies.values()))} == queues


def _check_other_queues_are_left_alone(env: Env) -> None:
    """A task routed (by module) to network_probes is done; the same task sent to ansible stays queued."""
    done = env.control.send_task("app.tasks.network_probe_tasks.cleanup_old_results", kwargs={"days": 30})
    assert done.get(timeout=60)["success"] is True

    left_alone = env.control.send_task("app.tasks.network_probe_tasks.cleanup_old_results", kwargs={"days": 30},
                                       queue="ansible")
    time.sleep(0.5)  # a worker consuming ansible would have taken it by now
    assert left_alone.state == "PENDING"
    assert _queue_length(env, "ansible") == 1
    env.control.control.purge()


@pytest.mark.parametrize("command", GUIDE_COMMANDS, ids=[c.line.removeprefix("-A celery_worker.celery ")
                                                         for c in GUIDE_COMMANDS])
def test_guide_command_gets_ready_and_stops_cleanly(env: Env, start: Callable[[list[str], str], Started],
                                                    command: GuideCommand) -> None:
    running = start(command.args, "guide")

    if command.is_worker and command.logs_info:
        running.wait_for_line(" ready.")
    elif command.is_worker:  # without --loglevel=info the worker logs nothing when ready
        running.wait_until(lambda: len(env.pings()) == 1, "reply to ping")
    if command.runs_beat:
        running.wait_for_line("beat: Starting...")
    if command.queues:
        _check_listens_only_on(env, command.queues)
    if command.send_tasks:
        _check_other_queues_are_left_alone(env)

    assert running.stop() == 0, running.log
    assert _live_members(running.process.pid) == []
    assert "Traceback" not in running.log
    if command.is_worker:
        assert "Warm shutdown" in running.log


@pytest.mark.parametrize("delay", [0.0, 0.3], ids=["at-start", "shortly-after"])
def test_beat_told_to_stop_while_starting_stops_cleanly(env: Env, start: Callable[[list[str], str], Started],
                                                        delay: float) -> None:
    """supervisor may stop beat the moment it starts: while its scheduler is still being built."""
    running = start(["-A", "celery_worker.celery", "beat", "--loglevel=info"], "beat-early-stop")
    running.wait_for_line("beat: Starting...")
    time.sleep(delay)

    assert running.stop() == 0, running.log
    assert _live_members(running.process.pid) == []
    assert "Traceback" not in running.log


def test_beat_stop_signal_while_its_scheduler_is_built_builds_no_second_one(tmp_path: Path) -> None:
    """The moment the subprocess test above can only hit by luck, made certain: Celery's
    SIGTERM handler runs while the scheduler is still being built."""
    from celery.beat import PersistentScheduler

    from app.celery_app import celery

    built: list[PersistentScheduler] = []

    class InterruptedWhileBuilding(PersistentScheduler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            built.append(self)
            service.sync()  # what the SIGTERM handler does, before raising SystemExit
            super().__init__(*args, **kwargs)

    service = celery.Beat().Service(app=celery, scheduler_cls=InterruptedWhileBuilding,
                                    schedule_filename=str(tmp_path / "schedule"))
    assert isinstance(service.scheduler, InterruptedWhileBuilding)
    assert len(built) == 1
    service.scheduler.close()


def test_guide_flower_command_serves_its_ui(env: Env, start: Callable[[list[str], str], Started]) -> None:
    pytest.importorskip("flower")
    port = free_port()
    running = start(["-A", "celery_worker.celery", "flower", f"--port={port}"], "flower")

    def answers() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as response:
                return response.status == 200
        except OSError:
            return False

    running.wait_until(answers, f"HTTP 200 on port {port}")
    assert running.stop() == 0, running.log


def test_guide_gevent_command_runs_tasks(env: Env, start: Callable[[list[str], str], Started]) -> None:
    pytest.importorskip("gevent")
    running = start(["-A", "celery_worker.celery", "worker", "--pool=gevent", "--concurrency=100"], "gevent")
    running.wait_until(lambda: len(env.pings()) == 1, "reply to ping")

    done = env.control.send_task("app.tasks.network_probe_tasks.cleanup_old_results", kwargs={"days": 30})

    assert done.get(timeout=60)["success"] is True
    assert running.stop() == 0, running.log


# --- deploy/ ---------------------------------------------------------------------------------

def _guide_args(command: str) -> list[str]:
    """The part after the celery executable, checked to be one of the guide's lines run above."""
    executable, *args = shlex.split(command)
    assert executable == "/path/to/venv/bin/celery"
    return args


def test_supervisor_programs_are_the_guides() -> None:
    conf = configparser.ConfigParser(interpolation=None)
    conf.read(PROJECT_ROOT / "deploy" / "supervisor" / "celery.conf", encoding="utf-8")

    assert conf.sections() == ["program:celery-worker", "program:celery-beat"]
    worker, beat = conf["program:celery-worker"], conf["program:celery-beat"]
    assert _guide_args(worker["command"]) == GUIDE_COMMANDS[1].args
    assert _guide_args(beat["command"]) == GUIDE_COMMANDS[3].args
    for program, name in ((worker, "worker"), (beat, "beat")):
        assert program["directory"] == "/path/to/admin-mit-backend"
        assert (program["user"], program["numprocs"], program["startsecs"]) == ("www-data", "1", "10")
        assert (program["autostart"], program["autorestart"]) == ("true", "true")
        assert program["stdout_logfile"] == f"/var/log/celery/{name}.log"
        assert program["stderr_logfile"] == f"/var/log/celery/{name}.error.log"
    assert worker["stopwaitsecs"] == "600"


def _unit(name: str) -> configparser.SectionProxy:
    conf = configparser.ConfigParser(interpolation=None)
    conf.optionxform = str  # type: ignore[assignment,method-assign]  (systemd keys are case-sensitive)
    conf.read(PROJECT_ROOT / "deploy" / "systemd" / name, encoding="utf-8")
    assert conf["Install"]["WantedBy"] == "multi-user.target"
    service = conf["Service"]
    assert (service["User"], service["Group"]) == ("www-data", "www-data")
    assert service["WorkingDirectory"] == "/path/to/admin-mit-backend"
    assert service["Environment"] == '"PATH=/path/to/venv/bin"'
    assert service["Restart"] == "always"
    return service


def test_systemd_units_are_the_guides() -> None:
    worker = _unit("celery-worker.service")
    assert worker["Type"] == "forking"
    assert _guide_args(worker["ExecStart"]) == GUIDE_COMMANDS[1].args + ["--detach"]
    assert _guide_args(worker["ExecStop"].removeprefix("-")) == ["-A", "celery_worker.celery", "control", "shutdown"]

    beat = _unit("celery-beat.service")
    assert beat["Type"] == "simple"
    assert _guide_args(beat["ExecStart"]) == GUIDE_COMMANDS[3].args


def test_systemd_worker_starts_detached_and_exec_stop_stops_it(env: Env) -> None:
    """ExecStart forks a worker into the background and returns; ExecStop shuts that worker down."""
    service = _unit("celery-worker.service")
    exec_start = CELERY + _guide_args(service["ExecStart"])
    exec_stop = CELERY + _guide_args(service["ExecStop"].removeprefix("-"))

    launched = subprocess.run(exec_start, cwd=PROJECT_ROOT, env=env.variables, capture_output=True, text=True,
                              timeout=60)
    assert launched.returncode == 0, launched.stderr
    pid = None
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while pid is None and time.monotonic() < deadline:
            stats = env.control.control.inspect(timeout=0.5).stats() or {}
            pid = next((info["pid"] for info in stats.values()), None)
        assert pid is not None, "the detached worker never answered"
        assert _pid_alive(pid)

        subprocess.run(exec_stop, cwd=PROJECT_ROOT, env=env.variables, capture_output=True, timeout=60)

        deadline = time.monotonic() + STOP_TIMEOUT
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _pid_alive(pid)
    finally:
        if pid is not None and _pid_alive(pid):
            os.killpg(os.getpgid(pid), signal.SIGKILL)
