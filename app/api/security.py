"""Who may call what: every API operation declares its access rule, checked before the
request is validated or the view runs.

- ``public``: no credentials (login, refresh, health).
- ``role("viewer" | "operator" | "admin")``: a caller logged in to a tenant with at
  least that role there; with ``platform=True`` a platform administrator's login
  passes too, tenant or not (operations that span tenants).
- ``platform_admin``: a platform administrator's login (never an API token).
- ``authenticated``: any valid credentials, tenant or not.

An operation without a rule is refused: forgetting one cannot open it up.
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

from flask import current_app, g, request

from app.services import api_tokens
from app.services.auth import Principal, principal_from_access_token
from app.services.errors import AuthenticationError, PermissionDeniedError
from app.services.users import role_rank

F = TypeVar("F", bound=Callable[..., Any])
ACCESS_ATTR = "_admin_mit_access"
BEARER = [{"bearerAuth": []}]
SECURITY_SCHEMES = {
    "bearerAuth": {
        "type": "http",
        "scheme": "bearer",
        "description": "An access token from POST /api/v1/auth/login, or an API token (amt_…).",
    }
}


def _rule(kind: str, role: str | None = None, platform: bool = False) -> Callable[[F], F]:
    def mark(func: F) -> F:
        setattr(func, ACCESS_ATTR, (kind, role, platform))
        return func

    return mark


def public(func: F) -> F:
    return _rule("public")(func)


def authenticated(func: F) -> F:
    return _rule("authenticated")(func)


def platform_admin(func: F) -> F:
    return _rule("platform_admin")(func)


def role(minimum: str, platform: bool = False) -> Callable[[F], F]:
    return _rule("role", minimum, platform)


def is_platform_session(principal: Principal) -> bool:
    """A platform administrator logged in with a password (API tokens never act platform-wide)."""
    return principal.is_platform_admin and principal.token_id is None


def current_principal() -> Principal:
    return g.principal  # type: ignore[no-any-return]


def tenant_id() -> int:
    """The caller's tenant (``role`` rules guarantee there is one)."""
    return current_principal().tenant_id  # type: ignore[return-value]


def _bearer() -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, credential = header.partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        raise AuthenticationError("missing credentials: send 'Authorization: Bearer <token>'")
    return credential.strip()


def _authenticate() -> Principal:
    credential = _bearer()
    if api_tokens.is_api_token(credential):
        return api_tokens.principal_from_api_token(credential)
    return principal_from_access_token(credential)


def enforce_access() -> None:
    """``before_request`` of every API blueprint."""
    view = current_app.view_functions.get(request.endpoint or "")
    kind, minimum, platform_ok = getattr(view, ACCESS_ATTR, ("missing", None, False))
    if kind == "public":
        return
    if kind == "missing":
        raise PermissionDeniedError("this operation has no access rule")
    principal = _authenticate()
    g.principal = principal
    if kind == "platform_admin" and not is_platform_session(principal):
        raise PermissionDeniedError("only a platform administrator may do this")
    if kind == "role" and not (platform_ok and is_platform_session(principal)):
        if principal.tenant_id is None or principal.role is None:
            raise PermissionDeniedError("no tenant selected: log in with a tenant_id")
        if role_rank(principal.role) < role_rank(minimum or "admin"):
            raise PermissionDeniedError(f"requires the {minimum} role; you are {principal.role}")
