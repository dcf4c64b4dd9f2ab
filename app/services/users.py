"""Users and their role in each tenant.

A tenant admin sees and changes only the members of their own tenant; a user
of another tenant answers "not found", like a missing one. Usernames are
global (one login for every tenant a person belongs to).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from app.models import ROLES, ApiToken, AuthSession, Membership, Tenant, User
from app.services.errors import ConflictError, InvalidInputError, NotFoundError, PermissionDeniedError
from app.services.passwords import hash_password

# Usernames are stored lower-case; input may use either case.
USERNAME_REGEX = r"^[A-Za-z0-9][A-Za-z0-9._@-]{2,63}$"
USERNAME_PATTERN = re.compile(USERNAME_REGEX)


@dataclass(frozen=True)
class Member:
    """A user as seen from one tenant."""

    user: User
    membership: Membership

    @property
    def role(self) -> str:
        return self.membership.role


def role_rank(role: str) -> int:
    return ROLES.index(role)


def check_role(role: str) -> str:
    if role not in ROLES:
        raise InvalidInputError(f"must be one of {', '.join(ROLES)}", field="role")
    return role


def normalise_username(username: str) -> str:
    name = (username or "").strip().lower()
    if not USERNAME_PATTERN.match(name):
        raise InvalidInputError(
            "3 to 64 characters: letters, digits and . _ @ -, starting with a letter or digit", field="username"
        )
    return name


def create_user(username: str, password: str, *, platform_admin: bool = False) -> User:
    user = User(username=normalise_username(username), password_hash=hash_password(password),
                is_platform_admin=platform_admin)
    db.session.add(user)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        raise ConflictError(f"username {user.username!r} is taken") from None
    return user


def add_member(tenant_id: int, username: str, password: str, role: str) -> Member:
    """Create a user with a role in ``tenant_id`` (one transaction: both or neither)."""
    check_role(role)
    user = create_user(username, password)
    membership = Membership(user_id=user.id, tenant_id=tenant_id, role=role)
    db.session.add(membership)
    db.session.commit()
    return Member(user, membership)


def grant(tenant_id: int, user: User, role: str) -> Membership:
    """Give an existing user a role in a tenant (platform administration: the CLI)."""
    check_role(role)
    if db.session.get(Tenant, tenant_id) is None:
        raise NotFoundError(f"tenant {tenant_id} not found")
    membership = db.session.scalar(
        select(Membership).where(Membership.user_id == user.id, Membership.tenant_id == tenant_id)
    )
    if membership is None:
        membership = Membership(user_id=user.id, tenant_id=tenant_id, role=role)
        db.session.add(membership)
    else:
        membership.role = role
    db.session.commit()
    return membership


def list_members(tenant_id: int) -> list[Member]:
    rows = db.session.execute(
        select(User, Membership).join(Membership, Membership.user_id == User.id)
        .where(Membership.tenant_id == tenant_id).order_by(User.id)
    ).all()
    return [Member(user, membership) for user, membership in rows]


def get_member(tenant_id: int, user_id: int) -> Member:
    row = db.session.execute(
        select(User, Membership).join(Membership, Membership.user_id == User.id)
        .where(Membership.tenant_id == tenant_id, User.id == user_id)
    ).first()
    if row is None:
        raise NotFoundError(f"user {user_id} not found")
    return Member(*row)


def get_user_by_name(username: str) -> User:
    user = db.session.scalar(select(User).where(User.username == (username or "").strip().lower()))
    if user is None:
        raise NotFoundError(f"user {username!r} not found")
    return user


def update_member(tenant_id: int, user_id: int, *, role: str | None = None, password: str | None = None,
                  is_active: bool | None = None, by_platform_admin: bool = False) -> Member:
    """Change a member's role in this tenant, password or active flag.

    A new password or deactivation ends the user's sessions everywhere; a new
    role applies to the next request (roles are read on every request). The
    password and the active flag belong to the person, not to this tenant: a tenant
    admin may change them only for a user of no other tenant, or they could take over
    (or lock out) an account that has access elsewhere.
    """
    member = get_member(tenant_id, user_id)
    personal = password is not None or is_active is not None
    if personal and not by_platform_admin and _reaches_beyond(member.user, tenant_id):
        raise PermissionDeniedError(
            "this user also belongs to other tenants; only a platform administrator may change "
            "their password or active flag")
    if role is not None:
        member.membership.role = check_role(role)
    if password is not None:
        member.user.password_hash = hash_password(password)
    if is_active is not None:
        member.user.is_active = is_active
    if password is not None or is_active is False:
        revoke_sessions(user_id)
    db.session.commit()
    return member


def _reaches_beyond(user: User, tenant_id: int) -> bool:
    if user.is_platform_admin:
        return True
    return db.session.scalar(
        select(Membership.id).where(Membership.user_id == user.id, Membership.tenant_id != tenant_id).limit(1)
    ) is not None


def remove_member(tenant_id: int, user_id: int) -> None:
    """Take a user out of a tenant; a user left without any tenant is deleted."""
    member = get_member(tenant_id, user_id)
    revoke_sessions(user_id, tenant_id)
    db.session.execute(
        update(ApiToken).where(ApiToken.user_id == user_id, ApiToken.tenant_id == tenant_id,
                               ApiToken.revoked_at.is_(None)).values(revoked_at=datetime.now(timezone.utc))
    )
    db.session.delete(member.membership)
    db.session.flush()
    remaining = db.session.scalar(select(Membership.id).where(Membership.user_id == user_id).limit(1))
    if remaining is None and not member.user.is_platform_admin:
        db.session.delete(member.user)
    db.session.commit()


def change_password(user: User, new_password: str) -> None:
    user.password_hash = hash_password(new_password)
    revoke_sessions(user.id)
    db.session.commit()


def revoke_sessions(user_id: int, tenant_id: int | None = None) -> None:
    """Revoke the user's open sessions (in one tenant, or all); the caller commits."""
    query = update(AuthSession).where(AuthSession.user_id == user_id, AuthSession.revoked_at.is_(None))
    if tenant_id is not None:
        query = query.where(AuthSession.tenant_id == tenant_id)
    db.session.execute(query.values(revoked_at=datetime.now(timezone.utc)))
