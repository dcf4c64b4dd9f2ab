"""The keyring that encrypts secrets stored in the database (MultiFernet).

Keys come from ``secrets.keys`` in the configuration, newest first: the first key
encrypts, every listed key decrypts, so a key is rotated by putting the new one in
front, restarting, re-encrypting (``admin-mit secrets rotate``) and only then removing
the old one. With no key configured (the embedded default) one key is generated once
into ``<instance>/secrets.key``, owner-only; that file then belongs with the database
in every backup, since what it encrypted cannot be read without it.

The keyring is built from ``active_settings()`` on first use and rebuilt whenever the
active settings change. Plaintexts are never logged, and no error message holds one.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from app.core.config import ConfigError, Settings, active_settings
from app.core.instance_files import create_once

FILENAME = "secrets.key"


class UndecryptableSecret(Exception):
    """A stored secret that none of the configured keys opens."""


@dataclass(frozen=True)
class _Keyring:
    settings: Settings
    source: tuple[tuple[str, ...], Path]
    fernet: MultiFernet


_lock = threading.Lock()
_keyring: _Keyring | None = None


def _source(settings: Settings) -> tuple[tuple[str, ...], Path]:
    return tuple(settings.secrets.keys), settings.instance_dir


def _generated_key(settings: Settings) -> str:
    path = settings.instance_dir / FILENAME
    key = create_once(path, lambda: Fernet.generate_key().decode("ascii"), "the encryption key")
    try:
        Fernet(key)
    except (ValueError, TypeError):
        raise ConfigError(f"{path}: holds no usable Fernet key; restore it from a backup, or set "
                          f"secrets.keys (what it encrypted cannot be read without it)") from None
    return key


def _build(settings: Settings) -> _Keyring:
    keys = list(settings.secrets.keys) or [_generated_key(settings)]
    return _Keyring(settings, _source(settings), MultiFernet([Fernet(key) for key in keys]))


def _fernet() -> MultiFernet:
    """The keyring of the active settings, rebuilt when they (or their keys) changed."""
    global _keyring
    settings = active_settings()
    current = _keyring
    if current is not None and current.settings is settings and current.source == _source(settings):
        return current.fernet
    with _lock:
        if _keyring is None or _keyring.settings is not settings or _keyring.source != _source(settings):
            _keyring = _build(settings)
        return _keyring.fernet


def _missing_key_error() -> UndecryptableSecret:
    return UndecryptableSecret(
        "a stored secret cannot be decrypted with any key in secrets.keys: the key it was "
        "encrypted with is missing or was rotated away (add it back to secrets.keys, after the newest)")


def encrypt(plaintext: str) -> str:
    """A Fernet token of ``plaintext`` under the newest key."""
    return _fernet().encrypt(plaintext.encode("utf-8")).decode("ascii")


def decrypt(token: str) -> str:
    """The plaintext of ``token``; ``UndecryptableSecret`` if no configured key opens it."""
    try:
        return _fernet().decrypt(token.encode("ascii")).decode("utf-8")
    except (InvalidToken, UnicodeError):
        raise _missing_key_error() from None


def rotate(token: str) -> str:
    """``token`` re-encrypted under the newest key (``UndecryptableSecret`` as ``decrypt``)."""
    try:
        return _fernet().rotate(token.encode("ascii")).decode("ascii")
    except (InvalidToken, UnicodeError):
        raise _missing_key_error() from None

