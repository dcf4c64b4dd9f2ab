"""Playbooks of the caller's tenant and their versions."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.api import CONFLICT, NOT_FOUND, api_blueprint
from app.api.ansible_hosts import AnsibleCursorQuery, optional_fields, page
from app.api.schemas import RowId
from app.api.security import role, tenant_id
from app.models import AnsiblePlaybook, AnsiblePlaybookVersion
from app.services import ansible_playbooks

blueprint = api_blueprint("ansible-playbooks", "Playbooks: YAML stored here (syntax-checked, each new content a "
                                               "new version) or a file of a project directory on the workers.")

PlaybookCreate = ansible_playbooks.PlaybookInput
PlaybookUpdate = optional_fields("PlaybookUpdate", ansible_playbooks.PlaybookInput,
                                 "Fields to change; new content is a new version, the same content none.")


class PlaybookPath(BaseModel):
    playbook_id: RowId


class PlaybookVersionPath(BaseModel):
    playbook_id: RowId
    version: RowId


class VersionQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(100, ge=1, le=500)
    cursor: RowId | None = Field(None, description="`next_cursor` of the previous page.")


class PlaybookSummary(BaseModel):
    id: int
    name: str
    description: str
    source: Literal["content", "project"]
    project_dir: str | None
    playbook_file: str | None
    current_version: int
    sha256: str = Field(description="Of the current version's content (project: of the file when saved).")
    created_at: datetime
    updated_at: datetime


class PlaybookOut(PlaybookSummary):
    content: str | None = Field(description="content: the current version's YAML; project: null.")


class PlaybookList(BaseModel):
    items: list[PlaybookSummary]
    next_cursor: int | None = Field(description="Pass as `cursor` for the next (older) page; null at the end.")


class VersionSummary(BaseModel):
    version: int
    sha256: str
    created_at: datetime


class VersionOut(VersionSummary):
    content: str | None = Field(description="The YAML of this version; null for a project playbook.")


class VersionList(BaseModel):
    items: list[VersionSummary]
    next_cursor: int | None = Field(description="Pass as `cursor` for the next (older) page; null at the end.")


def _fields(playbook: AnsiblePlaybook, version: AnsiblePlaybookVersion) -> dict[str, Any]:
    return {"id": playbook.id, "name": playbook.name, "description": playbook.description, "source": playbook.source,
            "project_dir": playbook.project_dir, "playbook_file": playbook.playbook_file,
            "current_version": playbook.current_version, "sha256": version.sha256,
            "created_at": playbook.created_at, "updated_at": playbook.updated_at}


def _out(playbook: AnsiblePlaybook) -> dict[str, Any]:
    version = ansible_playbooks.current_version(playbook)
    return PlaybookOut(**_fields(playbook, version), content=version.content).model_dump(mode="json")


@blueprint.get("/ansible/playbooks", summary="List playbooks, newest first", responses={200: PlaybookList})
@role("viewer")
def list_playbooks(query: AnsibleCursorQuery) -> Any:
    rows, cursor = page(ansible_playbooks.list_playbooks(tenant_id(), query.limit + 1, query.cursor), query.limit)
    versions = ansible_playbooks.current_versions(rows)
    items = [PlaybookSummary(**_fields(row, versions[row.id])).model_dump(mode="json") for row in rows]
    return {"items": items, "next_cursor": cursor}


@blueprint.post("/ansible/playbooks", summary="Create a playbook (syntax-checked)",
                responses={201: PlaybookOut, **CONFLICT})
@role("operator")
def create_playbook(body: PlaybookCreate) -> Any:
    return _out(ansible_playbooks.create_playbook(tenant_id(), body.model_dump(exclude_unset=True))), 201


@blueprint.get("/ansible/playbooks/<int:playbook_id>", summary="Get a playbook with its current content",
               responses={200: PlaybookOut, **NOT_FOUND})
@role("viewer")
def get_playbook(path: PlaybookPath) -> Any:
    return _out(ansible_playbooks.get_playbook(tenant_id(), path.playbook_id))


@blueprint.patch("/ansible/playbooks/<int:playbook_id>", summary="Change a playbook (new content: a new version)",
                 responses={200: PlaybookOut, **NOT_FOUND, **CONFLICT})
@role("operator")
def update_playbook(path: PlaybookPath, body: PlaybookUpdate) -> Any:  # type: ignore[valid-type]
    changes = body.model_dump(exclude_unset=True)  # type: ignore[attr-defined]
    return _out(ansible_playbooks.update_playbook(tenant_id(), path.playbook_id, changes))


@blueprint.delete("/ansible/playbooks/<int:playbook_id>",
                  summary="Delete a playbook and its versions (refused while an execution template uses it)",
                  responses={204: None, **NOT_FOUND, **CONFLICT})
@role("operator")
def delete_playbook(path: PlaybookPath) -> Any:
    ansible_playbooks.delete_playbook(tenant_id(), path.playbook_id)
    return "", 204


@blueprint.get("/ansible/playbooks/<int:playbook_id>/versions", summary="List a playbook's versions, newest first",
               responses={200: VersionList, **NOT_FOUND})
@role("viewer")
def list_versions(path: PlaybookPath, query: VersionQuery) -> Any:
    rows, cursor = page(ansible_playbooks.list_versions(tenant_id(), path.playbook_id, query.limit + 1,
                                                        query.cursor), query.limit, key="version")
    return {"items": [VersionSummary(version=row.version, sha256=row.sha256,
                                     created_at=row.created_at).model_dump(mode="json") for row in rows],
            "next_cursor": cursor}


@blueprint.get("/ansible/playbooks/<int:playbook_id>/versions/<int:version>",
               summary="Get one version of a playbook with its content",
               responses={200: VersionOut, **NOT_FOUND})
@role("viewer")
def get_version(path: PlaybookVersionPath) -> Any:
    row = ansible_playbooks.get_version(tenant_id(), path.playbook_id, path.version)
    return VersionOut(version=row.version, sha256=row.sha256, created_at=row.created_at,
                      content=row.content).model_dump(mode="json")
