"""Liveness and readiness for load balancers and orchestrators (no authentication)."""

from __future__ import annotations

import logging
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import text

from app.api import api_blueprint
from app.api.security import public
from app.core.redis_client import get_redis
from app.extensions import db

log = logging.getLogger(__name__)
blueprint = api_blueprint("health", "Liveness and readiness probes.", secured=False, prefix="")


class Health(BaseModel):
    status: str = Field(description="`ok`")


class Readiness(BaseModel):
    status: str = Field(description="`ok` when every check passes, else `unavailable`.")
    checks: dict[str, str] = Field(description="`ok`, or what went wrong, per dependency.")


@blueprint.get("/healthz", summary="The process is up", responses={200: Health})
@public
def healthz() -> Any:
    return {"status": "ok"}


def _check(name: str, probe: Any) -> str:
    try:
        probe()
        return "ok"
    except Exception as exc:  # any failure means "not ready"; the reason goes to the log and the body
        log.warning("readiness: %s unavailable: %s", name, exc)
        db.session.rollback()
        return f"unavailable: {type(exc).__name__}"


@blueprint.get("/readyz", summary="The database and Redis answer", responses={200: Readiness, 503: Readiness})
@public
def readyz() -> Any:
    checks = {
        "database": _check("database", lambda: db.session.execute(text("SELECT 1"))),
        "redis": _check("redis", lambda: get_redis().ping()),
    }
    ready = all(value == "ok" for value in checks.values())
    return {"status": "ok" if ready else "unavailable", "checks": checks}, 200 if ready else 503
