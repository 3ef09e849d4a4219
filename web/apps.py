"""The web layer as a Django app (for its admin module and templates)."""

from django.apps import AppConfig


class WebConfig(AppConfig):
    """HTTP adapters over ``pki``."""

    name = "web"
    verbose_name = "KMI web"

    def ready(self) -> None:
        """Connect the Celery adapters' signal receivers in every process (web, worker, CLI)."""
        import pki.tasks  # noqa: F401
