"""Helpers for tests that run real KMI processes (Celery workers, beat, a web-side caller)."""
