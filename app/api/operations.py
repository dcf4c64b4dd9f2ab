"""Operations: workers, active and scheduled tasks, queue lengths, purge.

The functions of ``app/celery_utils.py`` over HTTP. Workers, queues and purge are
platform-wide, so only a platform administrator sees them; tenant admins see the
active and scheduled tasks of their own tenant.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from app.api import api_blueprint
from app.api.security import platform_admin, role
from app.api.tasks import visible_tenant
from app.celery_app import QUEUES
from app.celery_utils import get_worker_stats, purge_queue
from app.services import operations

blueprint = api_blueprint("operations", "Workers, queues and running tasks.")

QueueName = Literal[QUEUES]  # type: ignore[valid-type]


class WorkerOut(BaseModel):
    name: str
    max_concurrency: int | None
    pool: str | None
    processes: list[int]
    active_tasks: int = Field(description="Tasks running now: the worker's load against max_concurrency.")
    processed: int
    pid: int | None
    uptime: int | None
    prefetch_count: int | None


class WorkersOut(BaseModel):
    total_workers: int
    workers: list[WorkerOut]


class TaskEntry(BaseModel):
    worker: str
    task_id: str | None
    task_name: str | None
    args: Any = None
    kwargs: Any = None


class ActiveTask(TaskEntry):
    time_start: float | None
    queue: str | None


class ScheduledTask(TaskEntry):
    eta: str | None
    priority: int | None


class ActiveList(BaseModel):
    items: list[ActiveTask]


class ScheduledList(BaseModel):
    items: list[ScheduledTask]


class BucketOut(BaseModel):
    priority: int = Field(description="The user priority this Redis bucket stands for (0-10, larger sooner).")
    levels: list[int] = Field(description="Every user priority published into the bucket (0 and 1 share one).")
    waiting: int


class QueueOut(BaseModel):
    queue: str
    waiting: int = Field(description="Messages in the queue, not yet delivered to a worker.")
    unacked: int = Field(description="Delivered to a worker and not yet acknowledged (running or reserved).")
    by_priority: list[BucketOut]


class QueueList(BaseModel):
    items: list[QueueOut]


class PurgePath(BaseModel):
    queue: Literal[(*QUEUES, "all")]  # type: ignore[valid-type]


class PurgeOut(BaseModel):
    success: bool
    queues: dict[str, int] = Field(description="Messages discarded per queue.")
    purged: int


@blueprint.get("/ops/workers", summary="Workers with their concurrency and load", responses={200: WorkersOut})
@platform_admin
def workers() -> Any:
    return WorkersOut.model_validate(get_worker_stats()).model_dump()


@blueprint.get("/ops/tasks/active", summary="Tasks running now (tenant admins: their tenant's)",
               responses={200: ActiveList})
@role("admin", platform=True)
def active() -> Any:
    return ActiveList(items=operations.active_tasks(visible_tenant())).model_dump(mode="json")


@blueprint.get("/ops/tasks/scheduled", summary="Tasks held by workers for later (ETA, retries)",
               responses={200: ScheduledList})
@role("admin", platform=True)
def scheduled() -> Any:
    return ScheduledList(items=operations.scheduled_tasks(visible_tenant())).model_dump(mode="json")


@blueprint.get("/ops/queues", summary="Messages per queue and priority", responses={200: QueueList})
@platform_admin
def queues() -> Any:
    return QueueList(items=operations.queue_lengths()).model_dump()


@blueprint.post("/ops/queues/<queue>/purge", summary="Discard the waiting messages of a queue (or `all`)",
                responses={200: PurgeOut})
@platform_admin
def purge(path: PurgePath) -> Any:
    return PurgeOut.model_validate(purge_queue(None if path.queue == "all" else path.queue)).model_dump()
