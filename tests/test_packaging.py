"""An installed copy (``pip install .``, not editable) runs from any directory holding ``config/``.

The project is installed into a fresh virtualenv, offline: its dependencies come from
the test environment's site-packages through a ``.pth`` file, the wheel is built with
``--no-build-isolation``. Then ``admin-mit`` runs from a directory that holds only
``config/``: the migrations come from the installed package, the instance directory
and the SQLite file appear in that directory, and ``admin-mit up`` runs a probe end to
end and stops, leaving no process behind.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import sysconfig
import tomllib
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from app.core.config import PROJECT_ROOT
from tests.targets import LoopbackTargets
from tests.api import http_json
from tests.test_up import free_port, wait_until

pytestmark = pytest.mark.timeout(300)

# What a checkout holds besides the sources: never part of what `pip install .` reads.
NOT_SOURCES = shutil.ignore_patterns(".venv", ".git", "instance", "build", "*.egg-info", "__pycache__",
                                     ".pytest_cache", ".hypothesis", "htmlcov", ".coverage", "*.pyc")


def test_every_package_under_app_is_listed_for_installation() -> None:
    """pyproject.toml lists the packages (so migrations/ can be mapped into app/): none may be missing."""
    listed = set(tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
                 ["tool"]["setuptools"]["packages"])
    on_disk = {".".join(path.parent.relative_to(PROJECT_ROOT).parts)
               for path in (PROJECT_ROOT / "app").rglob("*.py") if "__pycache__" not in path.parts}

    assert on_disk - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"
    assert {"app.migrations", "app.migrations.versions"} <= listed


def _can_build_wheels() -> bool:
    try:
        from setuptools.command import bdist_wheel  # noqa: F401  (setuptools >= 70.1)
        return True
    except ImportError:
        return importlib.util.find_spec("wheel") is not None


def describe(pids: list[int]) -> str:
    """Command lines of ``pids``, for an assertion message."""
    lines = []
    for pid in pids:
        try:
            lines.append(f"{pid}: {Path(f'/proc/{pid}/cmdline').read_bytes().replace(bytes(1), b' ').decode()}")
        except OSError:
            lines.append(f"{pid}: (gone)")
    return "\n".join(lines)


def processes_in(directory: Path) -> list[int]:
    """Live processes whose working directory or command line lies in ``directory``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            state = (entry / "stat").read_text().rpartition(")")[2].split()[0]
            cwd = os.readlink(entry / "cwd")
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if state != "Z" and (cwd == str(directory) or cwd.startswith(f"{directory}/")
                             or str(directory).encode() in cmdline):
            found.append(int(entry.name))
    return found


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with the project installed from a copy of the sources; its bin/."""
    if not _can_build_wheels():
        message = "setuptools cannot build a wheel offline here: install 'wheel<0.46' (make test does)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    root = tmp_path_factory.mktemp("packaging")
    source = Path(shutil.copytree(PROJECT_ROOT, root / "src", ignore=NOT_SOURCES))
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    # The dependencies (and pip, setuptools) of the environment running the tests.
    Path(purelib, "test-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    done = subprocess.run([python, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                           "--ignore-installed", "--disable-pip-version-check", "--quiet", str(source)],
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    assert Path(purelib, "app", "migrations", "env.py").is_file()
    assert Path(purelib, "app", "migrations", "versions").is_dir()
    return venv / "bin"


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Path]:
    """A working directory holding only a copy of the shipped config/; whatever still runs there is killed."""
    shutil.copytree(PROJECT_ROOT / "config", tmp_path / "config")
    yield tmp_path
    for pid in processes_in(tmp_path):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def site_environ(port: int) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("ADMIN_MIT_")}
    env.pop("PYTHONPATH", None)
    env.update({"ADMIN_MIT_API__PORT": str(port), "ADMIN_MIT_API__WORKERS": "1"})
    return env


def test_the_installed_command_runs_from_a_directory_holding_config(installed: Path, site: Path,
                                                                   targets: LoopbackTargets) -> None:
    port = free_port()
    env = site_environ(port)

    def admin_mit(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([installed / "admin-mit", *args], cwd=site, env=env, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr
        return done

    where = subprocess.run([installed / "python", "-c", "import importlib.util as u\n"
                            "for name in ('app', 'celery_worker', 'wsgi'): print(u.find_spec(name).origin)"],
                           cwd=site, env=env, capture_output=True, text=True, timeout=60)
    assert where.returncode == 0, where.stderr
    for origin in where.stdout.split():  # the installed copy, not a checkout
        assert Path(origin).is_relative_to(installed.parent), origin

    admin_mit("db", "upgrade")  # the migrations come from the installed package
    admin_mit("tenant", "add", "acme")
    admin_mit("probe", "add", "--tenant", "acme", "--name", "home", "--protocol", "http",
              "--target", f"{targets.http_url}/ok", "--interval", "5", "--timeout", "2")
    assert "never run" in admin_mit("probe", "list").stdout
    instance = site / "instance"
    assert (instance / "admin-mit.db").is_file()  # relative paths: the working directory
    assert (left := processes_in(site)) == [], describe(left)  # probe list used Redis only while it ran

    with (site / "up.log").open("wb") as log:
        up = subprocess.Popen([installed / "admin-mit", "up", "--concurrency", "1"], cwd=site, env=env,
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def log_text() -> str:
        return (site / "up.log").read_text(errors="replace")

    def results() -> int:
        with sqlite3.connect(instance / "admin-mit.db") as conn:
            return int(conn.execute("SELECT count(*) FROM probe_results").fetchone()[0])

    def api_answers() -> bool:
        try:
            return http_json("GET", f"http://127.0.0.1:{port}/healthz")[0] == 200
        except OSError:
            return False

    try:
        wait_until(lambda: " ready." in log_text() and "beat: Starting..." in log_text() and api_answers(),
                   "worker, beat and API running", up, log_text)
        wait_until(lambda: results() >= 1, "a scheduled result", up, log_text)
        for path, marker in (("/", b'src="/console/js/main.js"'), ("/console/js/main.js", b"import")):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as page:  # the console ships too
                assert page.status == 200 and marker in page.read(), path
        os.killpg(up.pid, signal.SIGINT)
        assert up.wait(90) == 0, log_text()
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait()

    assert "Traceback" not in log_text()
    assert list(instance.glob("celerybeat-schedule*"))  # beat's state: the same instance directory
    assert (left := processes_in(site)) == [], describe(left)
