"""A tenant's row by id: one lookup that treats another tenant's row as missing."""

from __future__ import annotations

from typing import Any

from app.extensions import db
from app.services.errors import NotFoundError


def owned(model: type[Any], tenant_id: int, item_id: int | None, what: str) -> Any:
    """The ``model`` row ``item_id`` of ``tenant_id`` (None for None), or ``<what> <id> not found``."""
    if item_id is None:
        return None
    item = db.session.get(model, item_id)
    if item is None or item.tenant_id != tenant_id:
        raise NotFoundError(f"{what} {item_id} not found")
    return item
