"""OCSP over HTTP (RFC 6960 Appendix A, RFC 5019): ``POST /ocsp/<ca>``, ``GET /ocsp/<ca>/<base64>``.

The hot path is lean on purpose: ``web.wsgi`` hands ``/ocsp/`` straight to ``wsgi_app`` below,
before Django's middleware, and a pre-signed response costs one Redis GET and no database
query. ``ocsp_view`` is the same responder behind Django's URL map (``runserver``, tests'
live server, deployments that do not use ``web.wsgi``). Skipping the middleware also skips
Django's ``ALLOWED_HOSTS`` check, so ``wsgi_app`` makes the same check itself (``host_allowed``).

``wsgi_app`` may never diverge from ``ocsp_view``: the same response bytes, status, caching
headers (RFC 5019 §6) and host check; tests/web/protocols/test_ocsp.py runs both
(``test_raw_get_carries_the_same_caching_headers``, ``test_raw_path_checks_the_host_like_django``).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import logging
import re
from collections.abc import Callable, Iterable
from email.utils import format_datetime
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.http import HttpRequest, HttpResponse
from django.http.request import split_domain_port, validate_host
from django.views.decorators.csrf import csrf_exempt

from pki.conf import ocsp_settings
from pki.ocsp import INTERNAL_ERROR, MALFORMED, TRY_LATER, Answer, answer
from web.metrics import RESPONSES

log = logging.getLogger(__name__)
host_log = logging.getLogger("django.security.DisallowedHost")

PREFIX = "/ocsp/"
CONTENT_TYPE = "application/ocsp-response"
ALLOWED = "GET, POST"
# A CA generation's repository name (pki.locations): "issuing", "issuing.g2".
_CA_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}(?:\.g[1-9][0-9]{0,5})?$")
_B64_TRANSLATE = str.maketrans("-_", "+/")  # some clients send the URL-safe alphabet

Headers = list[tuple[str, str]]


def _http_date(when: dt.datetime) -> str:
    return format_datetime(when.astimezone(dt.UTC), usegmt=True)


def _decode_get(encoded: str, max_bytes: int) -> bytes | None:
    """Decode the base64 request of a GET (RFC 6960 Appendix A.1); None when it is not base64."""
    text = encoded.strip().translate(_B64_TRANSLATE)
    if len(text) > (max_bytes * 4) // 3 + 4:
        return None
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


Reply = tuple[str, Headers, bytes]


def _ocsp(result: Answer, *, method: str, now: dt.datetime, if_none_match: str | None) -> Reply:
    headers: Headers = [("Content-Type", CONTENT_TYPE)]
    if method == "GET":
        if result.cacheable and result.this_update is not None and result.next_update is not None:
            # RFC 5019 §6.2: cache until nextUpdate; the ETag names these exact bytes.
            max_age = max(0, int((result.next_update - now).total_seconds()))
            etag = '"' + hashlib.sha256(result.der).hexdigest() + '"'
            headers += [
                ("Cache-Control", f"max-age={max_age}, public, no-transform, must-revalidate"),
                ("Last-Modified", _http_date(result.this_update)),
                ("Expires", _http_date(result.next_update)),
                ("ETag", etag),
            ]
            if if_none_match is not None and etag in {t.strip() for t in if_none_match.split(",")}:
                return "304 Not Modified", headers[1:], b""
        else:
            headers.append(("Cache-Control", "no-store"))
    headers.append(("Content-Length", str(len(result.der))))
    return "200 OK", headers, result.der


def _plain(status: str, text: str, extra: Headers | None = None) -> Reply:
    body = (text + "\n").encode()
    headers = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))]
    return status, headers + (extra or []), body


def _read_post(
    read_body: Callable[[int], bytes], content_length: str | None, max_bytes: int
) -> bytes | Reply:
    """The POST body, or the HTTP error to send instead."""
    too_large = _plain("413 Content Too Large", f"an OCSP request is at most {max_bytes} bytes")
    if not content_length:
        body = read_body(max_bytes + 1)
        return too_large if len(body) > max_bytes else body
    try:
        length = int(content_length)
    except ValueError:
        return _plain("400 Bad Request", "bad Content-Length")
    if length > max_bytes:
        return too_large
    return read_body(length) if length > 0 else b""


def respond(
    *,
    method: str,
    path: str,
    read_body: Callable[[int], bytes],
    content_length: str | None,
    if_none_match: str | None = None,
) -> Reply:
    """Answer one HTTP request under ``/ocsp/``; ``path`` is what follows the prefix."""
    if method not in {"GET", "POST"}:
        return _plain("405 Method Not Allowed", "OCSP takes GET and POST", [("Allow", ALLOWED)])
    now = dt.datetime.now(dt.UTC)
    ca_name, _, encoded = path.partition("/")
    max_bytes = ocsp_settings().max_request_bytes
    try:
        if method == "POST":
            read = _read_post(read_body, content_length, max_bytes)
            if isinstance(read, tuple):
                return read
            body = read
        else:
            if len(encoded) > (max_bytes * 4) // 3 + 4:
                return _plain("414 URI Too Long", f"an OCSP request is at most {max_bytes} bytes")
            decoded = _decode_get(encoded, max_bytes) if encoded else None
            if decoded is None:
                return _ocsp(MALFORMED, method=method, now=now, if_none_match=None)
            body = decoded
        result = answer(body, ca_name=ca_name if _CA_NAME.match(ca_name) else "", now=now)
    except DatabaseError as exc:
        # The database is down: what Redis (or this process) held was answered above; the rest
        # is tryLater (RFC 6960 §2.3), the status for a responder that is temporarily unable.
        log.warning("OCSP: database unavailable (%s); answering tryLater", type(exc).__name__)
        result = TRY_LATER
    except Exception:  # OCSP answers internalError, never an HTTP 500
        log.exception("OCSP: internal error answering %s for CA %r", method, ca_name[:64])
        result = INTERNAL_ERROR
    return _ocsp(result, method=method, now=now, if_none_match=if_none_match)


def _close_old_connection() -> None:
    """What Django's request signals do for the database (close a broken or too old connection),
    without the cost of dispatching them on the hot path."""
    conn = connections[DEFAULT_DB_ALIAS]
    # Inside an atomic block (only ever a test's transaction here) nothing may be closed.
    if conn.connection is not None and not conn.in_atomic_block:
        conn.close_if_unusable_or_obsolete()


def _raw_host(environ: dict[str, Any]) -> str:
    """The Host as Django's ``HttpRequest._get_raw_host`` reads it (PEP 3333 fallback)."""
    if settings.USE_X_FORWARDED_HOST and "HTTP_X_FORWARDED_HOST" in environ:
        return str(environ["HTTP_X_FORWARDED_HOST"])
    if "HTTP_HOST" in environ:
        return str(environ["HTTP_HOST"])
    host, port = str(environ.get("SERVER_NAME", "")), str(environ.get("SERVER_PORT", ""))
    default_port = "443" if environ.get("wsgi.url_scheme") == "https" else "80"
    return host if port == default_port else f"{host}:{port}"


