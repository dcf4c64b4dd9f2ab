"""Refuse text containing NUL characters anywhere in a request, before any view sees it.

JSON allows ``\\u0000`` in strings, but PostgreSQL text cannot hold it: without this
check such a value would fail deep in the database as a server error instead of a
clear 422 naming the field.
"""

from __future__ import annotations

from typing import Any

from flask import request

from app.services.errors import InvalidInputError

NUL = "\x00"


def _find_nul(value: Any, path: str) -> str | None:
    if isinstance(value, str):
        return path if NUL in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if NUL in str(key):
                return where
            if found := _find_nul(item, where):
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            if found := _find_nul(item, f"{path}.{index}" if path else str(index)):
                return found
    return None


def reject_nul_characters() -> None:
    """``before_request`` of every API blueprint."""
    field = _find_nul(request.view_args or {}, "") or _find_nul(request.args.to_dict(flat=False), "")
    if field is None and request.is_json:
        field = _find_nul(request.get_json(silent=True), "")
    if field is not None:
        raise InvalidInputError("must not contain NUL characters", field=field or None)
