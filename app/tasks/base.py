from __future__ import annotations

from typing import Any

from billiard.einfo import ExceptionInfo

from app.celery_app import FlaskTask, get_flask_app
from app.core.config import active_settings
from app.services.errors import ServiceError
from app.services.failures import record_task_failure


_retry = active_settings().probes


class RecordedTask(FlaskTask):
    """A task whose final failure is logged, stored in ``task_failures`` and passed to the
    registered failure callbacks. A ``ServiceError`` (bad input, a missing id) is permanent
    and never retried."""

    abstract = True
    dont_autoretry_for = (ServiceError,)
    acks_late = True

    def on_failure(self, exc: BaseException, task_id: str, args: tuple[Any, ...], kwargs: dict[str, Any],
                   einfo: ExceptionInfo) -> None:
        with get_flask_app().app_context():
            record_task_failure(
                task_id=task_id,
                task_name=self.name,
                args=list(args),
                kwargs=dict(kwargs),
                error=exc,
                traceback=str(einfo),
                retries=self.request.retries,
            )


class NetworkProbeTask(RecordedTask):
    """Base of every network probe task.

    Any exception — a broker or database fault — is retried up to 3 times with
    exponential backoff from 60 s, capped at 600 s, with full jitter (the
    defaults of ``probes.max_retries``/``retry_*`` in config/app.yaml; Celery
    reads them once, when the tasks are defined). A
    ``ServiceError`` (bad input, a probe that does not exist) is permanent and is
    not retried. When a task fails for good its failure is logged, stored in
    ``task_failures`` and passed to the registered failure callbacks.
    """

    abstract = True
    autoretry_for = (Exception,)
    max_retries = _retry.max_retries
    retry_backoff = _retry.retry_backoff_seconds
    retry_backoff_max = _retry.retry_backoff_max_seconds
    retry_jitter = _retry.retry_jitter


class AlertTask(RecordedTask):
    """Base of the ``alerts`` tasks. They only read and write the database (sending is
    retried by the outbox, not by Celery), so an infrastructure fault is retried soon and
    often: an alert a minute late is worth less than one retried ten times."""

    abstract = True
    autoretry_for = (Exception,)
    max_retries = 10
    retry_backoff = 1
    retry_backoff_max = 30
    retry_jitter = True


class AnsibleTask(RecordedTask):
    """Base of the ``ansible`` tasks. A run is started at most once (its compare-and-set), so
    a fault before it starts is retried a few times; after, the run ends with a status."""

    abstract = True
    autoretry_for = (Exception,)
    max_retries = 3
    retry_backoff = 2
    retry_backoff_max = 30
    retry_jitter = True
