"""Credentials of a tenant: the secrets a run needs, encrypted at rest and never shown.

Each credential is of one kind: an SSH key (with its passphrase, if any), an SSH password,
a become password (with the method and user to become), or a vault password (with its
vault id). ``AnsibleCredential.secret`` holds the kind's fields — the non-secret ones
(``become_method``, ``become_user``, ``vault_id``) with them, since the table has no
column of their own — as encrypted JSON; ``username`` (the remote user of the SSH
kinds) is a plain column. The API shows the non-secret fields and whether a key has a
passphrase, nothing else; no error message ever repeats a secret.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_ssh_private_key
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator
from sqlalchemy import Text, select, type_coerce

from app.core.secret_box import UndecryptableSecret
from app.extensions import db
from app.models import AnsibleCredential
from app.models.ansible import CREDENTIAL_KINDS
from app.models.encrypted import decode
from app.services.errors import InvalidInputError, NotFoundError, broken_rule, validated
from app.services.tenant_rows import owned
from app.services.unique_names import commit_unique

WHAT = "credential"
FIELD = "credential_ids"
SSH_KINDS = ("ssh_key", "ssh_password")
MAX_KEY = 32 * 1024
MAX_IDS = len(CREDENTIAL_KINDS)
# The fields each kind keeps in ``secret``: (required, optional).
SECRET_FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "ssh_key": (("private_key",), ("passphrase",)),
    "ssh_password": (("password",), ()),
    "become_password": (("password",), ("become_method", "become_user")),
    "vault_password": (("password",), ("vault_id",)),
}
ALL_SECRET_FIELDS = ("private_key", "passphrase", "password", "become_method", "become_user", "vault_id")
SHOWN_FIELDS = ("become_method", "become_user", "vault_id")
_OPENSSH = b"-----BEGIN OPENSSH PRIVATE KEY-----"
_PEM = re.compile(rb"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----")

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100, pattern=r"\S")]
Secret = Annotated[str, StringConstraints(min_length=1, max_length=4096)]
Word = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255, pattern=r"^\S+$")]


class CredentialInput(BaseModel):
    """A credential as a user describes it; which secret fields apply depends on ``kind``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: Name = Field(description="Unique within the tenant.")
    kind: Literal["ssh_key", "ssh_password", "become_password", "vault_password"]
    username: Word | None = Field(None, description="ssh_key, ssh_password: the remote user (`ansible_user`).")
    description: Annotated[str, StringConstraints(max_length=2000)] = ""
    private_key: Annotated[str, StringConstraints(min_length=1, max_length=MAX_KEY)] | None = Field(
        None, description="ssh_key: an OpenSSH or PEM private key. Never shown.")
    passphrase: Secret | None = Field(None, description="ssh_key: the key's passphrase, if it has one. Never shown.")
    password: Secret | None = Field(None, description="ssh_password, become_password, vault_password. Never shown.")
    become_method: Annotated[str, StringConstraints(max_length=100, pattern=r"^[a-z_][a-z0-9_.]*$")] | None = Field(
        None, description="become_password: sudo, su, doas … (omitted: Ansible's default).")
    become_user: Word | None = Field(None, description="become_password: the user to become (omitted: root).")
    vault_id: Annotated[str, StringConstraints(max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")] | None = Field(
        None, description="vault_password: the vault id the password opens (omitted: the default).")

    @model_validator(mode="after")
    def _consistent(self) -> "CredentialInput":
        required, optional = SECRET_FIELDS[self.kind]
        for name in required:
            if getattr(self, name) is None:
                raise _broken(name, f"required for a {self.kind} credential")
        for name in ALL_SECRET_FIELDS:
            if name not in required + optional and getattr(self, name) is not None:
                raise _broken(name, f"not a field of a {self.kind} credential")
        if self.username is not None and self.kind not in SSH_KINDS:
            raise _broken("username", "only for ssh_key and ssh_password credentials (the remote user)")
        return self

    def secret(self) -> dict[str, Any]:
        required, optional = SECRET_FIELDS[self.kind]
        values = {name: getattr(self, name) for name in required + optional if getattr(self, name) is not None}
        if "private_key" in values:
            values["private_key"] = _normalized_key(values["private_key"])
        return values


def _broken(field_name: str, message: str) -> Any:
    return broken_rule("credential_rule", field_name, message)


def _normalized_key(key: str) -> str:
    """One trailing newline and Unix line ends: ssh refuses a key file without them."""
    return key.replace("\r\n", "\n").strip() + "\n"


def _is_encrypted(loader: Any, data: bytes) -> bool:
    try:
        loader(data, None)
    except TypeError:
        return True
    except (ValueError, UnsupportedAlgorithm):
        return False
    return False


def check_private_key(private_key: str, passphrase: str | None) -> None:
    """An OpenSSH or PEM private key that opens with ``passphrase`` (none: not encrypted).

    The messages say what is wrong without repeating any of the key or the passphrase.
    """
    data = _normalized_key(private_key).encode("utf-8", "replace")
    if _OPENSSH in data:
        loader: Any = load_ssh_private_key
    elif _PEM.search(data):
        loader = load_pem_private_key
    else:
        raise InvalidInputError("not an OpenSSH or PEM private key (-----BEGIN … PRIVATE KEY-----)",
                                field="private_key")
    password = passphrase.encode("utf-8") if passphrase is not None else None
    try:
        loader(data, password)
    except TypeError:
        if password is None:
            raise InvalidInputError("the key is encrypted: give its passphrase", field="passphrase") from None
        raise InvalidInputError("the key is not encrypted: leave passphrase out", field="passphrase") from None
    except UnsupportedAlgorithm:
        raise InvalidInputError("this key's type or cipher is not supported", field="private_key") from None
    except ValueError:
        if password is not None and _is_encrypted(loader, data):
            raise InvalidInputError("wrong passphrase for this key", field="passphrase") from None
        raise InvalidInputError("not a readable OpenSSH or PEM private key", field="private_key") from None


def _validated(data: dict[str, Any]) -> CredentialInput:
    fields = validated(CredentialInput, data)
    if fields.kind == "ssh_key":
        assert fields.private_key is not None
        check_private_key(fields.private_key, fields.passphrase)
    return fields


def create_credential(tenant_id: int, data: dict[str, Any]) -> AnsibleCredential:
    fields = _validated(data)
    credential = AnsibleCredential(tenant_id=tenant_id, name=fields.name, kind=fields.kind, username=fields.username,
                                   description=fields.description, secret=fields.secret())
    db.session.add(credential)
    commit_unique("a credential", fields.name)
    return credential


def get_credential(tenant_id: int, credential_id: int) -> AnsibleCredential:
    credential: AnsibleCredential = owned(AnsibleCredential, tenant_id, credential_id, WHAT)
    return credential


def list_credentials(tenant_id: int, limit: int = 100, before_id: int | None = None) -> list[AnsibleCredential]:
    """The tenant's credentials, newest first (their secrets not loaded)."""
    query = select(AnsibleCredential).where(AnsibleCredential.tenant_id == tenant_id)
    if before_id is not None:
        query = query.where(AnsibleCredential.id < before_id)
    return list(db.session.scalars(query.order_by(AnsibleCredential.id.desc()).limit(limit)))


def update_credential(tenant_id: int, credential_id: int, changes: dict[str, Any]) -> AnsibleCredential:
    """Change some fields. Secret fields omitted keep their stored value (a new kind needs its
    own); ``null`` clears an optional one."""
    credential = get_credential(tenant_id, credential_id)
    kind = changes.get("kind", credential.kind)
    current: dict[str, Any] = {"name": credential.name, "kind": credential.kind, "description": credential.description,
                               "username": credential.username if kind in SSH_KINDS else None}
    if kind == credential.kind:
        try:
            current.update(credential.secret or {})
        except UndecryptableSecret:  # under a key no longer configured: the secret must be given again
            pass
    fields = _validated({**current, **changes})
    credential.name, credential.kind, credential.username = fields.name, fields.kind, fields.username
    credential.description, credential.secret = fields.description, fields.secret()
    commit_unique("a credential", fields.name)
    return credential


def delete_credential(tenant_id: int, credential_id: int) -> None:
    """Delete a credential; refused while an execution template uses it."""
    from app.services.ansible_templates import refuse_if_used

    credential = get_credential(tenant_id, credential_id)
    refuse_if_used(tenant_id, f"credential {credential.name!r}", credential_id=credential.id)
    db.session.delete(credential)
    db.session.commit()


@dataclass(frozen=True)
class Shown:
    """What may be shown of a credential's secret: its non-secret fields, and whether a key has a passphrase."""

    become_method: str | None = None
    become_user: str | None = None
    vault_id: str | None = None
    has_passphrase: bool | None = None
    readable: bool = True


def shown(credentials: list[AnsibleCredential]) -> dict[int, Shown]:
    """What may be shown of each credential, by id: one query, the secrets read as stored text so
    that one a configured key no longer opens is shown all the same (its runs will say why)."""
    ids = [credential.id for credential in credentials]
    tokens = dict(db.session.execute(select(AnsibleCredential.id, type_coerce(AnsibleCredential.secret, Text))
                                     .where(AnsibleCredential.id.in_(ids))).tuples().all()) if ids else {}
    found = {}
    for credential in credentials:
        try:
            secret = decode(tokens.get(credential.id)) or {}
        except UndecryptableSecret:
            found[credential.id] = Shown(readable=False)
            continue
        found[credential.id] = Shown(**{name: secret.get(name) for name in SHOWN_FIELDS},
                                     has_passphrase=("passphrase" in secret) if credential.kind == "ssh_key" else None)
    return found


# --- for runs --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunCredentials:
    """The secrets of one run, decrypted; ``repr`` shows none of them."""

    username: str | None = None
    ssh_key: str | None = field(default=None, repr=False)
    ssh_key_passphrase: str | None = field(default=None, repr=False)
    ssh_password: str | None = field(default=None, repr=False)
    become_password: str | None = field(default=None, repr=False)
    become_method: str | None = None
    become_user: str | None = None
    vault_password: str | None = field(default=None, repr=False)
    vault_id: str | None = None


def _checked(tenant_id: int, ids: list[int]) -> list[AnsibleCredential]:
    if len(ids) > MAX_IDS:
        raise InvalidInputError(f"at most {MAX_IDS} credentials, one of each kind", field=FIELD)
    for index, credential_id in enumerate(ids):
        if credential_id in ids[:index]:
            raise InvalidInputError(f"lists credential {credential_id} twice", field=FIELD)
    credentials = []
    for credential_id in ids:
        if not isinstance(credential_id, int) or isinstance(credential_id, bool) or credential_id < 1:
            raise NotFoundError(f"{WHAT} {credential_id} not found")
        credentials.append(get_credential(tenant_id, credential_id))
    by_kind: dict[str, AnsibleCredential] = {}
    for credential in credentials:
        if credential.kind in by_kind:
            raise InvalidInputError(f"two {credential.kind} credentials ({by_kind[credential.kind].name!r} and "
                                    f"{credential.name!r}): give one of each kind at most", field=FIELD)
        by_kind[credential.kind] = credential
    users = {credential.username for credential in credentials if credential.username}
    if len(users) > 1:
        raise InvalidInputError("the ssh credentials name different remote users", field=FIELD)
    return credentials


def check_ids(tenant_id: int, ids: list[int]) -> None:
    """Credentials a run may use together: each the tenant's (``credential <id> not found``
    otherwise), none twice, at most one of each kind, one remote user."""
    _checked(tenant_id, list(ids))


def for_run(tenant_id: int, ids: list[int]) -> RunCredentials:
    """The decrypted secrets of ``ids`` (checked as ``check_ids`` does)."""
    values: dict[str, Any] = {}
    for credential in _checked(tenant_id, list(ids)):
        try:
            secret = credential.secret or {}
        except UndecryptableSecret:
            raise InvalidInputError(f"credential {credential.name!r} cannot be decrypted with the configured keys",
                                    field=FIELD) from None
        if credential.username:
            values["username"] = credential.username
        if credential.kind == "ssh_key":
            values.update(ssh_key=secret.get("private_key"), ssh_key_passphrase=secret.get("passphrase"))
        elif credential.kind == "ssh_password":
            values["ssh_password"] = secret.get("password")
        elif credential.kind == "become_password":
            values.update(become_password=secret.get("password"), become_method=secret.get("become_method"),
                          become_user=secret.get("become_user"))
        else:
            values.update(vault_password=secret.get("password"), vault_id=secret.get("vault_id"))
    return RunCredentials(**values)
