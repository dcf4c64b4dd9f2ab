"""Where the benchmarks find the project and the services they use (the tests' variables)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make `app` and `tests` importable
    sys.path.insert(0, str(ROOT))

POSTGRES_SERVER_URL = os.environ.get(
    "ADMIN_MIT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_SERVER = os.environ.get("ADMIN_MIT_TEST_REDIS", "127.0.0.1:6379")


class BenchError(Exception):
    """The benchmark could not run (a process died, a service is missing, a request failed)."""


@contextmanager
def scratch_postgres() -> Iterator[str]:
    """The URL of a scratch PostgreSQL database on ``POSTGRES_SERVER_URL``'s server, dropped after."""
    from tests.postgres import PostgresUnavailable, scratch_database

    try:
        with scratch_database(POSTGRES_SERVER_URL, "admin_mit_bench") as url:
            yield url
    except PostgresUnavailable as exc:
        raise BenchError(str(exc)) from None


def point_app_at(redis_db: int, instance: str, database_url: str | None = None) -> None:
    """Point the application (read once, at import) and its children at the benchmark's Redis
    database, instance directory and, if given, database."""
    host, _, port = REDIS_SERVER.rpartition(":")
    os.environ.update({"ADMIN_MIT_REDIS__EMBEDDED": "false", "ADMIN_MIT_REDIS__HOST": host,
                       "ADMIN_MIT_REDIS__PORT": port, "ADMIN_MIT_REDIS__DB": str(redis_db),
                       "ADMIN_MIT_APP__INSTANCE_PATH": str(instance), "ADMIN_MIT_APP__LOG_LEVEL": "WARNING"})
    if database_url is not None:
        os.environ["ADMIN_MIT_DATABASE__URL"] = database_url
