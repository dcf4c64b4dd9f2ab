"""Playbooks of a tenant and their versions.

A ``content`` playbook is YAML stored here; every save of new content is checked by
``ansible-playbook --syntax-check`` and becomes a new version (same content: no new
version), so an execution can name exactly what it ran. A ``project`` playbook is a file
of a project directory under ``ansible.projects_root`` on the workers' disk; saving it
checks the path (nothing outside the root) and the file, and a version records the
file's sha256 at that time (its ``content`` is null).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator
from sqlalchemy import and_, select
from sqlalchemy.orm import defer

from app.ansible.syntax import PlaybookSyntaxError, check_playbook, check_project_playbook
from app.core.config import active_settings
from app.extensions import db
from app.models import AnsibleExecution, AnsiblePlaybook, AnsiblePlaybookVersion
from app.services.ansible_hosts import flush_unique
from app.services.errors import ConflictError, InvalidInputError, NotFoundError, broken_rule, validated
from app.services.tenant_rows import owned
from app.services.unique_names import commit_unique

WHAT = "playbook"
MAX_CONTENT = 1024 * 1024
# Contents that passed the syntax check lately, by sha256: saving the same text again (a
# rename, a revert) spawns no new check.
_PASSED_SIZE = 256
_passed: OrderedDict[str, None] = OrderedDict()
_passed_lock = threading.Lock()


class PlaybookInput(BaseModel):
    """A playbook as a user describes it."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100, pattern=r"\S")] = Field(
        description="Unique within the tenant.")
    description: str = Field("", max_length=2000)
    source: Literal["content", "project"] = Field("content", description=(
        "`content`: the YAML in `content`, versioned here; `project`: `playbook_file` of `project_dir` "
        "under the server's ansible.projects_root."))
    content: str | None = Field(None, min_length=1, max_length=MAX_CONTENT,
                                description="content: the playbook (YAML), syntax-checked when saved.")
    project_dir: str | None = Field(None, min_length=1, max_length=1024,
                                    description="project: a directory relative to ansible.projects_root.")
    playbook_file: str | None = Field(None, min_length=1, max_length=1024,
                                      description="project: the playbook file, relative to project_dir.")

    @model_validator(mode="after")
    def _consistent(self) -> "PlaybookInput":
        own, other = (("content",), ("project_dir", "playbook_file")) if self.source == "content" else (
            ("project_dir", "playbook_file"), ("content",))
        for field in own:
            if getattr(self, field) is None:
                raise _broken(field, f"required for a {self.source} playbook")
        for field in other:
            if getattr(self, field) is not None:
                raise _broken(field, f"not a field of a {self.source} playbook")
        return self


def _broken(field: str, message: str) -> Any:
    return broken_rule("playbook_rule", field, message)


def _refused(field: str, exc: PlaybookSyntaxError) -> InvalidInputError:
    where = f"line {exc.line}: " if exc.line else ""
    return InvalidInputError(f"{where}{exc.message}", field=field)


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _checked_content(content: str) -> str:
    """``content``'s sha256, once it passed the syntax check."""
    digest = sha256_of(content.encode("utf-8"))
    with _passed_lock:
        if digest in _passed:
            _passed.move_to_end(digest)
            return digest
    try:
        check_playbook(content)
    except PlaybookSyntaxError as exc:
        raise _refused("content", exc) from None
    with _passed_lock:
        _passed[digest] = None
        while len(_passed) > _PASSED_SIZE:
            _passed.popitem(last=False)
    return digest


def _checked_project(project_dir: str, playbook_file: str) -> str:
    """The sha256 of the project playbook's file, once its path and syntax passed."""
    root = active_settings().ansible_projects_root
    if root is None:
        raise InvalidInputError("project playbooks are off on this server (ansible.projects_root is not set)",
                                field="source")
    try:
        path = check_project_playbook(root, project_dir, playbook_file)
    except PlaybookSyntaxError as exc:
        raise _refused("playbook_file", exc) from None
    try:
        return sha256_of(path.read_bytes())
    except OSError:
        raise InvalidInputError("the playbook file cannot be read", field="playbook_file") from None


def _checked(fields: PlaybookInput) -> tuple[str | None, str]:
    """(content a version stores, sha256) of a valid playbook."""
    if fields.source == "content":
        assert fields.content is not None
        return fields.content, _checked_content(fields.content)
    assert fields.project_dir is not None and fields.playbook_file is not None
    return None, _checked_project(fields.project_dir, fields.playbook_file)


def _apply(playbook: AnsiblePlaybook, fields: PlaybookInput) -> None:
    playbook.name, playbook.description, playbook.source = fields.name, fields.description, fields.source
    playbook.project_dir, playbook.playbook_file = fields.project_dir, fields.playbook_file


def create_playbook(tenant_id: int, data: dict[str, Any]) -> AnsiblePlaybook:
    fields = validated(PlaybookInput, data)
    content, digest = _checked(fields)
    playbook = AnsiblePlaybook(tenant_id=tenant_id, current_version=1)
    _apply(playbook, fields)
    db.session.add(playbook)
    flush_unique("a playbook", fields.name)
    db.session.add(AnsiblePlaybookVersion(playbook_id=playbook.id, version=1, content=content, sha256=digest,
                                          project_dir=fields.project_dir, playbook_file=fields.playbook_file))
    commit_unique("a playbook", fields.name)
    return playbook


def get_playbook(tenant_id: int, playbook_id: int) -> AnsiblePlaybook:
    playbook: AnsiblePlaybook = owned(AnsiblePlaybook, tenant_id, playbook_id, WHAT)
    return playbook


