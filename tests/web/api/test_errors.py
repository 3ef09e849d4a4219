"""Every body the API cannot read is an RFC 7807 problem document, never a 500 or an HTML page."""

from __future__ import annotations

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db

DEEP = "[" * 100_000 + "]" * 100_000


def _problem(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert (body["status"], body["code"]) == (status, code)
    return body


@pytest.mark.parametrize("path", ["/api/v1/enroll", "/api/v1/requests/", "/api/v1/tokens/"])
def test_deeply_nested_json_is_a_400_parse_error(requester, path):
    for body in (DEEP, '{"csr": ' + DEEP[:20_000] + DEEP[-20_000:] + "}"):
        response = requester.client.post(path, body, content_type="application/json")
        assert "nested too deeply" in _problem(response, 400, "parse_error")["detail"]


def test_a_10_mb_body_is_a_413_problem_document(requester, settings):
    body = '{"csr": "' + "A" * 10_000_000 + '", "ca": "issuing", "profile": "tls-server"}'
    response = requester.client.post("/api/v1/enroll", body, content_type="application/json")
    detail = _problem(response, 413, "too_large")["detail"]
    assert f"larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes" in detail


def test_a_suspicious_request_under_api_is_a_problem_document_and_html_elsewhere(db):
    client = Client(HTTP_HOST="bad host name")
    _problem(client.get("/api/v1/certificates/"), 400, "bad_request")
    assert client.get("/admin/")["Content-Type"].startswith("text/html")
