"""WSGI entry point for gunicorn.

``/ocsp/…`` goes straight to the raw OCSP responder (no Django middleware: it is the hottest,
simplest path of KMI); everything else goes to Django.
"""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "web.settings")
django_application = get_wsgi_application()

from web.protocols.ocsp import OCSPDispatcher  # noqa: E402 — needs Django set up first

application = OCSPDispatcher(django_application)
