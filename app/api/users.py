"""Members of the caller's tenant and their roles (tenant admins)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.api import CONFLICT, NOT_FOUND, api_blueprint
from app.api.schemas import RowId
from app.api.security import current_principal, is_platform_session, role, tenant_id
from app.models import ROLES
from app.services import users
from app.services.errors import InvalidInputError
from app.services.passwords import PASSWORD_MAX_LENGTH, PASSWORD_MIN_LENGTH

blueprint = api_blueprint("users", "Users of the caller's tenant and their roles (admin role).")

Role = Literal[ROLES]  # type: ignore[valid-type]


class UserPath(BaseModel):
    user_id: RowId


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(pattern=users.USERNAME_REGEX,
                          description="3-64 letters, digits and . _ @ -; stored lower-case.")
    password: str = Field(min_length=PASSWORD_MIN_LENGTH, max_length=PASSWORD_MAX_LENGTH)
    role: Role = "viewer"


class UserUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Role = None  # type: ignore[assignment]  (omitted: unchanged; null is not a role)
    password: str = Field(None, min_length=PASSWORD_MIN_LENGTH, max_length=PASSWORD_MAX_LENGTH,
                          description="A new password; ends the user's sessions.")
    is_active: bool = None  # type: ignore[assignment]


class UserOut(BaseModel):
    id: int
    username: str
    role: str
    is_active: bool
    created_at: datetime


class UserList(BaseModel):
    items: list[UserOut]


def _out(member: users.Member) -> dict[str, Any]:
    user = member.user
    return UserOut(id=user.id, username=user.username, role=member.role, is_active=user.is_active,
                   created_at=user.created_at).model_dump(mode="json")


def _not_self(user_id: int, what: str) -> None:
    if user_id == current_principal().user_id:
        raise InvalidInputError(f"you cannot {what} yourself; ask another admin", field="user_id")


@blueprint.get("/users", summary="List the tenant's users", responses={200: UserList})
@role("admin")
def list_users() -> Any:
    return {"items": [_out(m) for m in users.list_members(tenant_id())]}


@blueprint.post("/users", summary="Create a user in this tenant", responses={201: UserOut, **CONFLICT})
@role("admin")
def create_user(body: UserCreate) -> Any:
    return _out(users.add_member(tenant_id(), body.username, body.password, body.role)), 201


@blueprint.get("/users/<int:user_id>", summary="Get a user", responses={200: UserOut, **NOT_FOUND})
@role("admin")
def get_user(path: UserPath) -> Any:
    return _out(users.get_member(tenant_id(), path.user_id))


@blueprint.patch("/users/<int:user_id>", summary="Change a user's role, password or active flag",
                 responses={200: UserOut, **NOT_FOUND})
@role("admin")
def update_user(path: UserPath, body: UserUpdate) -> Any:
    if body.role is not None or body.is_active is False:
        _not_self(path.user_id, "demote or deactivate")
    member = users.update_member(tenant_id(), path.user_id, role=body.role, password=body.password,
                                 is_active=body.is_active,
                                 by_platform_admin=is_platform_session(current_principal()))
    return _out(member)


@blueprint.delete("/users/<int:user_id>", summary="Remove a user from this tenant",
                  responses={204: None, **NOT_FOUND})
@role("admin")
def delete_user(path: UserPath) -> Any:
    _not_self(path.user_id, "remove")
    users.remove_member(tenant_id(), path.user_id)
    return "", 204
