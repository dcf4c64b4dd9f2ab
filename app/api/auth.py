"""Log in, refresh, log out, who am I, change my password."""

from __future__ import annotations

from typing import Any

from flask import request
from pydantic import BaseModel, ConfigDict, Field

from app.api import NOT_FOUND, api_blueprint
from app.api.errors import ErrorBody
from app.api.schemas import RowId
from app.api.security import authenticated, current_principal, public
from app.extensions import db
from app.models import Membership, User
from app.services import auth, users
from app.services.errors import InvalidInputError, PermissionDeniedError
from app.services.passwords import PASSWORD_MAX_LENGTH, PASSWORD_MIN_LENGTH, verify_password

blueprint = api_blueprint("auth", "Log in and out; access and refresh tokens (JWT).")


class LoginBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=PASSWORD_MAX_LENGTH)
    tenant_id: RowId | None = Field(None, description="Tenant to act in; optional if the user has exactly one.")


class RefreshBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refresh_token: str = Field(min_length=1, max_length=4096)


class SwitchBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tenant_id: RowId = Field(description="Another tenant the user is a member of.")


class PasswordBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    current_password: str = Field(min_length=1, max_length=PASSWORD_MAX_LENGTH)
    new_password: str = Field(min_length=PASSWORD_MIN_LENGTH, max_length=PASSWORD_MAX_LENGTH)


class TokenPairOut(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str = "bearer"
    expires_in: int = Field(description="Seconds the access token stays valid.")
    tenant_id: int | None
    role: str | None


class MembershipOut(BaseModel):
    tenant_id: int
    role: str


class MeOut(BaseModel):
    user_id: int
    username: str
    is_platform_admin: bool
    tenant_id: int | None
    role: str | None
    via: str = Field(description="`session` (a login) or `api_token`.")
    memberships: list[MembershipOut]


def _pair(tokens: auth.TokenPair) -> dict[str, Any]:
    return TokenPairOut(access_token=tokens.access_token, refresh_token=tokens.refresh_token,
                        expires_in=tokens.expires_in, tenant_id=tokens.tenant_id, role=tokens.role).model_dump()


@blueprint.post("/auth/login", summary="Log in", security=[],
                responses={200: TokenPairOut, **NOT_FOUND, 429: ErrorBody})
@public
def login(body: LoginBody) -> Any:
    """Check the password and return an access token and a refresh token.

    Repeated failures for one username or from one address answer 429 for a while.
    """
    return _pair(auth.login(body.username, body.password, body.tenant_id, request.remote_addr or "unknown"))


@blueprint.post("/auth/refresh", summary="Exchange a refresh token for a new pair", security=[],
                responses={200: TokenPairOut})
@public
def refresh(body: RefreshBody) -> Any:
    return _pair(auth.refresh(body.refresh_token))


@blueprint.post("/auth/switch", summary="Switch tenant: end this session, open one in another tenant",
                responses={200: TokenPairOut, **NOT_FOUND})
@authenticated
def switch(body: SwitchBody) -> Any:
    """A new token pair for another tenant of the caller, without the password; the current
    session ends. An unknown tenant and one the user is not a member of are the same 404;
    an API token cannot switch (403)."""
    return _pair(auth.switch_tenant(current_principal(), body.tenant_id))


@blueprint.post("/auth/logout", summary="End this login's session", responses={204: None})
@authenticated
def logout() -> Any:
    auth.logout(current_principal())
    return "", 204


@blueprint.get("/auth/me", summary="The caller: user, tenant, role", responses={200: MeOut})
@authenticated
def me() -> Any:
    principal = current_principal()
    memberships = db.session.query(Membership).filter_by(user_id=principal.user_id).order_by(Membership.tenant_id)
    return MeOut(
        user_id=principal.user_id, username=principal.username, is_platform_admin=principal.is_platform_admin,
        tenant_id=principal.tenant_id, role=principal.role,
        via="api_token" if principal.token_id else "session",
        memberships=[MembershipOut(tenant_id=m.tenant_id, role=m.role) for m in memberships],
    ).model_dump()


@blueprint.post("/auth/password", summary="Change my password (ends all my sessions)",
                responses={204: None})
@authenticated
def change_password(body: PasswordBody) -> Any:
    principal = current_principal()
    if principal.token_id is not None:
        raise PermissionDeniedError("log in with your password to change it")
    user = db.session.get(User, principal.user_id)
    if user is None or not verify_password(user.password_hash, body.current_password):
        raise InvalidInputError("is wrong", field="current_password")
    users.change_password(user, body.new_password)
    return "", 204
