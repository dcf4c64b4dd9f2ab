"""The key that signs API tokens: from the configuration, or generated once per instance.

Generating it keeps the embedded default free of a shared, published secret;
the file is created owner-only and atomically, so two processes starting at
once agree on one key.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from app.core.config import ConfigError, Settings

FILENAME = "secret_key"


def resolve_secret_key(settings: Settings) -> str:
    if settings.app.secret_key:
        return settings.app.secret_key
    path = settings.instance_dir / FILENAME
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_key(path)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot create the secret key: {exc.strerror}") from None
    key = secrets.token_urlsafe(48)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(key + "\n")
    return key


def _read_key(path: Path) -> str:
    try:
        key = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not ASCII text"
        raise ConfigError(f"{path}: cannot read the secret key: {reason}") from None
    if len(key) < 32:
        raise ConfigError(f"{path}: holds no usable key; delete it to generate a new one")
    return key
