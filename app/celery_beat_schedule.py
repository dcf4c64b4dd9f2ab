"""Periodic tasks sent by beat. Times are in the configured zone (``celery.timezone``).

Scheduled probes themselves are not beat entries: the beat scheduler
(``app.beat_scheduler``) claims due probes from the database about every
second. ``schedule-auto-probes`` reconciles the schedule and is a fallback
dispatcher for deployments that run a different beat scheduler.
"""

from celery.schedules import crontab

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
    'deep-cleanup-probe-results': {
        'task': 'app.tasks.network_probe_tasks.cleanup_old_results',
        'schedule': crontab(hour=3, minute=0, day_of_week=0),
        'kwargs': {'days': 90},
    },
}
