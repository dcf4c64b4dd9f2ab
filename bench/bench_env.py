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
