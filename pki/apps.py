"""Django app configuration for the PKI domain."""

from django.apps import AppConfig


class PkiConfig(AppConfig):
    """The ``pki`` app: models, use cases and management commands."""

    name = "pki"
    verbose_name = "KMI PKI"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Validate the PKI settings once at start-up, so bad values fail fast."""
        from pki import (
            signing_use_cases,  # noqa: F401 — registers the signing use cases by name
            tasks,  # noqa: F401 — connects the Celery receivers of the domain signals
        )
        from pki.acme.conf import acme_settings
        from pki.conf import lifecycle_settings, ocsp_settings, pki_settings

        pki_settings()
        ocsp_settings()
        lifecycle_settings()
        acme_settings()
