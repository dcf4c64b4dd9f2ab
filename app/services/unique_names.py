"""Names unique within a tenant: the database's constraint, turned into an error for a person."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError

from app.extensions import db
from app.services.errors import ConflictError


def commit_unique(a_thing: str, name: str) -> None:
    """Commit; a unique (tenant, name) violation rolls back, leaving nothing behind, and says
    ``<a thing> named '<name>' already exists in this tenant`` (``a_thing``: "an alert rule")."""
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise ConflictError(f"{a_thing} named {name!r} already exists in this tenant") from None
