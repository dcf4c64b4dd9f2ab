"""Response and query models shared by several resources."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from app.models.base import MAX_ID

RowId = Annotated[int, Field(ge=1, le=MAX_ID)]
# A name: 1-100 characters, not all blank (surrounding blanks are dropped).
Name = Annotated[str, Field(min_length=1, max_length=100, pattern=r"\S")]


_NUMBER = re.compile(r"[+-]?[0-9]+(\.[0-9]*)?([eE][+-]?[0-9]+)?")


def _iso_only(value: Any) -> Any:
    """The document says ISO 8601; pydantic alone would also read a bare number as a Unix time."""
    if isinstance(value, (int, float)) or (isinstance(value, str) and _NUMBER.fullmatch(value.strip())):
        raise ValueError("expected an ISO 8601 time, e.g. 2026-12-01T08:00:00Z")
    return value


def _aware(value: datetime) -> datetime:
    """A time without a zone is read as UTC."""
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


# A time in a query: ISO 8601 only, UTC when no zone is given.
IsoTime = Annotated[datetime, BeforeValidator(_iso_only), AfterValidator(_aware)]


class Out(BaseModel):
    """Base of response models built from ORM rows."""

    model_config = ConfigDict(from_attributes=True)


class PageQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    page: int = Field(1, ge=1, le=1_000_000, description="1-based page number.")
    per_page: int = Field(50, ge=1, le=500)


class PageMeta(BaseModel):
    page: int
    per_page: int
    total: int


class TaskAccepted(BaseModel):
    """A task sent to the queue: poll ``status_url`` for its state and result."""

    task_id: str
    status_url: str
    probe_ids: list[int]
    priority: int | None


class TaskStatus(BaseModel):
    """``app.celery_utils.get_task_status`` over HTTP."""

    task_id: str
    state: str = Field(description="PENDING, STARTED, RETRY, SUCCESS, FAILURE or REVOKED.")
    ready: bool
    successful: bool
    result: Any = None
    exists: bool


def dump(model: type[BaseModel], obj: Any) -> dict[str, Any]:
    return model.model_validate(obj).model_dump(mode="json")
