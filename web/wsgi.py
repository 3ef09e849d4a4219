"""WSGI entry point for gunicorn.

``/ocsp/…`` goes straight to the raw OCSP responder (no Django middleware: it is the hottest,
simplest path of KMI); token-authenticated ``/api/…`` calls go to Django with a lean middleware
stack (web/api/wsgi.py); everything else goes to Django.
"""

import logging
import os
from typing import Any

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "web.settings")
django_application = get_wsgi_application()

from web.api.wsgi import TokenApiDispatcher  # noqa: E402 — needs Django set up first
from web.protocols.ocsp import OCSPDispatcher  # noqa: E402


class _StartupCheck:
    """Runs the key-backend check of this process once, on its first request (a database query
    cannot run while the module is imported: tests import it, and gunicorn may fork after)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.checked = False

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if not self.checked:
            self.checked = True
            _log_unreachable_key_backends()
        return self.app(environ, start_response)


def _log_unreachable_key_backends() -> None:
    """Say loudly, when a process starts serving, which CAs it cannot sign for (pki.keys.health)."""
    from django.db import DatabaseError

    from pki.keys.health import log_unreachable_backends
    from pki.signing import signs_here

    if not signs_here():
        return
    try:
        log_unreachable_backends()
    except DatabaseError:  # the database is down: /healthz says so
        pass
    except Exception as exc:  # noqa: BLE001 - a start-up diagnostic never fails the request it rides on
        logging.getLogger(__name__).warning("could not check the CAs' key backends: %s", exc)


# The check runs on the first request Django serves (a health check, right after start-up), not
# on the raw OCSP path or the lean token API path.
application = OCSPDispatcher(TokenApiDispatcher(_StartupCheck(django_application)))
