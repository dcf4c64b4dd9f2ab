"""The Celery application: configuration, queues, routes, priorities, Flask binding.

``celery`` is configured from the settings when this module is imported, so
``from app.tasks.network_probe_tasks import execute_probe`` followed by
``execute_probe.apply_async(...)`` publishes to the configured broker from any
Python process. Running a task needs a Flask app (for the database session):
``celery_init_app`` binds one (``create_app`` calls it; ``celery_worker.py`` does it
for every worker and beat).
"""

from __future__ import annotations

import gc
import inspect
import json
from typing import Any

from celery import Celery, Task, signals
from flask import Flask
from kombu import Queue
from kombu.utils.objects import cached_property

from app.celery_beat_schedule import beat_schedule_for
from app.core import priority
from app.core.config import Settings, activate, active_settings

QUEUES = ("network_probes", "alerts", "ansible", "celery")
DEFAULT_QUEUE = "celery"
TASK_ROUTES = {
    "app.tasks.network_probe_tasks.*": {"queue": "network_probes"},
    "app.tasks.alert_tasks.*": {"queue": "alerts"},
    "app.tasks.ansible_tasks.*": {"queue": "ansible"},
}
# Redis redelivers an unacknowledged message after this long. It must exceed the
# longest task and the longest retry countdown (600 s), or work runs twice.
VISIBILITY_TIMEOUT_SECONDS = 7200
SUBMITTED_KEY = "admin_mit:task-submitted:{}"

_flask_app: Flask | None = None
_configured_with: Settings | None = None


