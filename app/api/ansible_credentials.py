"""Credentials of the caller's tenant: SSH keys and passwords, become and vault passwords.

Admins set them; everyone sees which exist and their non-secret fields, no one ever
sees a secret again (not even masked): send a new one to replace it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from app.api import CONFLICT, NOT_FOUND, api_blueprint
from app.api.ansible_hosts import AnsibleCursorQuery, optional_fields, page
from app.api.schemas import RowId
from app.api.security import role, tenant_id
from app.models import AnsibleCredential
from app.services import ansible_credentials

blueprint = api_blueprint("ansible-credentials", "Secrets for playbook runs, encrypted at rest and never shown: "
                                                 "`ssh_key` (private_key, passphrase), `ssh_password` (password), "
                                                 "`become_password` (password, become_method, become_user), "
                                                 "`vault_password` (password, vault_id).")

CredentialCreate = ansible_credentials.CredentialInput
CredentialUpdate = optional_fields("CredentialUpdate", ansible_credentials.CredentialInput,
                                   "Fields to change. A secret field omitted keeps its stored value, null clears "
                                   "an optional one; a new kind needs its own secret fields.")


class CredentialPath(BaseModel):
    credential_id: RowId


class CredentialOut(BaseModel):
    id: int
    name: str
    kind: str
    username: str | None
    description: str
    become_method: str | None
    become_user: str | None
    vault_id: str | None
    has_passphrase: bool | None = Field(description="ssh_key: the key is encrypted with a passphrase.")
    readable: bool = Field(description="false: no configured key opens the stored secret; set it again.")
    created_at: datetime
    updated_at: datetime


class CredentialList(BaseModel):
    items: list[CredentialOut]
    next_cursor: int | None = Field(description="Pass as `cursor` for the next (older) page; null at the end.")


def _out(credentials: list[AnsibleCredential]) -> list[dict[str, Any]]:
    shown = ansible_credentials.shown(credentials)
    return [CredentialOut(id=row.id, name=row.name, kind=row.kind, username=row.username, description=row.description,
                          become_method=shown[row.id].become_method, become_user=shown[row.id].become_user,
                          vault_id=shown[row.id].vault_id, has_passphrase=shown[row.id].has_passphrase,
                          readable=shown[row.id].readable, created_at=row.created_at,
                          updated_at=row.updated_at).model_dump(mode="json")
            for row in credentials]


def _one(credential: AnsibleCredential) -> dict[str, Any]:
    return _out([credential])[0]


@blueprint.get("/ansible/credentials", summary="List credentials (never their secrets), newest first",
               responses={200: CredentialList})
@role("viewer")
def list_credentials(query: AnsibleCursorQuery) -> Any:
    rows, cursor = page(ansible_credentials.list_credentials(tenant_id(), query.limit + 1, query.cursor),
                        query.limit)
    return {"items": _out(rows), "next_cursor": cursor}


@blueprint.post("/ansible/credentials", summary="Create a credential",
                responses={201: CredentialOut, **CONFLICT})
@role("admin")
def create_credential(body: CredentialCreate) -> Any:
    return _one(ansible_credentials.create_credential(tenant_id(), body.model_dump(exclude_unset=True))), 201


@blueprint.get("/ansible/credentials/<int:credential_id>", summary="Get a credential (never its secret)",
               responses={200: CredentialOut, **NOT_FOUND})
@role("viewer")
def get_credential(path: CredentialPath) -> Any:
    return _one(ansible_credentials.get_credential(tenant_id(), path.credential_id))


@blueprint.patch("/ansible/credentials/<int:credential_id>", summary="Change a credential or replace its secret",
                 responses={200: CredentialOut, **NOT_FOUND, **CONFLICT})
@role("admin")
def update_credential(path: CredentialPath, body: CredentialUpdate) -> Any:  # type: ignore[valid-type]
    changes = body.model_dump(exclude_unset=True)  # type: ignore[attr-defined]
    return _one(ansible_credentials.update_credential(tenant_id(), path.credential_id, changes))


@blueprint.delete("/ansible/credentials/<int:credential_id>",
                  summary="Delete a credential (refused while an execution template uses it)",
                  responses={204: None, **NOT_FOUND, **CONFLICT})
@role("admin")
def delete_credential(path: CredentialPath) -> Any:
    ansible_credentials.delete_credential(tenant_id(), path.credential_id)
    return "", 204
