"""Domain logic shared by the CLI, the Celery tasks and (later) the HTTP API."""
