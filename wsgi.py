"""WSGI entry point: ``gunicorn wsgi:app``.

A start-up problem (configuration, instance directory, database URL) is printed as
one line on stderr, and the worker exits with gunicorn's "application failed to
load" code (4), on which gunicorn stops instead of booting the worker again and again.
"""

import sys

from app.core.config import ConfigError

APP_LOAD_ERROR = 4  # gunicorn.arbiter.Arbiter.APP_LOAD_ERROR

try:
    from app import create_app

    app = create_app()
except ConfigError as exc:
    print(f"admin-mit: error: {exc}", file=sys.stderr, flush=True)
    sys.exit(APP_LOAD_ERROR)
