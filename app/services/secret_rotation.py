"""Re-encrypt every stored secret with the newest key (``admin-mit secrets rotate``).

Every column of type ``EncryptedJSON`` in the metadata is covered, so a table added
later needs nothing here. Each table is rotated in one transaction, read in batches
by primary key. A value is written back only if it is still the token that was read
(compare-and-set), so a value another process changed meanwhile — already under the
newest key, since every process was restarted with it first — is never overwritten.
The tokens are rotated without being decoded, and nothing here logs a value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator

from sqlalchemy import Column, MetaData, Table, Text, and_, bindparam, select, tuple_, type_coerce
from sqlalchemy.engine import Connection

from app.core import secret_box
from app.core.secret_box import UndecryptableSecret
from app.extensions import db
from app.models.encrypted import EncryptedJSON

BATCH_SIZE = 500


class RotationFailed(Exception):
    """A value could not be re-encrypted; the tables before it were rotated (``done``), its own was not."""

    def __init__(self, message: str, done: list[tuple[str, int]]) -> None:
        super().__init__(message)
        self.done = done


@dataclass(frozen=True)
class EncryptedTable:
    table: Table
    columns: tuple[Column[Any], ...]


def encrypted_tables(metadata: MetaData) -> list[EncryptedTable]:
    """Tables (in dependency order) with the columns of each whose type is ``EncryptedJSON``."""
    found = []
    for table in metadata.sorted_tables:
        columns = tuple(column for column in table.columns if isinstance(column.type, EncryptedJSON))
        if columns:
            found.append(EncryptedTable(table, columns))
    return found


def rotate_all(metadata: MetaData | None = None, batch_size: int = BATCH_SIZE,
               progress: Callable[[str, int], None] | None = None) -> list[tuple[str, int]]:
    """Re-encrypt every encrypted value: ``[(table, values re-encrypted)]``, table by table.

    ``progress(table, count)`` is called as each table is committed. ``RotationFailed``
    names the table, column and row of a value no configured key opens.
    """
    done: list[tuple[str, int]] = []
    for entry in encrypted_tables(metadata if metadata is not None else db.metadata):
        try:
            with db.engine.begin() as connection:
                count = sum(_rotate_column(connection, entry.table, column, batch_size) for column in entry.columns)
        except _Unreadable as exc:
            raise RotationFailed(str(exc), done) from None
        done.append((entry.table.name, count))
        if progress is not None:
            progress(entry.table.name, count)
    return done


class _Unreadable(Exception):
    pass


def _rotate_column(connection: Connection, table: Table, column: Column[Any], batch_size: int) -> int:
    key = tuple(table.primary_key.columns)
    raw = type_coerce(column, Text())
    # The update compares and writes the raw text, so the column type does not encrypt it again.
    update = (table.update()
              .where(and_(*(part == bindparam(f"k_{part.name}") for part in key)), raw == bindparam("old", type_=Text()))
              .values({column.name: type_coerce(bindparam("new", type_=Text()), Text())}))
    count = 0
    for rows in _batches(connection, table, key, raw, batch_size):
        changes = []
        for row in rows:
            *ids, token = row
            try:
                rotated = secret_box.rotate(token)
            except UndecryptableSecret as exc:
                where = ", ".join(f"{part.name}={value}" for part, value in zip(key, ids))
                raise _Unreadable(f"{table.name}.{column.name} ({where}): {exc}") from None
            changes.append({**{f"k_{part.name}": value for part, value in zip(key, ids)}, "old": token, "new": rotated})
        if changes:
            count += connection.execute(update, changes).rowcount
    return count


def _batches(connection: Connection, table: Table, key: tuple[Column[Any], ...], raw: Any,
             batch_size: int) -> Iterator[list[tuple[Any, ...]]]:
    """The (primary key..., token) of every non-NULL value, ``batch_size`` rows at a time, in key order."""
    statement = select(*key, raw).where(raw.is_not(None)).order_by(*key).limit(batch_size)
    last: tuple[Any, ...] | None = None
    while True:
        page = statement
        if last is not None:
            page = statement.where(tuple_(*key) > tuple_(*last) if len(key) > 1 else key[0] > last[0])
        rows = [tuple(row) for row in connection.execute(page)]
        if not rows:
            return
        yield rows
        last = rows[-1][:-1]
