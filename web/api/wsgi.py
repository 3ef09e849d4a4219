"""A leaner Django handler for token-authenticated API calls (``Authorization: Bearer …``).

A call that carries an API token needs no session, CSRF cookie, ``request.user`` from the
session, messages or static files: ``web.wsgi`` sends it to a second Django handler whose
middleware is only what still applies to it (metrics, security headers, common URL handling,
X-Frame-Options). Everything else, the browser's session-authenticated API calls included,
goes through the full stack.

It may never diverge from the full stack in what a token-authenticated call is answered: the
same URL map and views, the same security headers, no cookie; tests/web/api/test_wsgi.py runs
both.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings
from django.core.handlers.wsgi import WSGIHandler

from web.api.auth import offers_token

# Middleware a token-authenticated API call does not use (it never reads or sets a cookie).
SKIPPED = frozenset(
    {
        "whitenoise.middleware.WhiteNoiseMiddleware",
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "django.contrib.messages.middleware.MessageMiddleware",
    }
)


class LeanHandler(WSGIHandler):
    """Django's WSGI handler with ``settings.MIDDLEWARE`` minus ``SKIPPED``."""

    def load_middleware(self, is_async: bool = False) -> None:
        """Build the chain from the lean list (settings are put back at once)."""
        full = settings.MIDDLEWARE
        settings.MIDDLEWARE = [m for m in full if m not in SKIPPED]
        try:
            super().load_middleware(is_async)
        finally:
            settings.MIDDLEWARE = full


def is_token_api_call(environ: dict[str, Any]) -> bool:
    """True for ``/api/…`` requests that present an API token."""
    if not environ.get("PATH_INFO", "").startswith("/api/"):
        return False
    return offers_token(str(environ.get("HTTP_AUTHORIZATION", "")))


class TokenApiDispatcher:
    """WSGI middleware: token-authenticated API calls to ``LeanHandler``, the rest to ``app``."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.lean = LeanHandler()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        """Route one request."""
        if is_token_api_call(environ):
            return self.lean(environ, start_response)
        return self.app(environ, start_response)
