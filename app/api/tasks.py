"""Task status and revoke by id, in the shapes of ``app/celery_utils.py``.

Task ids are global in Celery; here a tenant sees only tasks that carry its
tenant id (another tenant's task answers 404, as a never-submitted id does).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.api import NOT_FOUND, api_blueprint
from app.api.schemas import TaskStatus
from app.api.security import current_principal, is_platform_session, role
from app.celery_utils import get_task_status, revoke_task
from app.services import operations
from app.services.errors import NotFoundError

blueprint = api_blueprint("tasks", "Celery tasks of the caller's tenant: status and revoke.")

TASK_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,155}$"


class TaskPath(BaseModel):
    task_id: str = Field(pattern=TASK_ID_PATTERN)


class RevokeQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    terminate: bool = Field(False, description="Also kill the task if it is running (SIGTERM).")


class RevokeOut(BaseModel):
    task_id: str
    success: bool
    revoked: bool
    terminated: bool


def visible_tenant() -> int | None:
    """The tenant whose tasks the caller sees; None for a platform administrator's login."""
    principal = current_principal()
    return None if is_platform_session(principal) else principal.tenant_id


@blueprint.get("/tasks/<task_id>", summary="A task's state and result", responses={200: TaskStatus, **NOT_FOUND})
@role("viewer", platform=True)
def get_task(path: TaskPath) -> Any:
    operations.require_visible(path.task_id, visible_tenant())
    return TaskStatus.model_validate(get_task_status(path.task_id)).model_dump(mode="json")


@blueprint.post("/tasks/<task_id>/revoke", summary="Revoke a task (terminate: also kill it if running)",
                responses={200: RevokeOut, **NOT_FOUND})
@role("operator", platform=True)
def revoke(path: TaskPath, query: RevokeQuery) -> Any:
    operations.require_visible(path.task_id, visible_tenant())
    result = revoke_task(path.task_id, terminate=query.terminate)
    if not result["success"]:
        raise NotFoundError(f"task {path.task_id} not found")
    return RevokeOut.model_validate(result).model_dump()
