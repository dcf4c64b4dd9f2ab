"""Celery tasks. Each is a thin wrapper: take ids, call a service, return a small dict."""