def find_playbook(tenant_id: int, name: str) -> AnsiblePlaybook | None:
    return db.session.scalar(select(AnsiblePlaybook).where(AnsiblePlaybook.tenant_id == tenant_id,
                                                           AnsiblePlaybook.name == name))


def list_playbooks(tenant_id: int, limit: int = 100, before_id: int | None = None) -> list[AnsiblePlaybook]:
    """The tenant's playbooks, newest first."""
    query = select(AnsiblePlaybook).where(AnsiblePlaybook.tenant_id == tenant_id)
    if before_id is not None:
        query = query.where(AnsiblePlaybook.id < before_id)
    return list(db.session.scalars(query.order_by(AnsiblePlaybook.id.desc()).limit(limit)))


def _version(playbook: AnsiblePlaybook, version: int) -> AnsiblePlaybookVersion | None:
    return db.session.scalar(select(AnsiblePlaybookVersion).where(AnsiblePlaybookVersion.playbook_id == playbook.id,
                                                                  AnsiblePlaybookVersion.version == version))


def current_version(playbook: AnsiblePlaybook) -> AnsiblePlaybookVersion:
    found = _version(playbook, playbook.current_version)
    if found is None:  # versions are never deleted on their own
        raise NotFoundError(f"playbook {playbook.id} has no version {playbook.current_version}")
    return found


def current_versions(playbooks: list[AnsiblePlaybook]) -> dict[int, AnsiblePlaybookVersion]:
    """Each playbook's current version, by playbook id, without its content: one query."""
    if not playbooks:
        return {}
    rows = db.session.scalars(
        select(AnsiblePlaybookVersion).options(defer(AnsiblePlaybookVersion.content))
        .join(AnsiblePlaybook, and_(AnsiblePlaybook.id == AnsiblePlaybookVersion.playbook_id,
                                    AnsiblePlaybook.current_version == AnsiblePlaybookVersion.version))
        .where(AnsiblePlaybook.id.in_([playbook.id for playbook in playbooks])))
    return {row.playbook_id: row for row in rows}


def playbook_fields(playbook: AnsiblePlaybook) -> dict[str, Any]:
    """The playbook as ``PlaybookInput`` fields (what an update starts from)."""
    content = current_version(playbook).content if playbook.source == "content" else None
    return {"name": playbook.name, "description": playbook.description, "source": playbook.source,
            "content": content, "project_dir": playbook.project_dir, "playbook_file": playbook.playbook_file}


_CONTENT_ONLY = ("content",)
_PROJECT_ONLY = ("project_dir", "playbook_file")


def update_playbook(tenant_id: int, playbook_id: int, changes: dict[str, Any]) -> AnsiblePlaybook:
    """Change some fields; new content (or a project file whose path or sha256 changed) is a new
    version, the same content none."""
    playbook = get_playbook(tenant_id, playbook_id)
    current = playbook_fields(playbook)
    source = changes.get("source", playbook.source)
    if source != playbook.source:
        for field in _PROJECT_ONLY if source == "content" else _CONTENT_ONLY:
            current[field] = None
    fields = validated(PlaybookInput, {**current, **changes})
    content, digest = _checked(fields)
    latest = current_version(playbook)
    moved = (fields.source, fields.project_dir, fields.playbook_file) != (
        playbook.source, playbook.project_dir, playbook.playbook_file)
    _apply(playbook, fields)
    if moved or digest != latest.sha256 or content != latest.content:
        playbook.current_version = latest.version + 1
        db.session.add(AnsiblePlaybookVersion(playbook_id=playbook.id, version=playbook.current_version,
                                              content=content, sha256=digest, project_dir=fields.project_dir,
                                              playbook_file=fields.playbook_file))
    commit_unique("a playbook", fields.name)
    return playbook


def delete_playbook(tenant_id: int, playbook_id: int) -> None:
    """Delete a playbook and its versions; refused while an execution template uses it or one of
    its executions has not ended (finished executions keep their record, without the content)."""
    from app.services.ansible_templates import refuse_if_used

    playbook = get_playbook(tenant_id, playbook_id)
    refuse_if_used(tenant_id, f"playbook {playbook.name!r}", playbook_id=playbook.id)
    active = db.session.scalar(
        select(AnsibleExecution.id).where(AnsibleExecution.playbook_id == playbook.id,
                                          AnsibleExecution.status.in_(("pending", "running"))).limit(1))
    if active is not None:
        raise ConflictError(f"playbook {playbook.name!r} is used by execution {active}, which has not ended")
    db.session.delete(playbook)
    db.session.commit()


def list_versions(tenant_id: int, playbook_id: int, limit: int = 100,
                  before: int | None = None) -> list[AnsiblePlaybookVersion]:
    """The playbook's versions, newest first."""
    playbook = get_playbook(tenant_id, playbook_id)
    query = select(AnsiblePlaybookVersion).where(AnsiblePlaybookVersion.playbook_id == playbook.id)
    if before is not None:
        query = query.where(AnsiblePlaybookVersion.version < before)
    return list(db.session.scalars(query.order_by(AnsiblePlaybookVersion.version.desc()).limit(limit)))


def get_version(tenant_id: int, playbook_id: int, version: int) -> AnsiblePlaybookVersion:
    playbook = get_playbook(tenant_id, playbook_id)
    found = _version(playbook, version)
    if found is None:
        raise NotFoundError(f"playbook {playbook_id} has no version {version}")
    return found


def for_run(tenant_id: int, playbook_id: int) -> tuple[AnsiblePlaybook, AnsiblePlaybookVersion]:
    """The tenant's playbook and its current version (``playbook <id> not found`` otherwise)."""
    playbook = get_playbook(tenant_id, playbook_id)
    return playbook, current_version(playbook)
