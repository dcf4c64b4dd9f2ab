"""Scratch PostgreSQL databases, for the test session and the benchmark."""

from __future__ import annotations

import uuid
from contextlib import contextmanager
from typing import Iterator

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url


class PostgresUnavailable(Exception):
    """No database could be created on the server (not running, no permission)."""


@contextmanager
def scratch_database(server_url: str, prefix: str) -> Iterator[str]:
    """Create ``<prefix>_<random>`` on the server of ``server_url``, yield its URL, drop it after.

    The drop uses ``WITH (FORCE)``, so connections a test or benchmark left open do not keep it.
    """
    server = make_url(server_url)
    engine = create_engine(server, isolation_level="AUTOCOMMIT")
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    try:
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        engine.dispose()
        raise PostgresUnavailable(f"cannot create a database on {server.render_as_string()}: {exc}") from None
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()
