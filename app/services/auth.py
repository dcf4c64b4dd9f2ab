"""Logins, sessions and the identity behind a request.

A login opens a session (a row) and returns two JWTs that name it: a short-lived
access token and a refresh token. Every request re-reads the session, the user and
their membership (one query), so logout, a removed member, a deactivated user or a
changed role take effect at once rather than when the access token expires.
Refresh tokens are rotated on every use; presenting one that was already rotated
away means it was copied, and revokes the whole session.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import jwt
from flask import current_app
from sqlalchemy import delete, or_, select, update

from app.core.config import active_settings
from app.extensions import db
from app.models import AuthSession, Membership, Tenant, User
from app.services import login_throttle
from app.services.errors import AuthenticationError, InvalidInputError, NotFoundError, PermissionDeniedError
from app.services.passwords import hash_password, needs_rehash, verify_password

ALGORITHM = "HS256"
REVOKED_SESSION_KEPT = timedelta(days=1)
ISSUER = "admin-mit"


@dataclass(frozen=True)
class Principal:
    """Who is calling, in which tenant, with which role (``None`` role: no tenant selected)."""

    user_id: int
    username: str
    tenant_id: int | None
    role: str | None
    is_platform_admin: bool
    session_id: str | None = None
    token_id: int | None = None


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    tenant_id: int | None
    role: str | None


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _encode(claims: dict[str, Any], lifetime: timedelta) -> str:
    issued = _now()
    payload = {**claims, "iss": ISSUER, "iat": issued, "exp": issued + lifetime}
    return jwt.encode(payload, current_app.config["SECRET_KEY"], algorithm=ALGORITHM)


def _decode(token: str, kind: str) -> dict[str, Any]:
    try:
        claims = jwt.decode(token, current_app.config["SECRET_KEY"], algorithms=[ALGORITHM], issuer=ISSUER,
                            options={"require": ["exp", "iat", "sub", "sid", "typ"]})
    except jwt.ExpiredSignatureError:
        raise AuthenticationError("token expired") from None
    except jwt.InvalidTokenError:
        raise AuthenticationError("invalid token") from None
    if claims.get("typ") != kind:
        raise AuthenticationError(f"not an {kind} token" if kind == "access" else f"not a {kind} token")
    return claims


def tenant_role(user: User, tenant_id: int | None) -> str | None:
    """The user's role in a tenant: a platform admin is admin of every tenant."""
    if tenant_id is None:
        return None
    if user.is_platform_admin:
        return "admin"
    membership = db.session.scalar(
        select(Membership).where(Membership.user_id == user.id, Membership.tenant_id == tenant_id)
    )
    return membership.role if membership else None


def _choose_tenant(user: User, tenant_id: int | None) -> int | None:
    if tenant_id is not None:
        if tenant_role(user, tenant_id) is None or db.session.get(Tenant, tenant_id) is None:
            # The same answer whether the tenant does not exist or the user is not in it.
            raise NotFoundError(f"tenant {tenant_id} not found")
        return tenant_id
    tenants = [m.tenant_id for m in user.memberships]
    if len(tenants) == 1:
        return tenants[0]
    if not tenants and user.is_platform_admin:
        return None
    if not tenants:
        raise AuthenticationError("this user belongs to no tenant")
    raise InvalidInputError(f"this user belongs to several tenants; choose one of {sorted(tenants)}",
                            field="tenant_id")


def _issue(session: AuthSession, user: User, role: str | None) -> TokenPair:
    settings = active_settings().api
    claims = {"sub": str(user.id), "sid": session.id, "tid": session.tenant_id}
    access_lifetime = timedelta(minutes=settings.access_token_minutes)
    return TokenPair(
        access_token=_encode({**claims, "typ": "access"}, access_lifetime),
        refresh_token=_encode({**claims, "typ": "refresh", "jti": session.refresh_jti},
                              session.expires_at - _now()),
        expires_in=int(access_lifetime.total_seconds()),
        tenant_id=session.tenant_id,
        role=role,
    )


def login(username: str, password: str, tenant_id: int | None, client: str) -> TokenPair:
    """Check the password and open a session; wrong credentials count towards the lockout."""
    login_throttle.check(username, client)
    user = db.session.scalar(select(User).where(User.username == (username or "").strip().lower()))
    if not verify_password(user.password_hash if user else None, password) or user is None or not user.is_active:
        login_throttle.record_failure(username, client)
        raise AuthenticationError("wrong username or password")
    login_throttle.clear(username)
    chosen = _choose_tenant(user, tenant_id)
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    session = AuthSession(
        id=secrets.token_hex(16), user_id=user.id, tenant_id=chosen, refresh_jti=secrets.token_hex(16),
        expires_at=_now() + timedelta(days=active_settings().api.refresh_token_days),
    )
    db.session.add(session)
    _prune_sessions(user.id)
    db.session.commit()
    return _issue(session, user, tenant_role(user, chosen))


