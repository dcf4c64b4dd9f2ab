"""Multi-row statements that PostgreSQL and SQLite both run, with one spelling for callers.

The statement text never depends on the number of rows, so SQLAlchemy compiles it once
and psycopg parses it once. Spelled out as ``VALUES (…), (…)`` or ``IN ((…), (…))``,
every batch size is a new statement of thousands of placeholders that psycopg re-parses
in Python, which cost more than the rows themselves. On PostgreSQL, rows to insert travel
as one JSON array (``json_populate_recordset``) and integer key lists as the text of an
array literal, each one string parameter: psycopg dumps a list parameter element by
element in Python, ``json.dumps`` and ``str.join`` are C. SQLite gets the plain forms.

The statements the worker runs for every batch are built once per dialect
(``per_dialect``) with their key lists as parameters (``KeyList``): building, caching
and ORM-executing a statement with its values inside cost several times the database
round trip (``bench/run_bookkeeping.py`` measures it).
"""

from __future__ import annotations

import functools
import json
from datetime import datetime
from typing import Any, Callable, Sequence, TypeVar

from sqlalchemy import Column, Row, String, Table, any_, bindparam, cast, func, select, text, tuple_
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.sql.elements import ColumnElement, TextClause

from app.extensions import db

T = TypeVar("T")


def dialect_name() -> str:
    """The dialect of the session's database: ``postgresql`` or ``sqlite``."""
    return db.session.get_bind().dialect.name


def _postgres() -> bool:
    return dialect_name() == "postgresql"


def per_dialect(build: Callable[[str], T]) -> Callable[[], T]:
    """``build(dialect name)`` once per dialect; the returned function gives the session's."""
    built = functools.cache(build)
    return lambda: built(dialect_name())


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
    names = tuple(rows[0])
    recordset = _as_recordset(rows) if _postgres() and all(len(row) == len(names) for row in rows) else None
    if recordset is not None:
        statement = _recordset_insert(table, names, tuple(unique), tuple(column.name for column in returning))
        result = db.session.execute(statement, {"rows": recordset})
        return list(result.all()) if returning else []
    statement = _dialect_insert(table).on_conflict_do_nothing(index_elements=list(unique))
    if returning:
        return list(db.session.execute(statement.returning(*returning), rows).all())
    db.session.execute(statement, rows)
    return []


def _as_recordset(rows: list[dict[str, Any]]) -> str | None:
    """The rows as one JSON array; None if a value has no JSON form (a NaN or infinite float),
    for the plain statement to carry instead."""
    try:
        return json.dumps(rows, default=_json_value, allow_nan=False, separators=(",", ":"))
    except ValueError:
        return None


def _json_value(value: Any) -> str:
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.isoformat()
    raise ValueError(f"{type(value).__name__} is not a column value")


@functools.lru_cache(maxsize=64)
def _recordset_insert(table: Table, names: tuple[str, ...], unique: tuple[str, ...],
                      returning: tuple[str, ...]) -> TextClause:
    """``INSERT … SELECT … FROM json_populate_recordset(…) ON CONFLICT DO NOTHING``: the rows as one JSON array.

    Text, not ``postgresql.insert``: SQLAlchemy does not cache the dialect's INSERT
    construct, and compiling it for every micro-batch costs more than the rows. JSON,
    not an array per column: psycopg dumps list parameters element by element in Python,
    ``json.dumps`` is C, and PostgreSQL converts each field to its column's type.
    """
    columns = ", ".join(names)
    sql = (f"INSERT INTO {table.name} ({columns}) SELECT {columns} "
           f"FROM json_populate_recordset(NULL::{table.name}, CAST(:rows AS json)) "
           f"ON CONFLICT ({', '.join(unique)}) DO NOTHING")
    if returning:
        sql += f" RETURNING {', '.join(returning)}"
    statement = text(sql).bindparams(bindparam("rows", type_=String))
    return statement.columns(*(table.c[name] for name in returning)) if returning else statement


class KeyList:
    """``(columns) IN <a list of integer keys>`` as parameters of a statement built once.

    ``condition(dialect)`` goes into the statement; ``bind(dialect, keys)`` gives the
    parameters for one execution. PostgreSQL: one array per column, each sent as the text
    of an array literal (integers only, so nothing needs quoting); SQLite: an expanding
    ``IN`` of row values.
    """

    def __init__(self, name: str, *columns: Column[Any]) -> None:
        self.name = name
        self.columns = columns

    def _names(self) -> list[str]:
        return [f"{self.name}_{index}" for index in range(len(self.columns))]

    def condition(self, dialect: str) -> ColumnElement[bool]:
        if dialect == "postgresql":
            arrays = [cast(bindparam(name, type_=String), ARRAY(column.type))
                      for name, column in zip(self._names(), self.columns)]
            if len(arrays) == 1:
                return self.columns[0] == any_(arrays[0])
            return tuple_(*self.columns).in_(select(*(func.unnest(array) for array in arrays)))
        if len(self.columns) == 1:
            return self.columns[0].in_(bindparam(self.name, expanding=True))
        return tuple_(*self.columns).in_(bindparam(self.name, expanding=True))

    def bind(self, dialect: str, keys: Sequence[Any]) -> dict[str, Any]:
        """Parameters for ``keys``: tuples of ints (one per column), or ints for a single column."""
        if dialect == "postgresql":
            columns = [keys] if len(self.columns) == 1 else list(zip(*keys, strict=True)) or [()] * len(self.columns)
            return {name: "{" + ",".join(map(str, map(int, values))) + "}"
                    for name, values in zip(self._names(), columns)}
        return {self.name: [tuple(key) for key in keys] if len(self.columns) > 1 else list(keys)}
