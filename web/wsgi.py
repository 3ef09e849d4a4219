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
