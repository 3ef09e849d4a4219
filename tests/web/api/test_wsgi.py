"""web.wsgi: token-authenticated API calls take the lean middleware stack; the rest the full one."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest
from cryptography import x509
from django.core import signals
from django.core.handlers.wsgi import WSGIHandler
from django.db import close_old_connections
from django.middleware.csrf import CsrfViewMiddleware

from pki.models import Certificate
from tests.conftest import make_csr
from web.api.wsgi import SKIPPED, LeanHandler, is_token_api_call

pytestmark = pytest.mark.django_db


@pytest.fixture
def application() -> Iterator[object]:
    """The gunicorn entry point, kept from closing the test's connection (as Django's test client is)."""
    from web.wsgi import application as app

    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield app
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


def _call(
    app, method: str, path: str, body: bytes = b"", **headers: str
) -> tuple[str, dict[str, str], bytes]:
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "pki.example.test",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": io.StringIO(),
        "CONTENT_LENGTH": str(len(body)),
        "CONTENT_TYPE": "application/json",
        **headers,
    }
    seen: dict[str, object] = {}

    def start_response(status: str, response_headers: list[tuple[str, str]], exc_info: object = None) -> None:
        seen["status"], seen["headers"] = status, dict(response_headers)

    content = b"".join(app(environ, start_response))  # type: ignore[operator]
    return str(seen["status"]), dict(seen["headers"]), content  # type: ignore[call-overload]


def test_token_api_calls_are_recognised_by_path_and_keyword():
    assert is_token_api_call({"PATH_INFO": "/api/v1/enroll", "HTTP_AUTHORIZATION": "Bearer kmi_x_y"})
    assert is_token_api_call({"PATH_INFO": "/api/v1/cas/", "HTTP_AUTHORIZATION": "token kmi_x_y"})
    assert not is_token_api_call({"PATH_INFO": "/api/v1/cas/"})
    assert not is_token_api_call({"PATH_INFO": "/api/v1/cas/", "HTTP_AUTHORIZATION": "Basic eDp5"})
    assert not is_token_api_call({"PATH_INFO": "/admin/", "HTTP_AUTHORIZATION": "Bearer kmi_x_y"})


def test_lean_handler_has_no_csrf_check_and_leaves_the_settings_as_they_were(settings):
    full, lean = WSGIHandler(), LeanHandler()
    csrf = [m for m in full._view_middleware if isinstance(m.__self__, CsrfViewMiddleware)]
    assert csrf
    assert not [m for m in lean._view_middleware if isinstance(m.__self__, CsrfViewMiddleware)]
    assert all(name in settings.MIDDLEWARE for name in SKIPPED)  # the full stack is untouched


def test_token_enrollment_through_the_wsgi_entry_point_sets_no_cookie(application, requester):
    body = json.dumps(
        {
            "csr": make_csr(sans=[x509.DNSName("www.example.test")]).decode(),
            "ca": "issuing",
            "profile": "tls-server",
        }
    )
    status, headers, content = _call(
        application, "POST", "/api/v1/enroll", body.encode(), HTTP_AUTHORIZATION=f"Bearer {requester.token}"
    )
    assert status.startswith("201"), content
    assert headers["Content-Type"] == "application/pem-certificate-chain"
    assert "Set-Cookie" not in headers
    assert "Cookie" not in headers.get("Vary", "")
    assert headers["X-Frame-Options"] == "DENY"  # what still applies is still there
    assert Certificate.objects.filter(subject="CN=www.example.test").count() == 1


def test_calls_without_a_token_still_get_the_full_stack(application):
    status, headers, content = _call(application, "POST", "/api/v1/enroll", b"{}")
    assert status.startswith("401")
    assert headers["Content-Type"] == "application/problem+json"
    assert json.loads(content)["code"] == "not_authenticated"