def host_allowed(environ: dict[str, Any]) -> bool:
    """Django's ``ALLOWED_HOSTS`` check (``HttpRequest.get_host``), which this path would skip."""
    allowed = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]
    domain, _ = split_domain_port(_raw_host(environ))
    return bool(domain) and validate_host(domain, allowed)


def wsgi_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """The raw WSGI responder for ``/ocsp/…`` (dispatched by ``web.wsgi`` before Django)."""
    if not host_allowed(environ):
        # What Django answers for a DisallowedHost: 400, logged on the same logger.
        host_log.warning("Invalid HTTP_HOST header: %r (OCSP)", _raw_host(environ)[:255])
        status, headers, body = _plain("400 Bad Request", "invalid Host header")
        RESPONSES.labels("ocsp", "400").inc()
        start_response(status, headers)
        return [body]
    _close_old_connection()
    try:
        stream = environ["wsgi.input"]
        status, headers, body = respond(
            method=environ.get("REQUEST_METHOD", "GET"),
            path=environ.get("PATH_INFO", "")[len(PREFIX) :],
            read_body=stream.read,
            content_length=environ.get("CONTENT_LENGTH"),
            if_none_match=environ.get("HTTP_IF_NONE_MATCH"),
        )
    finally:
        _close_old_connection()
    # This path skips Django's middleware, so it counts its own responses for /metrics.
    RESPONSES.labels("ocsp", status.split(" ", 1)[0]).inc()
    start_response(status, headers)
    return [body]


@csrf_exempt
def ocsp_view(request: HttpRequest, path: str = "") -> HttpResponse:
    """The responder behind Django's URL map (same answers as ``wsgi_app``)."""
    status, headers, body = respond(
        method=request.method or "GET",
        path=path,
        read_body=request.read,
        content_length=request.META.get("CONTENT_LENGTH"),
        if_none_match=request.headers.get("If-None-Match"),
    )
    response = HttpResponse(body, status=int(status.split(" ", 1)[0]))
    for name, value in headers:
        response[name] = value
    return response


class OCSPDispatcher:
    """WSGI middleware: ``/ocsp/…`` to the raw responder, everything else to Django."""

    def __init__(self, django_app: Callable[..., Iterable[bytes]]) -> None:
        self.django_app = django_app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        """Route one request."""
        if environ.get("PATH_INFO", "").startswith(PREFIX):
            return wsgi_app(environ, start_response)
        return self.django_app(environ, start_response)
