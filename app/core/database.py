"""Engine options per database kind."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine


def engine_options(url: str, pool_size: int, echo: bool) -> dict[str, Any]:
    if url.startswith("sqlite"):
        # Worker, beat and CLI are separate processes writing one file: wait for
        # the lock instead of failing with "database is locked".
        return {"connect_args": {"timeout": 30, "check_same_thread": False}, "echo": echo}
    return {"pool_size": pool_size, "max_overflow": pool_size, "pool_pre_ping": True, "echo": echo}


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    if type(dbapi_connection).__module__.startswith("sqlite3"):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()
