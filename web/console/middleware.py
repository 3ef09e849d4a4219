"""Cookies over HTTPS are Secure, whatever terminated TLS (Django's settings are static)."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponseBase


class SecureCookiesOverHttps:
    """Marks the session and CSRF cookies ``Secure`` on responses to HTTPS requests.

    ``request.is_secure()`` is true for a direct TLS connection and, with
    ``KMI_BEHIND_TLS_PROXY``, for a request the proxy received over HTTPS; over plain HTTP (the
    ``make run`` development server) the cookies stay usable.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        if request.is_secure():
            for name in (settings.SESSION_COOKIE_NAME, settings.CSRF_COOKIE_NAME):
                if name in response.cookies:
                    response.cookies[name]["secure"] = True
        return response
