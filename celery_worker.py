"""Entry point for the Celery command line: ``celery -A celery_worker.celery worker|beat|flower``.

Creates the Flask app once per process (tasks run in its context) and, on the
embedded default, starts the private Redis server if it is not running yet.
A configuration error stops start-up with one line.
"""

import sys

from app.core.config import ConfigError, active_settings
from app.core.embedded_redis import EmbeddedRedisError, ensure_running

try:
    settings = active_settings()
    if settings.uses_embedded_redis:
        ensure_running(settings)

    from app import create_app

    flask_app = create_app(settings)
except (ConfigError, EmbeddedRedisError) as exc:
    print(f"admin-mit: {exc}", file=sys.stderr)
    sys.exit(2)

celery = flask_app.extensions["celery"]
