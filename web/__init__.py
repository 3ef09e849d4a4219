"""KMI web layer: settings, URLs, Celery app and HTTP adapters over ``pki``."""

from web.celery import app as celery_app

__all__ = ["celery_app"]
