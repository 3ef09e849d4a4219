"""Cookies over HTTPS are Secure, whatever terminated TLS (Django's settings are static); one
Content-Security-Policy header, built once."""

from __future__ import annotations

from collections.abc import Callable

from csp.constants import HEADER
from csp.utils import build_policy
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


class ContentSecurityPolicy:
    """Sets ``Content-Security-Policy`` (``settings.CONTENT_SECURITY_POLICY``) on every response.

    django-csp's middleware builds the header anew for each response (twice: it also builds the
    report-only one), about a tenth of a millisecond an enrollment; KMI's policy is the same for
    every response (no nonces, no per-view changes), so it is built once, with django-csp's own
    builder. A response that sets its own header, or is marked ``_csp_exempt``, keeps it; paths
    under ``EXCLUDE_URL_PREFIXES`` get none.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response
        self.header = build_policy()
        self.excluded = tuple(settings.CONTENT_SECURITY_POLICY.get("EXCLUDE_URL_PREFIXES", ()))

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        if (
            HEADER not in response
            and not getattr(response, "_csp_exempt", False)
            and not request.path_info.startswith(self.excluded)
        ):
            response[HEADER] = self.header
        return response
