"""Start-up errors, as an operator sees them: one line on stderr, a non-zero exit, no traceback,
no process left behind — from ``admin-mit``, ``celery -A celery_worker.celery worker|beat|flower``
and ``gunicorn wsgi:app``.

Covered: a malformed or unusable database URL, an unreachable database, a short scrape token, an impossible,
file-blocked or read-only instance directory, and an unreachable Redis.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import pytest

from app.core.config import PROJECT_ROOT
from tests.conftest import subprocess_environ
from tests.targets import free_port
from tests.test_up import instance_processes

CELERY = [sys.executable, "-m", "celery", "-A", "celery_worker.celery"]
COMMANDS = {
    "admin-mit tenant list": [sys.executable, "-m", "app", "tenant", "list"],
    "admin-mit db upgrade": [sys.executable, "-m", "app", "db", "upgrade"],
    "admin-mit up": [sys.executable, "-m", "app", "up"],
    "admin-mit redis": [sys.executable, "-m", "app", "redis"],
    "admin-mit task status": [sys.executable, "-m", "app", "task", "status", "0" * 32],
    "celery worker": CELERY + ["worker", "--loglevel=info"],
    "celery worker --detach": CELERY + ["worker", "--loglevel=info", "--detach"],
    "celery beat": CELERY + ["beat", "--loglevel=info"],
    "celery flower": CELERY + ["flower", "--port=0"],
    "gunicorn wsgi:app": [sys.executable, "-m", "gunicorn", "--bind", "127.0.0.1:0", "wsgi:app"],
}


def run(command: str, env: dict[str, str], prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*prefix, *COMMANDS[command]], cwd=PROJECT_ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


def the_error_line(done: subprocess.CompletedProcess[str], command: str) -> str:
    """The command failed with its one error line and no traceback; return that line.

    gunicorn logs its own start and stop lines around the application's one line.
    """
    assert done.returncode != 0, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    if command.startswith("gunicorn"):
        assert done.returncode == 4  # "App failed to load": gunicorn halts instead of rebooting the worker
        lines = [line for line in lines if line.startswith("admin-mit")]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("admin-mit: error: "), lines[0]
    return lines[0]


def run_all(cases: dict[str, tuple[str, dict[str, str]]]) -> dict[str, subprocess.CompletedProcess[str]]:
    """Independent start-ups side by side (each is mostly Python start-up or a wait)."""
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {case: pool.submit(run, command, env) for case, (command, env) in cases.items()}
        return {case: future.result() for case, future in futures.items()}


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """Test Redis (subprocess db), a fresh instance directory and SQLite file."""
    return subprocess_environ(tmp_path / "instance", f"sqlite:///{tmp_path / 'instance' / 'x.db'}")


# --- the database URL ------------------------------------------------------------------------

BAD_URLS = {
    "not a URL": ("notaurl", "not a database URL"),
    "port not a number": ("postgresql+psycopg://admin:s3cret@127.0.0.1:notaport/db", "the port is not a number"),
    "port out of range": ("postgresql+psycopg://admin@127.0.0.1:99999/db", "port 99999 is out of range"),
    "unknown driver": ("mysql+nosuchdriver://root@127.0.0.1/test", "unknown database driver 'mysql+nosuchdriver'"),
    "driver not installed": ("postgresql://admin@127.0.0.1/db", "needs the Python module psycopg2"),
}
URL_CASES = [(url_case, "admin-mit tenant list") for url_case in BAD_URLS] + [
    ("not a URL", "celery worker"), ("port not a number", "celery beat"), ("driver not installed", "celery flower"),
    ("unknown driver", "gunicorn wsgi:app"),
]


def test_a_bad_database_url_is_one_line_naming_the_variable(env: dict[str, str]) -> None:
    results = run_all({f"{command}: {url_case}": (command, {**env, "ADMIN_MIT_DATABASE__URL": BAD_URLS[url_case][0]})
                       for url_case, command in URL_CASES})

    for url_case, command in URL_CASES:
        done = results[f"{command}: {url_case}"]
        line = the_error_line(done, command)
        assert "environment ADMIN_MIT_DATABASE__URL: database.url: " in line, (command, line)
        assert BAD_URLS[url_case][1] in line, (command, line)
        assert "s3cret" not in done.stdout + done.stderr


def test_an_unreachable_database_is_one_line_when_a_command_needs_it(env: dict[str, str]) -> None:
    port = free_port()
    down = {**env, "ADMIN_MIT_DATABASE__URL": f"postgresql+psycopg://postgres@127.0.0.1:{port}/test"}
    commands = ["admin-mit tenant list", "admin-mit db upgrade", "admin-mit up"]

    results = run_all({command: (command, down) for command in commands})

    for command, done in results.items():
        line = the_error_line(done, command)
        assert line.startswith("admin-mit: error: database: "), (command, line)
        assert f"port {port} failed" in line, (command, line)


def test_a_short_metrics_token_is_one_line_that_never_shows_it(env: dict[str, str]) -> None:
    short = {**env, "ADMIN_MIT_METRICS__TOKEN": "s3cret-but-short"}
    commands = ["gunicorn wsgi:app", "admin-mit up"]

    results = run_all({command: (command, short) for command in commands})

    for command, done in results.items():
        line = the_error_line(done, command)
        assert "environment ADMIN_MIT_METRICS__TOKEN: metrics.token: must be at least 32 characters" in line
        assert "s3cret" not in done.stdout + done.stderr


# --- the instance directory ------------------------------------------------------------------

def _read_only(directory: Path) -> tuple[str, ...]:
    """A command prefix under which ``directory`` is read-only, even for root (a private
    read-only bind mount); for other users its mode is enough."""
    if os.geteuid() != 0:
        directory.chmod(0o555)
        return ()
    if shutil.which("unshare") is None:
        pytest.skip("running as root without unshare(1): cannot make a directory read-only")
    mount = f"mount --bind -o ro {directory} {directory} && exec \"$@\""
    return ("unshare", "--mount", "sh", "-c", mount, "sh")


INSTANCE_CASES: dict[str, Callable[[Path], tuple[str, str]]] = {
    "impossible": lambda tmp: ("/proc/x", "cannot create /proc/x: No such file or directory"),
    "parent is a file": lambda tmp: (str(tmp / "file" / "instance"), "Not a directory"),
    "is a file": lambda tmp: (str(tmp / "file"), "exists and is not a directory"),
}
# Every entry point once (the CLI with and without the app, Celery with the embedded Redis to
# start, gunicorn), the other cases on the CLI and Celery.
INSTANCE_COMMANDS = {
    "impossible": ["admin-mit tenant list", "admin-mit redis", "celery worker", "celery beat", "gunicorn wsgi:app"],
    "parent is a file": ["admin-mit tenant list", "celery worker"],
    "is a file": ["admin-mit redis", "celery beat"],
}


@pytest.mark.parametrize("case", INSTANCE_CASES, ids=list(INSTANCE_CASES))
def test_an_unusable_instance_directory_is_one_line(env: dict[str, str], tmp_path: Path, case: str) -> None:
    (tmp_path / "file").touch()
    path, fragment = INSTANCE_CASES[case](tmp_path)
    bad = {**env, "ADMIN_MIT_APP__INSTANCE_PATH": path, "ADMIN_MIT_REDIS__EMBEDDED": "true"}

    results = run_all({command: (command, bad) for command in INSTANCE_COMMANDS[case]})

    for command, done in results.items():
        line = the_error_line(done, command)
        assert line.startswith("admin-mit: error: app.instance_path: "), (command, line)
        assert fragment in line, (command, line)


@pytest.mark.parametrize("command", ["admin-mit tenant list", "celery worker", "gunicorn wsgi:app"])
def test_a_read_only_instance_directory_is_one_line(env: dict[str, str], tmp_path: Path, command: str) -> None:
    instance = tmp_path / "read-only"
    instance.mkdir()
    prefix = _read_only(instance)

    done = run(command, {**env, "ADMIN_MIT_APP__INSTANCE_PATH": str(instance)}, prefix)

    line = the_error_line(done, command)
    assert f"app.instance_path: {instance} is not writable: " in line, line
    assert list(instance.iterdir()) == []


# --- an unreachable Redis --------------------------------------------------------------------

REDIS_COMMANDS = ["celery worker", "celery worker --detach", "celery beat", "admin-mit up", "admin-mit task status"]


def test_an_unreachable_redis_is_one_line_after_bounded_retries(env: dict[str, str], tmp_path: Path) -> None:
    """Worker and beat try 5 times (Celery alone would retry 100 times, then print a traceback);
    the interactive commands try once. Nothing keeps running."""
    port = free_port()
    down = {**env, "ADMIN_MIT_REDIS__PORT": str(port), "ADMIN_MIT_REDIS__PASSWORD": "s3cret"}
    migrated = run("admin-mit db upgrade", env)
    assert migrated.returncode == 0, migrated.stderr

    results = run_all({command: (command, down) for command in REDIS_COMMANDS})

    for command, done in results.items():
        line = the_error_line(done, command)
        assert f"127.0.0.1:{port}" in line and "Connection refused" in line, (command, line)
        assert "s3cret" not in done.stdout + done.stderr
        if command.startswith("celery"):
            assert f"broker redis://:**@127.0.0.1:{port}/" in line, line
            assert "unreachable after 5 attempts" in line, line
        elif command == "admin-mit up":
            assert "unreachable: " in line, line  # one attempt
    assert instance_processes(tmp_path / "instance") == []
