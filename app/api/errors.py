"""One JSON error shape for every failure the API can answer with.

``{"code": "...", "message": "...", "details": [{"field": "...", "message": "..."}]}``
with the status that fits: service errors map by class, HTTP errors (404 for an
unknown path, 405, 415 …) keep their status, request validation answers 422 (400
when the body is not JSON at all), a database or Redis outage 503, anything else
500 with the traceback in the server log only.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify, request
from kombu.exceptions import OperationalError as BrokerUnavailable
from pydantic import BaseModel, Field, ValidationError
from redis.exceptions import RedisError
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException

from app.services.errors import (
    AuthenticationError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    ServiceError,
    describe_validation_error,
)

log = logging.getLogger(__name__)

STATUS_BY_ERROR: dict[type[ServiceError], int] = {
    InvalidInputError: 422,
    NotFoundError: 404,
    ConflictError: 409,
    AuthenticationError: 401,
    PermissionDeniedError: 403,
    RateLimitedError: 429,
}


class ErrorDetail(BaseModel):
    field: str | None = Field(None, description="The request field at fault, dotted (`conditions.expected_status`).")
    message: str


class ErrorBody(BaseModel):
    """Every error response."""

    code: str = Field(description="Stable machine-readable name, e.g. `not_found`, `invalid_input`.")
    message: str = Field(description="One line for a human.")
    details: list[ErrorDetail] = Field(default_factory=list)


def error_response(status: int, code: str, message: str, details: list[dict[str, Any]] | None = None) -> Response:
    response = jsonify(ErrorBody(code=code, message=message, details=details or []).model_dump())
    response.status_code = status
    return response


def _service_error(exc: ServiceError) -> Response:
    status = next((code for cls, code in STATUS_BY_ERROR.items() if isinstance(exc, cls)), 400)
    field = getattr(exc, "field", None)
    message = str(exc)
    details = [{"field": field, "message": message.removeprefix(f"{field}: ")}] if field else []
    response = error_response(status, exc.code, message, details)
    if isinstance(exc, AuthenticationError):
        response.headers["WWW-Authenticate"] = "Bearer"
    if isinstance(exc, RateLimitedError):
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


def _http_error(exc: HTTPException) -> Response:
    code = (exc.name or "error").lower().replace(" ", "_")
    message = {404: "no such resource", 405: f"method {request.method} not allowed here"}.get(
        exc.code or 0, exc.description or exc.name or "error")
    response = error_response(exc.code or 500, code, message)
    if exc.code == 405 and exc.response is None:
        allowed = getattr(exc, "valid_methods", None)
        if allowed:
            response.headers["Allow"] = ", ".join(allowed)
    return response


def _unavailable(exc: Exception) -> Response:
    if isinstance(exc, OperationalError):
        what = "database"
    elif isinstance(exc, BrokerUnavailable):
        what = "broker"
    else:
        what = "Redis"
    log.error("%s unavailable while serving %s %s: %s", what, request.method, request.path, exc)
    return error_response(503, "unavailable", f"{what} unavailable; try again shortly")


def _unexpected(exc: Exception) -> Response:
    if isinstance(exc, HTTPException):
        return _http_error(exc)
    log.exception("unhandled error serving %s %s", request.method, request.path)
    return error_response(500, "internal_error", "internal error; the server log has the details")


def _body_problem(exc: ValidationError) -> Response | None:
    """A body that is missing, not JSON, or not an object fails before any field is looked at."""
    errors = exc.errors(include_url=False)
    if not errors or errors[0]["loc"] or errors[0]["type"] not in ("model_type", "dict_type"):
        return None
    if not request.get_data():
        return error_response(422, "invalid_input", "a JSON object is required as the request body")
    if not request.is_json:
        return error_response(415, "unsupported_media_type", "send the body as application/json")
    if request.get_json(silent=True) is None:
        return error_response(400, "bad_request", "the request body is not valid JSON")
    return error_response(422, "invalid_input", "the request body must be a JSON object")


def validation_error_response(exc: ValidationError) -> Response:
    """flask-openapi3's hook for request validation failures."""
    problem = _body_problem(exc)
    if problem is not None:
        return problem
    details = []
    for err in exc.errors(include_url=False):
        field, message = describe_validation_error(err)
        details.append({"field": field, "message": message})
    first = details[0]
    summary = f"{first['field']}: {first['message']}" if first["field"] else first["message"]
    return error_response(422, "invalid_input", summary, details)


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(ServiceError, _service_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(OperationalError, _unavailable)
    app.register_error_handler(RedisError, _unavailable)
    app.register_error_handler(BrokerUnavailable, _unavailable)
    app.register_error_handler(Exception, _unexpected)
