"""The bridge between the web app and the engine: a Celery app and thin tasks."""
