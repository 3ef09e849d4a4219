"""The audit trail over the API: list, filter, JSON-lines export, and verification that catches tampering."""

from __future__ import annotations

import json

import pytest
from cryptography import x509

from pki.enrollment import enroll
from pki.models import AuditEvent, Profile
from tests.conftest import make_csr
from tests.support.tamper import triggers_off

pytestmark = pytest.mark.django_db


@pytest.fixture
def issued(issuing_ca, requester):
    csr = make_csr(sans=[x509.DNSName("www.example.test")])
    return enroll(
        ca=issuing_ca, profile=Profile.objects.get(name="tls-server"), csr=csr, actor="rita"
    ).certificate


def test_auditor_lists_and_filters_events(auditor, issued):
    body = auditor.client.get("/api/v1/audit-events/", {"action": "certificate.issued"}).json()
    serials = [e["details"]["serial"] for e in body["results"]]
    assert issued.serial in serials
    assert all(e["action"] == "certificate.issued" for e in body["results"])
    params = {"object_type": "certificate", "object_id": str(issued.pk)}
    by_object = auditor.client.get("/api/v1/audit-events/", params).json()["results"]
    assert [e["action"] for e in by_object] == ["certificate.issued"]
    assert auditor.client.get("/api/v1/audit-events/", {"since": "yesterday"}).status_code == 400


def test_export_streams_json_lines_oldest_first(auditor, issued):
    response = auditor.client.get("/api/v1/audit-events/export/", {"actor": "rita"})
    assert response.status_code == 200
    assert response["Content-Type"] == "application/x-ndjson"
    lines = b"".join(response.streaming_content).decode().splitlines()
    events = [json.loads(line) for line in lines]
    assert [e["action"] for e in events] == ["request.submitted", "certificate.issued"]
    assert events[0]["id"] < events[1]["id"]
    assert all(len(e["hash"]) == 64 for e in events)


def test_verify_reports_a_whole_chain_then_catches_an_edited_row(auditor, issued):
    ok = auditor.client.get("/api/v1/audit-events/verify/").json()
    assert ok["ok"] is True
    assert ok["breaks"] == []
    assert ok["events"] == AuditEvent.objects.count()
    target = AuditEvent.objects.get(action="certificate.issued", object_id=str(issued.pk))
    # Someone with database access rewrites history: the serial in the event changes.
    with triggers_off():
        AuditEvent.objects.filter(pk=target.pk).update(details={**target.details, "serial": "00"})
    broken = auditor.client.get("/api/v1/audit-events/verify/").json()
    assert broken["ok"] is False
    assert broken["breaks"] == [
        {"stream": target.stream, "seq": target.seq, "event_id": target.pk, "problem": "event was altered"}
    ]


def test_audit_trail_is_closed_to_requesters_and_operators(requester, operator, issued):
    for actor in (requester, operator):
        assert actor.client.get("/api/v1/audit-events/").status_code == 403
        assert actor.client.get("/api/v1/audit-events/verify/").status_code == 403
        assert actor.client.get("/api/v1/audit-events/export/").status_code == 403


def test_grants_are_audited(make_actor, issuing_ca):
    from pki.access import revoke_grant
    from pki.models import Role, RoleGrant

    make_actor("otto", (Role.CA_OPERATOR, issuing_ca, None))
    grant = RoleGrant.objects.get(user__username="otto")
    event = AuditEvent.objects.get(action="access.granted", object_id=str(grant.pk))
    assert event.details == {"user": "otto", "role": "ca_operator", "ca": "issuing", "profile": None}
    revoke_grant(grant=grant, actor="test")
    assert AuditEvent.objects.filter(action="access.revoked", object_id=str(grant.pk)).exists()
    assert not RoleGrant.objects.filter(user__username="otto").exists()