def _prune_sessions(user_id: int) -> None:
    """Drop the user's sessions that can no longer be used, so each login does not leave a row
    behind for good. A revoked one is kept a day: a refresh with it still reads "revoked"."""
    now = _now()
    db.session.execute(delete(AuthSession).where(
        AuthSession.user_id == user_id,
        or_(AuthSession.expires_at <= now, AuthSession.revoked_at <= now - REVOKED_SESSION_KEPT),
    ))


def refresh(refresh_token: str) -> TokenPair:
    """Exchange a refresh token for a new pair; the old refresh token stops working."""
    claims = _decode(refresh_token, "refresh")
    session = db.session.get(AuthSession, claims["sid"])
    if session is None or session.revoked_at is not None or session.expires_at <= _now():
        raise AuthenticationError("session ended; log in again")
    user = db.session.get(User, session.user_id)
    role = tenant_role(user, session.tenant_id) if user else None
    if user is None or not user.is_active or (session.tenant_id is not None and role is None):
        raise AuthenticationError("session ended; log in again")
    # Compare-and-set, so of two concurrent uses of one refresh token only one wins.
    rotated = db.session.execute(
        update(AuthSession)
        .where(AuthSession.id == session.id, AuthSession.refresh_jti == claims.get("jti"),
               AuthSession.revoked_at.is_(None))
        .values(refresh_jti=secrets.token_hex(16))
        .execution_options(synchronize_session=False)
    ).rowcount
    if not rotated:
        db.session.execute(update(AuthSession).where(AuthSession.id == session.id).values(revoked_at=_now()))
        db.session.commit()
        raise AuthenticationError("refresh token already used; the session is revoked, log in again")
    db.session.commit()
    db.session.refresh(session)
    return _issue(session, user, role)


def switch_tenant(principal: Principal, tenant_id: int) -> TokenPair:
    """End the caller's session and open one in another of their tenants, without the password.

    The new session keeps the old one's expiry, so switching never makes a login last longer.
    """
    if principal.session_id is None:
        raise PermissionDeniedError("an API token is bound to its tenant; log in to switch tenant")
    user = db.session.get(User, principal.user_id)
    old = db.session.get(AuthSession, principal.session_id)
    if user is None or old is None:
        raise AuthenticationError("session ended; log in again")
    chosen = _choose_tenant(user, tenant_id)
    # Compare-and-set, so a session ended meanwhile (or switched twice at once) opens nothing.
    ended = db.session.execute(
        update(AuthSession).where(AuthSession.id == old.id, AuthSession.revoked_at.is_(None))
        .values(revoked_at=_now()).execution_options(synchronize_session=False)
    ).rowcount
    if not ended:
        db.session.rollback()
        raise AuthenticationError("session ended; log in again")
    session = AuthSession(id=secrets.token_hex(16), user_id=user.id, tenant_id=chosen,
                          refresh_jti=secrets.token_hex(16), expires_at=old.expires_at)
    db.session.add(session)
    db.session.commit()
    return _issue(session, user, tenant_role(user, chosen))


def logout(principal: Principal) -> None:
    if principal.session_id is None:
        raise InvalidInputError("an API token is revoked with DELETE /api/v1/tokens/{id}, not by logging out")
    session = db.session.get(AuthSession, principal.session_id)
    if session is not None and session.revoked_at is None:
        session.revoked_at = _now()
        db.session.commit()


def principal_from_access_token(token: str) -> Principal:
    claims = _decode(token, "access")
    row = db.session.execute(
        select(AuthSession, User).join(User, User.id == AuthSession.user_id).where(AuthSession.id == claims["sid"])
    ).first()
    if row is None:
        raise AuthenticationError("session ended; log in again")
    session, user = row
    if session.revoked_at is not None or session.expires_at <= _now() or not user.is_active:
        raise AuthenticationError("session ended; log in again")
    role = tenant_role(user, session.tenant_id)
    if session.tenant_id is not None and role is None:
        raise AuthenticationError("no longer a member of this tenant; log in again")
    return Principal(user.id, user.username, session.tenant_id, role, user.is_platform_admin, session_id=session.id)
