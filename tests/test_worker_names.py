"""Workers on one host get distinct node names: ``worker-<pid>@<host>`` unless ``-n`` says otherwise.

Two workers started exactly as the guide writes it (``celery -A celery_worker.celery worker
--loglevel=info``) and one with ``-n named@%h`` answer ``inspect ping`` and
``get_worker_stats()`` under their own names, and ``control shutdown --destination`` stops
just the named one.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
import redis

from app.core.config import PROJECT_ROOT
from tests.conftest import SUBPROCESS_REDIS_DB, subprocess_environ, wait_for

pytestmark = pytest.mark.timeout(240)

GUIDE_WORKER = [sys.executable, "-m", "celery", "-A", "celery_worker.celery", "worker", "--loglevel=info"]
HOST = socket.gethostname()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    redis.Redis(host=os.environ["ADMIN_MIT_REDIS__HOST"], port=int(os.environ["ADMIN_MIT_REDIS__PORT"]),
                db=int(SUBPROCESS_REDIS_DB)).flushdb()
    return subprocess_environ(tmp_path / "instance", f"sqlite:///{tmp_path / 'names.db'}")


@pytest.fixture
def workers(env: dict[str, str], tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    for index, extra in enumerate([[], [], ["--concurrency=1", "-n", "named@%h"]]):
        with (tmp_path / f"worker-{index}.log").open("wb") as log:
            started.append(subprocess.Popen(GUIDE_WORKER + extra, cwd=PROJECT_ROOT, env=env,
                                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
    try:
        yield started
    finally:
        for process in started:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in started:
            process.wait(60)


def python(env: dict[str, str], code: str) -> Any:
    """Run ``code`` (which prints JSON) in a process with ``env``; the decoded output."""
    done = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


PING = ("import json; from app.celery_app import celery\n"
        "print(json.dumps(sorted(celery.control.inspect(timeout=1).ping() or {})))")
STATS = ("import json; from app.celery_utils import get_worker_stats\n"
         "print(json.dumps(get_worker_stats(), default=str))")


def test_workers_on_one_host_have_distinct_names(env: dict[str, str],
                                                 workers: list[subprocess.Popen[bytes]]) -> None:
    first, second, named = workers
    expected = sorted([f"worker-{first.pid}@{HOST}", f"worker-{second.pid}@{HOST}", f"named@{HOST}"])

    answered = wait_for(lambda: (names := python(env, PING)) == expected and names, timeout=90,
                        what="three workers answering ping")

    assert answered == expected
    stats = python(env, STATS)
    assert stats["total_workers"] == 3
    assert sorted((worker["name"], worker["pid"]) for worker in stats["workers"]) == sorted([
        (f"worker-{first.pid}@{HOST}", first.pid), (f"worker-{second.pid}@{HOST}", second.pid),
        (f"named@{HOST}", named.pid)])

    done = subprocess.run([sys.executable, "-m", "celery", "-A", "celery_worker.celery", "control", "shutdown",
                           f"--destination=named@{HOST}"], cwd=PROJECT_ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    assert "Traceback" not in done.stderr
    assert named.wait(60) == 0
    assert first.poll() is None and second.poll() is None
