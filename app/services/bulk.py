"""Multi-row statements that PostgreSQL and SQLite both run, with one spelling for callers."""

from __future__ import annotations

from typing import Any, Sequence

from sqlalchemy import Row, Table
from sqlalchemy.sql.elements import ColumnElement

from app.extensions import db


def _dialect_insert(table: Table) -> Any:
    dialect = db.session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # pragma: no cover - only PostgreSQL and SQLite are supported
        raise RuntimeError(f"unsupported database {dialect}")
    return insert(table)


def insert_new(table: Table, rows: list[dict[str, Any]], unique: Sequence[str],
               returning: Sequence[ColumnElement[Any]] = ()) -> list[Row[Any]]:
    """Insert ``rows``, skipping those whose ``unique`` columns match a stored row.

    Returns the ``returning`` columns of the rows actually inserted (an empty list when
    nothing is asked back). Runs in the caller's transaction.
    """
    if not rows:
        return []
    statement = _dialect_insert(table).on_conflict_do_nothing(index_elements=list(unique))
    if returning:
        return list(db.session.execute(statement.returning(*returning), rows).all())
    db.session.execute(statement, rows)
    return []
