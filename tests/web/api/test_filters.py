"""Query-string filters: the FilterSets of web/api/filters.py filter the lists, refuse bad values
with a 400 problem document naming the parameter, and are what the OpenAPI schema documents."""

from __future__ import annotations

import ast
import datetime as dt
from pathlib import Path

import pytest
from drf_spectacular.generators import SchemaGenerator

from pki import audit
from pki.clock import utcnow
from web.api import filters
from web.api.views import audit_events, certificate_requests, certificates, grants

pytestmark = pytest.mark.django_db

VIEWS = Path(__file__).resolve().parents[3] / "web" / "api" / "views"

FILTERED = [
    ("/api/v1/requests/", certificate_requests.CertificateRequestViewSet, filters.CertificateRequestFilter),
    ("/api/v1/certificates/", certificates.CertificateViewSet, filters.CertificateFilter),
    ("/api/v1/audit-events/", audit_events.AuditEventViewSet, filters.AuditEventFilter),
    ("/api/v1/audit-events/export/", audit_events.AuditEventViewSet, filters.AuditEventFilter),
    ("/api/v1/grants/", grants.RoleGrantViewSet, filters.RoleGrantFilter),
]


def test_the_schema_documents_exactly_the_filtersets_filters():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    for url, view, filterset in FILTERED:
        assert view.filterset_class is filterset
        params = {p["name"]: p for p in schema["paths"][url]["get"]["parameters"] if p["in"] == "query"}
        assert set(params) - {"cursor", "page_size"} == set(filterset.base_filters), url
        for name, declared in filterset.base_filters.items():
            assert params[name]["description"].startswith(declared.extra["help_text"]), (url, name)
    certificate_params = {
        p["name"]: p["schema"] for p in schema["paths"]["/api/v1/certificates/"]["get"]["parameters"]
    }
    assert certificate_params["state"]["enum"] == ["expired", "revoked", "valid"]
    assert certificate_params["expiring_before"]["format"] == "date-time"


def test_no_view_keeps_a_hand_written_parameter_list():
    for path in sorted(VIEWS.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        names |= {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
        assert "OpenApiParameter" not in names, path.name
        assert "query_params" not in names or path.name == "base.py", path.name


@pytest.mark.parametrize(
    ("url", "params", "field"),
    [
        ("/api/v1/requests/", {"state": "sideways"}, "state"),
        ("/api/v1/certificates/", {"state": "odd"}, "state"),
        ("/api/v1/certificates/", {"expiring_before": "soon"}, "expiring_before"),
        ("/api/v1/certificates/", {"expiring_before": "2026-01-01T00:00:00+99:00"}, "expiring_before"),
        ("/api/v1/audit-events/", {"since": "yesterday"}, "since"),
        ("/api/v1/audit-events/export/", {"until": "9999-99-99"}, "until"),
        ("/api/v1/grants/", {"role": "emperor"}, "role"),
        ("/api/v1/grants/", {"user": "pat\x00"}, "user"),
    ],
)
def test_a_bad_filter_value_is_a_400_problem_naming_it(admin, url, params, field):
    response = admin.client.get(url, params)
    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/problem+json"
    assert [e["field"] for e in response.json()["errors"]] == [field]


def test_audit_filters_apply_to_the_list_and_the_export(admin):
    now = utcnow()
    audit.record(action="test.filtered", actor="filter-test", obj=None, details={}, now=now)
    since = (now - dt.timedelta(seconds=1)).isoformat()
    listed = admin.client.get("/api/v1/audit-events/", {"actor": "filter-test", "since": since}).json()
    assert [e["action"] for e in listed["results"]] == ["test.filtered"]
    exported = admin.client.get("/api/v1/audit-events/export/", {"action": "test.filtered"})
    assert b"".join(exported.streaming_content).count(b"\n") == 1
    later = (now + dt.timedelta(seconds=1)).date().isoformat()  # a date: midnight UTC
    assert (
        admin.client.get("/api/v1/audit-events/", {"actor": "filter-test", "until": later}).status_code == 200
    )
    assert (
        admin.client.get("/api/v1/audit-events/", {"actor": "filter-test", "until": since}).json()["results"]
        == []
    )


def test_filters_apply_to_lists_only(admin):
    grant = admin.client.get("/api/v1/grants/").json()["results"][0]
    assert admin.client.get("/api/v1/grants/", {"user": "nobody"}).json()["results"] == []
    detail = admin.client.get(f"/api/v1/grants/{grant['id']}/", {"user": "nobody"})
    assert detail.status_code == 200
