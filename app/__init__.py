"""admin-mit-backend: network probes, alerts and Ansible runs on a Celery task queue."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from flask import Flask
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.middleware.proxy_fix import ProxyFix

from app.core.config import ConfigError, Settings, activate, active_settings, ensure_instance_dir
from app.core.database import engine_options
from app.core.secret_key import resolve_secret_key
from app.extensions import db

if TYPE_CHECKING:
    from flask_openapi3 import OpenAPI

API_VERSION = "1.0.0"
# Request bodies are small JSON documents; anything larger is refused with 413.
MAX_REQUEST_BYTES = 1024 * 1024


def migrations_directory() -> Path:
    """The Alembic directory: ``app/migrations`` in an installed copy (pyproject.toml maps the
    project's ``migrations/`` there), else ``migrations/`` beside the package in a source tree
    (a checkout, or an editable install of one)."""
    package = Path(__file__).resolve().parent
    installed, source = package / "migrations", package.parent / "migrations"
    return installed if (installed / "env.py").is_file() else source


def create_app(settings: Settings | None = None, *, serve_api: bool = True) -> Flask:
    """The Flask application factory: one app per process, bound to the database and Celery.

    With ``serve_api`` (the API server, the CLI, tests) the app also serves the REST API
    (its OpenAPI document at /api/v1/openapi.json) and carries the ``flask db`` migration
    commands. Workers, beat and Flower run without both: the API layer and Alembic are about
    15 MB of every such process, and none of them serves a request or migrates.
    """
    from app.celery_app import celery_init_app

    settings = settings or active_settings()
    activate(settings)
    ensure_instance_dir(settings)

    api_app = _api_app(settings) if serve_api else None
    flask_app = api_app or Flask(__name__, instance_path=str(settings.instance_dir))
    flask_app.config.update(
        SECRET_KEY=resolve_secret_key(settings),
        MAX_CONTENT_LENGTH=MAX_REQUEST_BYTES,
        SQLALCHEMY_DATABASE_URI=settings.database_url,
        SQLALCHEMY_ENGINE_OPTIONS=engine_options(
            settings.database_url, settings.database.pool_size, settings.database.echo
        ),
    )
    flask_app.extensions["admin_mit.settings"] = settings
    logging.getLogger("app").setLevel(settings.app.log_level)

    import app.models  # noqa: F401  (register every table before migrations look)

    try:
        db.init_app(flask_app)  # creates the engine: the URL's options and driver are checked here
    except (SQLAlchemyError, ImportError, TypeError, ValueError) as exc:
        raise ConfigError(f"database.url: {str(exc).strip().splitlines()[0]}") from None
    if api_app is not None:
        _serve_api(api_app, settings)
    celery_init_app(flask_app)
    return flask_app


def _api_app(settings: Settings) -> OpenAPI:
    from flask_openapi3 import Info, OpenAPI

    from app.api import PREFIX
    from app.api.errors import ErrorBody, validation_error_response
    from app.api.security import SECURITY_SCHEMES

    return OpenAPI(
        __name__,
        instance_path=str(settings.instance_dir),
        info=Info(title="admin-mit-backend API", version=API_VERSION,
                  description="Network probes, their results and the task queue that runs them, per tenant."),
        security_schemes=SECURITY_SCHEMES,
        doc_prefix=PREFIX,
        doc_url="/openapi.json",
        validation_error_status=422,
        validation_error_model=ErrorBody,
        validation_error_callback=validation_error_response,
    )


def _serve_api(flask_app: OpenAPI, settings: Settings) -> None:
    """Routes, the migration commands and proxy handling of the API-serving app."""
    from flask_migrate import Migrate

    from app.api import register_api
    from app.web import register_console

    Migrate(flask_app, db, directory=str(migrations_directory()), render_as_batch=True)
    register_api(flask_app)
    register_console(flask_app)  # the operator console at /, on the same API
    _compress_responses(flask_app)
    if settings.api.trusted_proxies:
        hops = settings.api.trusted_proxies
        flask_app.wsgi_app = ProxyFix(flask_app.wsgi_app, x_for=hops, x_proto=hops)  # type: ignore[method-assign]


def _compress_responses(flask_app: Flask) -> None:
    """gzip for clients that ask (browsers, Prometheus): the overview of 10,000 probes and a
    scrape of their metrics are tens of megabytes of JSON and text that shrink ~10x. Streams
    (the live output of an execution) are left alone: compressing them would hold events back
    until a block fills. Level 1: most of the gain for a fraction of level 6's CPU."""
    from flask_compress import Compress

    flask_app.config.update(
        COMPRESS_ALGORITHM=["gzip"],
        COMPRESS_LEVEL=1,
        COMPRESS_STREAMS=False,
        COMPRESS_MIN_SIZE=1024,
        COMPRESS_MIMETYPES=["application/json", "text/plain", "text/html", "text/css", "text/javascript",
                            "application/javascript", "image/svg+xml"],
    )
    Compress(flask_app)
