"""A column type that keeps JSON values encrypted at rest.

The value is serialised with ``json.dumps`` and encrypted with the keyring of
``app.core.secret_box`` (Fernet: AES-128-CBC with an HMAC-SHA256, so a changed token
is refused, never decrypted into garbage). The database only ever holds the token;
reading the column gives back the decoded object. ``None`` stays SQL ``NULL``.

``admin-mit secrets rotate`` finds every column of this type through the metadata,
so a new table that uses it is covered by key rotation without further code.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Text
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from app.core import secret_box


def encode(value: Any) -> str | None:
    """The token a column of this type stores for ``value`` (``None`` for ``None``)."""
    if value is None:
        return None
    return secret_box.encrypt(json.dumps(value, separators=(",", ":"), ensure_ascii=False))


def decode(token: str | None) -> Any:
    """The value of a stored token; ``secret_box.UndecryptableSecret`` if no configured key opens it.

    For readers that select the raw text (``type_coerce(column, Text)``) so that one
    unreadable row fails on its own instead of failing the whole result.
    """
    if token is None:
        return None
    return json.loads(secret_box.decrypt(token))


class EncryptedJSON(TypeDecorator[Any]):
    """JSON-serialisable values stored as a Fernet token in a ``TEXT`` column."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        return encode(value)

    def process_result_value(self, value: str | None, dialect: Dialect) -> Any:
        return decode(value)
