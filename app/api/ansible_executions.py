"""Executions of the caller's tenant: start a playbook run, follow its output live, cancel it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any, Literal

from flask import Response, request, stream_with_context
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from app.api import CONFLICT, NOT_FOUND, api_blueprint
from app.api.schemas import RowId
from app.api.security import current_principal, role, tenant_id
from app.extensions import db
from app.models import AnsibleExecution, AnsibleExecutionTemplate
from app.models.ansible import EXECUTION_STATUSES
from app.services import ansible_executions, execution_events
from app.services.ansible_templates import RunOptions
from app.services.tenant_rows import owned

blueprint = api_blueprint("ansible executions", "Playbook runs on the `ansible` queue: their status, per-host "
                                                "summary and output, stored in order and streamed live.")


class ExecutionCreate(RunOptions):
    model_config = ConfigDict(extra="forbid", strict=True)

    playbook_id: RowId
    inventory_id: RowId
    credential_ids: list[RowId] = Field(default_factory=list, max_length=10,
                                        description="At most one credential of each kind.")


class TemplatePath(BaseModel):
    template_id: RowId


class ExecutionPath(BaseModel):
    execution_id: RowId


class ExecutionQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal[EXECUTION_STATUSES] | None = None  # type: ignore[valid-type]
    template_id: RowId | None = None
    limit: int = Field(50, ge=1, le=500)
    cursor: RowId | None = Field(None, description="`next_cursor` of the previous page.")


class EventsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    after: int = Field(0, ge=0, le=2**31 - 1, description="Events with a greater seq, in order.")
    limit: int = Field(500, ge=1, le=execution_events.PAGE_SIZE)


class StreamQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    after: int | None = Field(None, ge=0, le=2**31 - 1, description="Resume after this seq (or send Last-Event-ID).")
    wait_seconds: int = Field(900, ge=1, le=3600, description="Close the stream after this long (the client "
                                                               "reconnects with the last id it got).")


class HostSummary(BaseModel):
    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0
    rescued: int = 0
    ignored: int = 0


class ExecutionOut(BaseModel):
    id: int
    status: Literal[EXECUTION_STATUSES]  # type: ignore[valid-type]
    reason: str | None = Field(description="Why it did not succeed, for a person.")
    rc: int | None = Field(description="ansible-playbook's exit status.")
    playbook_id: int | None
    playbook_name: str
    playbook_version_id: int | None = Field(description="The playbook content it ran.")
    inventory_id: int | None
    template_id: int | None
    credential_ids: list[int]
    options: dict[str, Any]
    hosts: dict[str, HostSummary] = Field(description="Per host, from the runner's stats.")
    event_count: int = Field(description="The seq of the last stored event.")
    task_id: str | None = Field(description="The Celery task that runs it.")
    worker: str | None
    created_by: int | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    cancel_requested_at: datetime | None


class ExecutionList(BaseModel):
    items: list[ExecutionOut]
    next_cursor: int | None


class EventOut(BaseModel):
    seq: int
    event: str = Field(description="The runner's event type, e.g. runner_on_ok, playbook_on_task_start.")
    created_at: datetime | None
    host: str | None
    play: str | None
    task: str | None
    stdout: str
    data: dict[str, Any]
    truncated: bool = Field(description="stdout or data was cut to ansible.max_event_bytes.")


class EventList(BaseModel):
    items: list[EventOut]
    next_after: int | None = Field(description="Pass as `after` for the next page; null when the run has ended "
                                                "and this page holds its last event.")


def _out(row: AnsibleExecution) -> dict[str, Any]:
    return ExecutionOut(
        id=row.id, status=row.status, reason=row.reason, rc=row.rc, playbook_id=row.playbook_id,
        playbook_name=row.playbook_name, playbook_version_id=row.playbook_version_id, inventory_id=row.inventory_id,
        template_id=row.template_id, credential_ids=row.credential_ids, options=row.options,
        hosts={host: HostSummary(**counts) for host, counts in (row.host_summary or {}).items()},
        event_count=row.event_count, task_id=row.task_id, worker=row.worker, created_by=row.created_by,
        created_at=row.created_at, started_at=row.started_at, finished_at=row.finished_at,
        cancel_requested_at=row.cancel_requested_at,
    ).model_dump(mode="json")


def _accepted(row: AnsibleExecution) -> Any:
    return _out(row), 202, {"Location": f"{request.script_root}/api/v1/ansible/executions/{row.id}"}


@blueprint.post("/ansible/executions", summary="Run a playbook (queued on `ansible`)",
                responses={202: ExecutionOut, **NOT_FOUND})
@role("operator")
def create_execution(body: ExecutionCreate) -> Any:
    options = RunOptions(**body.model_dump(exclude={"playbook_id", "inventory_id", "credential_ids"}))
    row = ansible_executions.create(tenant_id(), current_principal().user_id, body.playbook_id, body.inventory_id,
                                    list(body.credential_ids), options)
    return _accepted(row)


@blueprint.post("/ansible/templates/<int:template_id>/executions", summary="Run an execution template now",
                responses={202: ExecutionOut, **NOT_FOUND})
@role("operator")
def launch_template(path: TemplatePath) -> Any:
    template = owned(AnsibleExecutionTemplate, tenant_id(), path.template_id, "execution template")
    row = ansible_executions.create(tenant_id(), current_principal().user_id, template.playbook_id,
                                    template.inventory_id, list(template.credential_ids),
                                    RunOptions(**template.options), template_id=template.id)
    return _accepted(row)


@blueprint.get("/ansible/executions", summary="List executions, newest first", responses={200: ExecutionList})
@role("viewer")
def list_executions(query: ExecutionQuery) -> Any:
    statement = select(AnsibleExecution).where(AnsibleExecution.tenant_id == tenant_id())
    if query.status:
        statement = statement.where(AnsibleExecution.status == query.status)
    if query.template_id:
        statement = statement.where(AnsibleExecution.template_id == query.template_id)
    if query.cursor:
        statement = statement.where(AnsibleExecution.id < query.cursor)
    rows = list(db.session.scalars(statement.order_by(AnsibleExecution.id.desc()).limit(query.limit + 1)))
    page, more = rows[:query.limit], len(rows) > query.limit
    return {"items": [_out(row) for row in page], "next_cursor": page[-1].id if more else None}


@blueprint.get("/ansible/executions/<int:execution_id>", summary="Get an execution with its per-host summary",
               responses={200: ExecutionOut, **NOT_FOUND})
@role("viewer")
def get_execution(path: ExecutionPath) -> Any:
    return _out(owned(AnsibleExecution, tenant_id(), path.execution_id, "execution"))


@blueprint.post("/ansible/executions/<int:execution_id>/cancel",
                summary="Cancel: a pending execution at once, a running one within seconds (its output is kept)",
                responses={202: ExecutionOut, **NOT_FOUND, **CONFLICT})
@role("operator")
def cancel_execution(path: ExecutionPath) -> Any:
    return _out(ansible_executions.cancel(tenant_id(), path.execution_id)), 202


@blueprint.get("/ansible/executions/<int:execution_id>/events", summary="Page through an execution's events",
               responses={200: EventList, **NOT_FOUND})
@role("viewer")
def list_events(path: ExecutionPath, query: EventsQuery) -> Any:
    execution = owned(AnsibleExecution, tenant_id(), path.execution_id, "execution")
    rows = execution_events.page(execution.id, query.after, query.limit)
    items = [EventOut(**execution_events.event_fields(row)).model_dump(mode="json") for row in rows]
    last = rows[-1].seq if rows else query.after
    ended = execution.status not in ("pending", "running") and last >= execution.event_count
    return {"items": items, "next_after": None if ended else last}


@blueprint.get("/ansible/executions/<int:execution_id>/stream",
               summary="Follow an execution's events live (Server-Sent Events) from `after` to its end",
               description="Each event is an SSE message whose id is its seq and whose data is the event as "
                           "`/events` shows it; the run's end is an `end` event with its status. A client that "
                           "reconnects with `Last-Event-ID` (or `after`) misses nothing.",
               responses={200: None, **NOT_FOUND})
@role("viewer")
def stream_events(path: ExecutionPath, query: StreamQuery) -> Any:
    execution = owned(AnsibleExecution, tenant_id(), path.execution_id, "execution")
    after = query.after if query.after is not None else _last_event_id()
    deadline = time.monotonic() + query.wait_seconds
    db.session.rollback()
    return Response(stream_with_context(_sse(execution.id, after, deadline)), mimetype="text/event-stream",
                    headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _last_event_id() -> int:
    value = request.headers.get("Last-Event-ID", "")
    return int(value) if value.isdigit() and int(value) < 2**31 else 0


def _sse(execution_id: int, after: int, deadline: float) -> Iterator[str]:
    yield "retry: 2000\n\n"
    for item in execution_events.follow(execution_id, after, block_ms=2000, deadline=deadline):
        if item.status is not None:
            yield f"event: end\ndata: {json.dumps({'status': item.status, 'last_seq': item.seq})}\n\n"
            return
        if item.fields is None:
            yield ": waiting\n\n"
            continue
        yield f"id: {item.seq}\ndata: {json.dumps(item.fields, separators=(',', ':'))}\n\n"
