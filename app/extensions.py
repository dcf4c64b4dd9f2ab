"""Extension objects, created once at import and bound to the Flask app in ``create_app``."""

from __future__ import annotations

from flask_sqlalchemy import SQLAlchemy

from app.models.base import Base

db = SQLAlchemy(model_class=Base)