class FlaskTask(Task):
    """Runs every task inside the worker's Flask app context and drops the DB session after."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        flask_app = get_flask_app()
        with flask_app.app_context():
            return super().__call__(*args, **kwargs)

    def signature_from_request(self, request: Any = None, args: Any = None, kwargs: Any = None,
                               queue: str | None = None, **extra_options: Any) -> Any:
        # A received message carries the Redis bucket; turn it back into the user's
        # priority so a retry is published at the same priority, not the mirror of it.
        signature = super().signature_from_request(request, args, kwargs, queue, **extra_options)
        bucket = signature.options.get("priority")
        if bucket is not None:
            signature.options["priority"] = priority.from_broker(bucket)
        return signature


def build_config(settings: Settings) -> dict[str, Any]:
    conf = settings.celery
    config: dict[str, Any] = {
        "broker_url": settings.broker_url,
        "result_backend": settings.result_backend,
        "task_serializer": conf.task_serializer,
        "result_serializer": conf.result_serializer,
        "accept_content": conf.accept_content,
        "timezone": conf.timezone,
        "enable_utc": True,
        "task_queues": [Queue(name) for name in QUEUES],
        "task_default_queue": DEFAULT_QUEUE,
        "task_routes": TASK_ROUTES,
        "broker_transport_options": {
            "priority_steps": priority.BROKER_STEPS,
            "queue_order_strategy": "priority",
            "sep": ":",
            "visibility_timeout": VISIBILITY_TIMEOUT_SECONDS,
        },
        "broker_connection_retry_on_startup": True,
        # A running worker reconnects within seconds, however long Redis is away (see app.worker_consumer).
        "broker_connection_max_retries": None,
        "worker_consumer": "app.worker_consumer:PromptReconnectConsumer",
        "worker_prefetch_multiplier": 1,
        "task_acks_late": True,
        "task_track_started": True,
        "task_time_limit": 600,
        "task_soft_time_limit": 540,
        "result_expires": 86400,
        "result_extended": True,
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "beat_schedule": beat_schedule_for(settings.retention.raw_days),
        "beat_scheduler": "app.beat_scheduler:ProbeDispatchScheduler",
        "beat_schedule_filename": str(settings.instance_dir / "celerybeat-schedule"),
    }
    for key, value in (conf.model_extra or {}).items():
        # Merge rather than replace option dicts, so e.g. a visibility_timeout set in
        # config keeps the priority settings above.
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            value = {**config[key], **value}
        config[key] = value
    return config


def configure(settings: Settings) -> None:
    """Apply settings to the ``celery`` instance (tasks stay registered).

    Takes effect for connections and the result backend not yet opened: call it
    before the first publish, as ``create_app`` does.
    """
    global _configured_with
    activate(settings)
    _configured_with = settings
    celery.conf.update(build_config(settings))


def celery_init_app(flask_app: Flask) -> Celery:
    """Bind ``flask_app`` to the Celery instance (Flask's "Background Tasks with Celery" pattern)."""
    global _flask_app
    settings: Settings = flask_app.extensions["admin_mit.settings"]
    if settings != _configured_with:
        configure(settings)
    _flask_app = flask_app
    celery.set_default()
    flask_app.extensions["celery"] = celery
    return celery


def get_flask_app() -> Flask:
    """The process's Flask app, bound by ``create_app`` (``celery_worker.py`` does it for workers)."""
    if _flask_app is None:
        raise RuntimeError("no Flask app is bound to Celery: start workers and beat with "
                           "`celery -A celery_worker.celery …`, or call app.create_app() first")
    return _flask_app


@signals.worker_init.connect
def _freeze_startup_heap(**_: Any) -> None:
    """Objects made at start-up live as long as the worker: keep the garbage collector off them.

    A full collection otherwise walks the whole heap (Flask, SQLAlchemy, Celery, the
    models) again and again while probes run; frozen before the pool forks, the children
    share those pages too instead of copying them when the collector touches them.
    """
    gc.collect()
    gc.freeze()


@signals.worker_process_init.connect
def _freeze_child_heap(**_: Any) -> None:
    gc.freeze()


@signals.before_task_publish.connect
def _translate_priority(properties: dict[str, Any], **_: Any) -> None:
    properties["priority"] = priority.to_broker(properties.get("priority"))


# --- who submitted what ----------------------------------------------------------------------
# Every published task id is recorded under SUBMITTED_KEY, so status can tell "queued" from
# "never existed", with the tenant the task runs for (its ``tenant_id`` argument), so a tenant
# sees and revokes only its own tasks. Value: JSON {"task": name, "tenant_id": int | null}.

TENANT_ARG = "tenant_id"


def as_tenant(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def tenant_of_call(task_name: str, args: Any, kwargs: Any) -> int | None:
    """The ``tenant_id`` argument of a call of ``task_name``; None when it has none or the call doesn't fit."""
    kwargs = kwargs if isinstance(kwargs, dict) else {}
    if TENANT_ARG in kwargs:
        return as_tenant(kwargs[TENANT_ARG])
    task = celery.tasks.get(task_name)
    if task is None or not isinstance(args, (list, tuple)) or not args:
        return None
    try:
        bound = inspect.signature(task.run).bind_partial(*args, **kwargs)
    except (TypeError, ValueError):
        return None
    return as_tenant(bound.arguments.get(TENANT_ARG))


def submission_marker(task_name: str, body: Any) -> str:
    """The value stored under ``SUBMITTED_KEY`` for a published message (``body`` as Celery sends it)."""
    if isinstance(body, (list, tuple)) and len(body) >= 2:  # protocol 2: (args, kwargs, embed)
        args, kwargs = body[0], body[1]
    elif isinstance(body, dict):  # protocol 1
        args, kwargs = body.get("args"), body.get("kwargs")
    else:
        args = kwargs = None
    return json.dumps({"task": task_name, TENANT_ARG: tenant_of_call(task_name, args, kwargs)})


def read_submission_marker(task_id: str) -> dict[str, Any] | None:
    """The task's marker; None if it was never submitted (or the marker expired with its result)."""
    raw = celery.backend.client.get(SUBMITTED_KEY.format(task_id))
    if raw is None:
        return None
    try:
        marker = json.loads(raw)
    except ValueError:
        marker = None
    return marker if isinstance(marker, dict) else {}


@signals.before_task_publish.connect
def _remember_submitted(headers: dict[str, Any], body: Any = None, **_: Any) -> None:
    task_id = headers.get("id")
    client = getattr(celery.backend, "client", None)
    if task_id and client is not None:
        marker = submission_marker(headers.get("task", ""), body)
        client.set(SUBMITTED_KEY.format(task_id), marker, ex=celery.conf.result_expires)


TASK_MODULES = ["app.tasks.network_probe_tasks", "app.tasks.alert_tasks", "app.tasks.ansible_tasks"]


class AdminMitCelery(Celery):
    @cached_property
    def Beat(self) -> type:  # noqa: N802 - Celery's name
        """What ``celery … beat`` runs; imported only by that command."""
        return self.subclass_with_self("app.beat_scheduler:BeatCommand")


celery = AdminMitCelery("admin_mit", task_cls=FlaskTask, include=TASK_MODULES)
configure(active_settings())
