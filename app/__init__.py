"""admin-mit-backend: network probes, alerts and Ansible runs on a Celery task queue."""

from __future__ import annotations

import logging

from flask import Flask

from app.core.config import PROJECT_ROOT, Settings, activate, active_settings
from app.core.database import engine_options
from app.extensions import db, migrate


def create_app(settings: Settings | None = None) -> Flask:
    """The Flask application factory: one app per process, bound to the database and Celery."""
    from app.celery_app import celery_init_app

    settings = settings or active_settings()
    activate(settings)
    settings.instance_dir.mkdir(parents=True, exist_ok=True)

    flask_app = Flask(__name__, instance_path=str(settings.instance_dir))
    flask_app.config.update(
        SECRET_KEY=settings.app.secret_key or None,
        SQLALCHEMY_DATABASE_URI=settings.database_url,
        SQLALCHEMY_ENGINE_OPTIONS=engine_options(
            settings.database_url, settings.database.pool_size, settings.database.echo
        ),
    )
    flask_app.extensions["admin_mit.settings"] = settings
    logging.getLogger("app").setLevel(settings.app.log_level)

    import app.models  # noqa: F401  (register every table before migrations look)

    db.init_app(flask_app)
    migrate.init_app(flask_app, db, directory=str(PROJECT_ROOT / "migrations"), render_as_batch=True)
    celery_init_app(flask_app)
    return flask_app
