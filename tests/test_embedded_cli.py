"""CLI commands on the embedded default leave no server behind.

A command that needs Redis while none runs (``probe list``, ``probe run``, ``task …``)
starts a temporary embedded server and stops it when it ends — the last of several
concurrent commands does — and the data it wrote is there the next time. A server that
was running (``admin-mit redis``), or that a worker started meanwhile adopted, keeps
running.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import pytest

from app.core.config import PROJECT_ROOT
from tests.targets import LoopbackTargets
from tests.test_up import Instance, instance_processes, wait_until

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[Instance]:
    """An embedded-default instance, migrated, with tenant acme; whatever still runs for it is killed."""
    created = Instance(tmp_path / "instance")
    created.dir.mkdir()
    created.admin_mit("db", "upgrade")
    created.admin_mit("tenant", "add", "acme")
    yield created
    for pid in instance_processes(created.dir):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def run(inst: Instance, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "app", *args], cwd=PROJECT_ROOT, env=inst.env,
                          capture_output=True, text=True, timeout=120)
    assert "Traceback" not in done.stderr, done.stderr
    return done


def add_probe(inst: Instance, target: str) -> int:
    done = inst.admin_mit("probe", "add", "--tenant", "acme", "--name", f"p-{uuid.uuid4().hex[:6]}",
                          "--protocol", "http", "--target", target, "--manual-only")
    return int(done.stdout.split()[1])


def nothing_runs(inst: Instance) -> bool:
    return instance_processes(inst.dir) == [] and not inst.socket.exists()


def test_commands_start_the_embedded_redis_only_while_they_run(instance: Instance,
                                                               targets: LoopbackTargets) -> None:
    probe_id = add_probe(instance, f"{targets.http_url}/ok")
    assert nothing_runs(instance)

    ran = run(instance, "probe", "run", str(probe_id))  # caches the latest status in Redis
    assert ran.returncode == 0, ran.stderr
    assert nothing_runs(instance)

    listed = run(instance, "probe", "list")  # a new temporary server, with the saved data
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[1].split("\t")[7].startswith("success")
    assert nothing_runs(instance)

    unknown = run(instance, "task", "status", str(uuid.uuid4()))  # fails, and still cleans up
    assert unknown.returncode == 1 and "not found" in unknown.stderr
    assert nothing_runs(instance)

    waited = run(instance, "probe", "run", str(probe_id), "--queue", "--wait", "1")  # no worker: times out
    assert waited.returncode == 1
    assert waited.stderr.splitlines()[-1].startswith("admin-mit: error: no result within 1s")
    assert nothing_runs(instance)


def test_concurrent_commands_share_one_temporary_server_and_the_last_one_stops_it(instance: Instance,
                                                                                  targets: LoopbackTargets) -> None:
    add_probe(instance, f"{targets.http_url}/ok")

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: run(instance, "probe", "list"), range(6)))

    for done in results:
        assert done.returncode == 0, done.stderr
        assert done.stdout.count("\n") == 2  # the header and the probe, nothing from redis-server
    assert nothing_runs(instance)


def test_a_running_server_is_left_running(instance: Instance, targets: LoopbackTargets) -> None:
    add_probe(instance, f"{targets.http_url}/ok")
    server = instance.spawn(["redis"], "redis.log")
    try:
        wait_until(instance.redis_answers, "embedded Redis", server, lambda: instance.log("redis.log"))

        assert run(instance, "probe", "list").returncode == 0

        assert server.poll() is None and instance.redis_answers()
        assert instance.admin_mit("redis", "--stop").stdout.strip() == "embedded Redis stopped"
        assert server.wait(30) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert nothing_runs(instance)


def test_a_worker_started_during_a_command_keeps_the_server(instance: Instance, targets: LoopbackTargets) -> None:
    """``probe run --queue`` starts a temporary server and waits; a worker started meanwhile
    (``celery -A celery_worker.celery worker``) adopts it, so the command ending does not stop it."""
    probe_id = add_probe(instance, f"{targets.http_url}/ok")
    command = instance.spawn(["probe", "run", str(probe_id), "--queue", "--wait", "120"], "run.log")
    worker = None
    try:
        wait_until(instance.redis_answers, "the temporary server", command, lambda: instance.log("run.log"))
        with open(instance.dir / "worker.log", "wb") as log:
            worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "celery_worker.celery", "worker",
                                       "--pool=solo", "--loglevel=info"], cwd=PROJECT_ROOT, env=instance.env,
                                      stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

        assert command.wait(120) == 0, instance.log("run.log")
        assert '"status": "success"' in instance.log("run.log")
        assert instance.redis_answers()
        assert worker.poll() is None, instance.log("worker.log")
    finally:
        for process in (command, worker):
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(60)
    assert instance.redis_answers()  # the worker's server outlives it, as a detached one would
    assert instance.admin_mit("redis", "--stop").stdout.strip() == "embedded Redis stopped"
    assert nothing_runs(instance)


def test_a_terminated_command_stops_its_temporary_server(instance: Instance, targets: LoopbackTargets) -> None:
    probe_id = add_probe(instance, f"{targets.http_url}/ok")
    command = instance.spawn(["probe", "run", str(probe_id), "--queue", "--wait", "120"], "run.log")
    try:
        wait_until(instance.redis_answers, "the temporary server", command, lambda: instance.log("run.log"))

        command.terminate()  # SIGTERM, as a service manager or `kill` sends it

        assert command.wait(60) == 128 + signal.SIGTERM
    finally:
        if command.poll() is None:
            command.kill()
            command.wait()
    assert "Traceback" not in instance.log("run.log")
    assert nothing_runs(instance)


def test_a_termination_during_the_servers_start_is_handled_once_it_is_marked_temporary() -> None:
    """The window between starting a temporary server and marking it as one: a SIGTERM there
    must not end the command before the marker exists (the clean-up would not stop the server)."""
    from app.core.embedded_redis import _termination_held

    def leave(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, leave)
    steps = []
    try:
        with pytest.raises(SystemExit) as ended:
            with _termination_held():
                os.kill(os.getpid(), signal.SIGTERM)
                steps.append("marked temporary")  # still reached: the signal waits for the block's end
            steps.append("after the block")
    finally:
        signal.signal(signal.SIGTERM, previous)

    assert steps == ["marked temporary"] and ended.value.code == 128 + signal.SIGTERM
