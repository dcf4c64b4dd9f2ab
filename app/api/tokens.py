"""API tokens for scripts: the secret is in the creation response only."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.api import NOT_FOUND, api_blueprint
from app.api.schemas import Name, Out, RowId, dump
from app.api.security import current_principal, role
from app.models import ROLES
from app.services import api_tokens

blueprint = api_blueprint("tokens", "API tokens: created by any member, with a role up to their own.")


class TokenPath(BaseModel):
    token_id: RowId


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    role: Literal[ROLES] | None = Field(None, description="Default: the caller's role.")  # type: ignore[valid-type]
    expires_in_days: int | None = Field(None, ge=1, le=3650, strict=True, description="Default: never expires.")


class TokenOut(Out):
    id: int
    name: str
    role: str
    prefix: str = Field(description="The first characters of the token, to recognise it.")
    user_id: int
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


class TokenCreated(TokenOut):
    token: str = Field(description="The token itself. Shown only in this response; store it now.")


class TokenList(BaseModel):
    items: list[TokenOut]


@blueprint.get("/tokens", summary="List API tokens (admins: all of the tenant's; others: their own)",
               responses={200: TokenList})
@role("viewer")
def list_tokens() -> Any:
    return {"items": [dump(TokenOut, t) for t in api_tokens.list_tokens(current_principal())]}


@blueprint.post("/tokens", summary="Create an API token", responses={201: TokenCreated})
@role("viewer")
def create_token(body: TokenCreate) -> Any:
    token, secret = api_tokens.create_token(current_principal(), body.name, body.role, body.expires_in_days)
    return {**dump(TokenOut, token), "token": secret}, 201


@blueprint.delete("/tokens/<int:token_id>", summary="Revoke an API token", responses={204: None, **NOT_FOUND})
@role("viewer")
def revoke_token(path: TokenPath) -> Any:
    api_tokens.revoke_token(current_principal(), path.token_id)
    return "", 204
