"""The alerting engine: rules, notification channels and message templates; it imports nothing of the app."""
