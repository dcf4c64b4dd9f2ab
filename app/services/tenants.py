from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from app.models import Tenant
from app.services import status_cache
from app.services.errors import ConflictError, InvalidInputError, NotFoundError


def create_tenant(name: str) -> Tenant:
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise InvalidInputError("must be 1 to 100 characters", field="name")
    tenant = Tenant(name=name)
    db.session.add(tenant)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise ConflictError(f"a tenant named {name!r} already exists") from None
    return tenant


def get_tenant(ref: int | str) -> Tenant:
    """A tenant by id, or by name when ``ref`` is not a number."""
    if isinstance(ref, int) or str(ref).isdigit():
        tenant = db.session.get(Tenant, int(ref))
    else:
        tenant = db.session.scalar(select(Tenant).where(Tenant.name == ref))
    if tenant is None:
        raise NotFoundError(f"tenant {ref} not found")
    return tenant


def list_tenants() -> list[Tenant]:
    return list(db.session.scalars(select(Tenant).order_by(Tenant.id)))


def delete_tenant(tenant_id: int) -> None:
    """Delete a tenant with everything in it (probes, results, users' memberships, tokens)."""
    tenant = get_tenant(tenant_id)
    db.session.delete(tenant)
    db.session.commit()
    status_cache.forget_tenant(tenant_id)
