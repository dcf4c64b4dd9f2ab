"""Periodic tasks sent by beat. Times are in the configured zone (``celery.timezone``).

Scheduled probes themselves are not beat entries: the beat scheduler
(``app.beat_scheduler``) claims due probes from the database about every
second. ``schedule-auto-probes`` reconciles the schedule and is a fallback
dispatcher for deployments that run a different beat scheduler.

``alert-housekeeping`` sends due reminders and retries, and takes over notifications
whose worker died mid-send (their lease ran out); once a minute it also evaluates
results no evaluation message announced (``alert-catch-up``). Both go ahead of the
evaluations queued on ``alerts`` (priority 9, as deliveries do), so a backlog of
evaluations delays neither a retry nor a rate-limited summary.

``ansible-housekeeping`` marks ``lost`` the executions whose worker went silent, publishes
again pending executions whose message was lost, and starts due execution templates.

``cleanup-old-probe-results`` passes ``retention.raw_days`` (30 by default, the guide's);
``prune-probe-rollups`` deletes the minute, hour and day rollups past their own retention.
"""

from typing import Any

from celery.schedules import crontab


def beat_schedule_for(raw_days: int = 30) -> dict[str, Any]:
    """The schedule with raw results kept ``raw_days`` days (the weekly deep cleanup never deletes sooner)."""
    schedule = {**beat_schedule}
    schedule['cleanup-old-probe-results'] = {**beat_schedule['cleanup-old-probe-results'], 'kwargs': {'days': raw_days}}
    deep = beat_schedule['deep-cleanup-probe-results']
    schedule['deep-cleanup-probe-results'] = {**deep, 'kwargs': {'days': max(raw_days, deep['kwargs']['days'])}}
    return schedule


beat_schedule = {
    'schedule-auto-probes': {
        'task': 'app.tasks.network_probe_tasks.schedule_auto_probes',
        'schedule': 60.0,
    },
    'cleanup-old-probe-results': {
        'task': 'app.tasks.network_probe_tasks.cleanup_old_results',
        'schedule': crontab(hour=2, minute=0),
        'kwargs': {'days': 30},
    },
    'alert-housekeeping': {
        'task': 'app.tasks.alert_tasks.alert_housekeeping',
        'schedule': 5.0,
        'options': {'expires': 30.0, 'priority': 9},
    },
    'alert-catch-up': {
        'task': 'app.tasks.alert_tasks.alert_housekeeping',
        'schedule': 60.0,
        'kwargs': {'catch_up': True},
        'options': {'expires': 120.0, 'priority': 9},
    },
    'ansible-housekeeping': {
        'task': 'app.tasks.ansible_tasks.ansible_housekeeping',
        'schedule': 10.0,
        'options': {'expires': 30.0, 'priority': 9},
    },
    'deep-cleanup-probe-results': {
        'task': 'app.tasks.network_probe_tasks.cleanup_old_results',
        'schedule': crontab(hour=3, minute=0, day_of_week=0),
        'kwargs': {'days': 90},
    },
    'prune-probe-rollups': {
        'task': 'app.tasks.network_probe_tasks.prune_rollups',
        'schedule': crontab(hour=2, minute=30),
    },
}
