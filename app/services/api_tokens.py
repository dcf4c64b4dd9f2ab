"""API tokens for scripts: shown once at creation, stored as a SHA-256 digest, revocable.

A token acts in one tenant with its own role, capped at its creator's current
role there: demoting or removing the creator weakens or ends the token too.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta, timezone

from sqlalchemy import select

from app.extensions import db
from app.models import ApiToken, User
from app.services.auth import Principal, tenant_role
from app.services.errors import AuthenticationError, InvalidInputError, NotFoundError, PermissionDeniedError
from app.services.users import check_role, role_rank

TOKEN_PREFIX = "amt_"
# Writing last_used_at on every request would turn reads into writes; once a minute is enough.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def is_api_token(credential: str) -> bool:
    return credential.startswith(TOKEN_PREFIX)


def create_token(principal: Principal, name: str, role: str | None = None,
                 expires_in_days: int | None = None) -> tuple[ApiToken, str]:
    """Create a token in the caller's tenant; returns the row and the only copy of the secret."""
    if principal.tenant_id is None or principal.role is None:
        raise InvalidInputError("log in to a tenant to create a token for it", field="tenant_id")
    if principal.token_id is not None:
        # Otherwise a leaked token could mint replacements that outlive its revocation.
        raise PermissionDeniedError("an API token cannot create tokens; log in with a password")
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise InvalidInputError("must be 1 to 100 characters", field="name")
    role = check_role(role or principal.role)
    if role_rank(role) > role_rank(principal.role):
        raise PermissionDeniedError(f"a {principal.role} cannot create a token with role {role}")
    if expires_in_days is not None and not 1 <= expires_in_days <= 3650:
        raise InvalidInputError("must be between 1 and 3650", field="expires_in_days")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        tenant_id=principal.tenant_id, user_id=principal.user_id, name=name, role=role,
        prefix=secret[:12], token_hash=_digest(secret),
        expires_at=(datetime.now(timezone.utc) + timedelta(days=expires_in_days)) if expires_in_days else None,
    )
    db.session.add(token)
    db.session.commit()
    return token, secret


def list_tokens(principal: Principal) -> list[ApiToken]:
    """Tenant admins see every token of the tenant; other users their own."""
    query = select(ApiToken).where(ApiToken.tenant_id == principal.tenant_id).order_by(ApiToken.id)
    if principal.role != "admin":
        query = query.where(ApiToken.user_id == principal.user_id)
    return list(db.session.scalars(query))


def get_token(principal: Principal, token_id: int) -> ApiToken:
    token = db.session.get(ApiToken, token_id)
    visible = token is not None and token.tenant_id == principal.tenant_id and (
        principal.role == "admin" or token.user_id == principal.user_id
    )
    if not visible:
        raise NotFoundError(f"token {token_id} not found")
    return token  # type: ignore[return-value]


def revoke_token(principal: Principal, token_id: int) -> ApiToken:
    token = get_token(principal, token_id)
    if token.revoked_at is None:
        token.revoked_at = datetime.now(timezone.utc)
        db.session.commit()
    return token


def principal_from_api_token(secret: str) -> Principal:
    token = db.session.scalar(select(ApiToken).where(ApiToken.token_hash == _digest(secret)))
    now = datetime.now(timezone.utc)
    if token is None or token.revoked_at is not None:
        raise AuthenticationError("invalid or revoked API token")
    if token.expires_at is not None and token.expires_at <= now:
        raise AuthenticationError("API token expired")
    user = db.session.get(User, token.user_id)
    owner_role = tenant_role(user, token.tenant_id) if user and user.is_active else None
    if owner_role is None:
        raise AuthenticationError("the API token's owner no longer has access to its tenant")
    role = min(token.role, owner_role, key=role_rank)
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
        token.last_used_at = now
        db.session.commit()
    return Principal(user.id, user.username, token.tenant_id, role, is_platform_admin=False, token_id=token.id)
