"""WSGI entry point for gunicorn.

``/ocsp/…`` goes straight to the raw OCSP responder (no Django middleware: it is the hottest,
simplest path of KMI); token-authenticated ``/api/…`` calls go to Django with a lean middleware
stack (web/api/wsgi.py); everything else goes to Django.
"""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "web.settings")
django_application = get_wsgi_application()

from web.api.wsgi import TokenApiDispatcher  # noqa: E402 — needs Django set up first
from web.protocols.ocsp import OCSPDispatcher  # noqa: E402

application = OCSPDispatcher(TokenApiDispatcher(django_application))


def _log_unreachable_key_backends() -> None:
    """Say loudly at start-up which CAs this process cannot sign for (pki.keys.health)."""
    import contextlib

    from django.db import DatabaseError

    from pki.keys.health import log_unreachable_backends
    from pki.signing import signs_here

    if not signs_here():
        return
    with contextlib.suppress(DatabaseError):  # the database is down: /healthz says so
        log_unreachable_backends()


_log_unreachable_key_backends()
