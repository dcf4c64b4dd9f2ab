"""The key that signs API tokens: from the configuration, or generated once per instance.

Generating it keeps the embedded default free of a shared, published secret;
the file is created owner-only and atomically (``app.core.instance_files``), so two
processes starting at once agree on one key.
"""

from __future__ import annotations

import secrets

from app.core.config import ConfigError, Settings
from app.core.instance_files import create_once

FILENAME = "secret_key"


def resolve_secret_key(settings: Settings) -> str:
    if settings.app.secret_key:
        return settings.app.secret_key
    path = settings.instance_dir / FILENAME
    key = create_once(path, lambda: secrets.token_urlsafe(48), "the secret key")
    if len(key) < 32:
        raise ConfigError(f"{path}: holds no usable key; delete it to generate a new one")
    return key
