"""All models, imported here so Alembic and ``db.create_all`` see every table."""

from app.models.base import Base, utcnow
from app.models.network import Probe, ProbeGroup, ProbeResult
from app.models.task_failure import TaskFailure
from app.models.tenant import Tenant

__all__ = ["Base", "Probe", "ProbeGroup", "ProbeResult", "TaskFailure", "Tenant", "utcnow"]
