"""The key that signs API tokens: from the configuration, or generated once per instance.

Generating it keeps the embedded default free of a shared, published secret;
the file is created owner-only and atomically, so two processes starting at
once agree on one key.
"""

from __future__ import annotations

import os
import secrets

from app.core.config import ConfigError, Settings

FILENAME = "secret_key"


def resolve_secret_key(settings: Settings) -> str:
    if settings.app.secret_key:
        return settings.app.secret_key
    path = settings.instance_dir / FILENAME
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = path.read_text(encoding="ascii").strip()
        if len(key) < 32:
            raise ConfigError(f"{path}: holds no usable key; delete it to generate a new one") from None
        return key
    key = secrets.token_urlsafe(48)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(key + "\n")
    return key
