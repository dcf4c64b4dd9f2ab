"""Errors a caller can show to a user as they are: each message is one line."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticCustomError

from app.probes.registry import PROTOCOLS

M = TypeVar("M", bound=BaseModel)


class ServiceError(Exception):
    """Base class; ``code`` is a stable machine-readable name."""

    code = "error"


class NotFoundError(ServiceError):
    """A missing id, or one that belongs to another tenant: the two are indistinguishable."""

    code = "not_found"


class ConflictError(ServiceError):
    code = "conflict"


class InvalidInputError(ServiceError):
    code = "invalid_input"

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field


class AuthenticationError(ServiceError):
    """No valid credentials: a missing, expired, revoked or malformed token, or a wrong password."""

    code = "unauthenticated"


class PermissionDeniedError(ServiceError):
    """Valid credentials whose role does not allow the operation."""

    code = "forbidden"


class RateLimitedError(ServiceError):
    """Too many attempts; ``retry_after`` is the number of seconds to wait."""

    code = "rate_limited"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def describe_validation_error(error: Any) -> tuple[str | None, str]:
    """(field, message) of one pydantic error (an item of ``ValidationError.errors()``).

    A probe's ``spec`` is a union tagged by protocol; the tag pydantic adds to the location
    is not a field, so it is left out. A rule over several fields, checked after the fields themselves, names the field it
    blames in its context (``PydanticCustomError(..., {"field": ...})``), since its
    location is the whole model.
    """
    loc = error["loc"]
    if len(loc) > 1 and loc[0] == "spec" and loc[1] in PROTOCOLS:  # the spec union's tag, not a field
        loc = (loc[0], *loc[2:])
    field = ".".join(str(part) for part in loc) or (error.get("ctx") or {}).get("field")
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown field"
    return field, message


def validated(model: type[M], data: dict[str, Any]) -> M:
    """``model(**data)``, or one ``InvalidInputError`` naming the first field at fault."""
    try:
        return model(**data)
    except ValidationError as exc:
        field, message = describe_validation_error(exc.errors(include_url=False)[0])
        raise InvalidInputError(message, field=field) from None


def broken_rule(kind: str, field: str, message: str) -> PydanticCustomError:
    """The error a model validator over several fields raises, blaming ``field``."""
    return PydanticCustomError(kind, "{message}", {"field": field, "message": message})
