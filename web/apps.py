"""The web layer as a Django app (for its admin module and templates)."""

from django.apps import AppConfig


class WebConfig(AppConfig):
    """HTTP adapters over ``pki``."""

    name = "web"
    verbose_name = "KMI web"

    def ready(self) -> None:
        """Connect the metrics receivers (signing latency and errors) in every process."""
        import web.metrics  # noqa: F401
