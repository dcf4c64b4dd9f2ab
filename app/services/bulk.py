"""Multi-row statements that PostgreSQL and SQLite both run, with one spelling for callers.

On PostgreSQL, rows and key lists travel as one array per column (``unnest``), so the
statement text is the same whatever the number of rows: SQLAlchemy compiles it once and
psycopg parses it once, and the values are sent in a few binary arrays. Spelled out as
``VALUES (…), (…)`` or ``IN ((…), (…))``, every batch size is a new statement of
thousands of placeholders that psycopg re-parses in Python, which cost more than the
rows themselves (``bench/README.md``). SQLite gets the plain forms.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

from sqlalchemy import Column, Row, Table, any_, bindparam, func, literal, select, text, tuple_
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.sql.elements import ColumnElement, TextClause

from app.extensions import db


def _postgres() -> bool:
    return db.session.get_bind().dialect.name == "postgresql"


def _dialect_insert(table: Table) -> Any:
    dialect = db.session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # pragma: no cover - only PostgreSQL and SQLite are supported
        raise RuntimeError(f"unsupported database {dialect}")
    return insert(table)


def _array(column: Column[Any], values: Sequence[Any]) -> ColumnElement[Any]:
    return literal(list(values), ARRAY(column.type))


def insert_new(table: Table, rows: list[dict[str, Any]], unique: Sequence[str],
               returning: Sequence[ColumnElement[Any]] = ()) -> list[Row[Any]]:
    """Insert ``rows``, skipping those whose ``unique`` columns match a stored row.

    Returns the ``returning`` columns of the rows actually inserted (an empty list when
    nothing is asked back). Runs in the caller's transaction.
    """
    if not rows:
        return []
    names = tuple(rows[0])
    if _postgres() and all(len(row) == len(names) for row in rows):
        statement = _unnest_insert(table, names, tuple(unique), tuple(column.name for column in returning))
        result = db.session.execute(statement, {name: [row[name] for row in rows] for name in names})
        return list(result.all()) if returning else []
    statement = _dialect_insert(table).on_conflict_do_nothing(index_elements=list(unique))
    if returning:
        return list(db.session.execute(statement.returning(*returning), rows).all())
    db.session.execute(statement, rows)
    return []


@functools.lru_cache(maxsize=64)
def _unnest_insert(table: Table, names: tuple[str, ...], unique: tuple[str, ...],
                   returning: tuple[str, ...]) -> TextClause:
    """``INSERT … SELECT * FROM unnest(:column_1, …) ON CONFLICT DO NOTHING``, one array per column.

    Text, not ``postgresql.insert``: SQLAlchemy does not cache the dialect's INSERT
    construct, and compiling it for every micro-batch costs more than the rows.
    """
    dialect = postgresql.dialect()
    columns = [table.c[name] for name in names]
    arrays = ", ".join(f"CAST(:{column.name} AS {column.type.compile(dialect)}[])" for column in columns)
    sql = (f"INSERT INTO {table.name} ({', '.join(names)}) SELECT * FROM unnest({arrays}) "
           f"ON CONFLICT ({', '.join(unique)}) DO NOTHING")
    if returning:
        sql += f" RETURNING {', '.join(returning)}"
    statement = text(sql).bindparams(*(bindparam(column.name, type_=ARRAY(column.type)) for column in columns))
    return statement.columns(*(table.c[name] for name in returning)) if returning else statement


def keys_in(columns: Sequence[Column[Any]], keys: Sequence[tuple[Any, ...]]) -> ColumnElement[bool]:
    """``(columns) IN keys``, for a list of composite keys (not empty)."""
    if _postgres():
        arrays = [_array(column, values) for column, values in zip(columns, zip(*keys), strict=True)]
        return tuple_(*columns).in_(select(*(func.unnest(array) for array in arrays)))
    return tuple_(*columns).in_(list(keys))


def ids_in(column: Column[Any], ids: Sequence[Any]) -> ColumnElement[bool]:
    """``column IN ids``: ``= ANY(array)`` on PostgreSQL."""
    if _postgres():
        return column == any_(_array(column, ids))
    return column.in_(list(ids))
