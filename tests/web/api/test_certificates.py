"""Certificates over the API: search, cursor pages, downloads, renew and revoke."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7
from django.db import connection
from django.test.utils import CaptureQueriesContext

from pki.enrollment import enroll
from pki.models import AuditEvent, Certificate, Profile, Role
from tests.conftest import NOW, make_csr

pytestmark = pytest.mark.django_db


def _issue(ca, owner, name, profile="tls-server", key="ec-p256"):
    csr = make_csr(key, subject=f"CN={name}", sans=[x509.DNSName(name)])
    result = enroll(
        ca=ca, profile=Profile.objects.get(name=profile), csr=csr, actor="test", requester=owner.user
    )
    return result.certificate


@pytest.fixture
def certs(issuing_ca, requester):
    with time_machine.travel(NOW, tick=False):
        return [_issue(issuing_ca, requester, f"host{i}.example.test") for i in range(5)]


@pytest.fixture(autouse=True)
def _frozen():
    with time_machine.travel(NOW + dt.timedelta(days=1), tick=False):
        yield


def test_cursor_pages_walk_every_certificate_once_newest_first(admin, certs):
    seen = []
    url = "/api/v1/certificates/?page_size=2&profile=tls-server"
    while url:
        page = admin.client.get(url).json()
        seen += [c["id"] for c in page["results"]]
        url = page["next"]
    assert seen == sorted((c.pk for c in certs), reverse=True)


def test_certificate_list_costs_a_fixed_number_of_queries(admin, requester, issuing_ca, certs):
    admin.client.get("/api/v1/certificates/")  # warm the content-type and grant caches of the client path
    with CaptureQueriesContext(connection) as few:
        assert admin.client.get("/api/v1/certificates/?page_size=2").status_code == 200
    with CaptureQueriesContext(connection) as many:
        body = admin.client.get("/api/v1/certificates/?page_size=200").json()
    assert len(body["results"]) == 7  # five leaves and two CA certificates
    assert len(many) == len(few) <= 4  # token+user, grants, page: no query per row
    page_sql = many.captured_queries[-1]["sql"]
    assert 'ORDER BY "pki_certificate"."id" DESC' in page_sql
    assert "OFFSET" not in page_sql
    assert '"der"' not in page_sql.split("FROM")[0]


def test_request_and_audit_lists_cost_a_fixed_number_of_queries(admin, certs):
    for url in ("/api/v1/requests/", "/api/v1/audit-events/", "/api/v1/keys/", "/api/v1/cas/"):
        with CaptureQueriesContext(connection) as few:
            admin.client.get(url + "?page_size=1")
        with CaptureQueriesContext(connection) as many:
            assert admin.client.get(url + "?page_size=100").status_code == 200
        assert len(many) == len(few) <= 4, url


def test_filters_by_state_expiry_search_and_ca(operator, certs):
    from pki.revocation import revoke_certificate

    revoke_certificate(certificate=certs[0], reason="superseded", actor="test")
    c = operator.client

    def ids(**params):
        return sorted(r["id"] for r in c.get("/api/v1/certificates/", params).json()["results"])

    leaves = sorted(x.pk for x in certs)
    assert ids(state="revoked") == [certs[0].pk]
    assert ids(state="valid", profile="tls-server") == leaves[1:]
    assert ids(q="host3.example") == [certs[3].pk]
    assert ids(q="DNS:HOST3.EXAMPLE.TEST") == [certs[3].pk]
    assert ids(q=certs[1].serial[4:20]) == [certs[1].pk]
    assert ids(serial=certs[2].serial) == [certs[2].pk]
    assert ids(expiring_before=(NOW + dt.timedelta(days=100)).isoformat(), profile="tls-server") == leaves[1:]
    assert ids(expiring_before="2026-06-10") == []
    assert ids(ca="root") == []  # the operator of "issuing" sees nothing issued by root
    with time_machine.travel(NOW + dt.timedelta(days=200), tick=False):
        assert ids(state="expired") == leaves
    bad = c.get("/api/v1/certificates/", {"expiring_before": "soon"})
    assert bad.status_code == 400
    assert bad.json()["errors"][0]["field"] == "expiring_before"
    assert c.get("/api/v1/certificates/", {"state": "odd"}).status_code == 400


def test_downloads_in_every_format(requester, certs):
    cert = certs[0]
    base = f"/api/v1/certificates/{cert.pk}/"
    c = requester.client
    pem = c.get(base + "pem/")
    assert pem["Content-Type"] == "application/pem-certificate-chain"
    assert x509.load_pem_x509_certificate(pem.content).serial_number == cert.serial_int
    der = c.get(base + "der/", HTTP_ACCEPT="application/pkix-cert")
    assert der["Content-Type"] == "application/pkix-cert"
    assert der.content == bytes(cert.der)
    assert 'filename="' in der["Content-Disposition"]
    chain = x509.load_pem_x509_certificates(c.get(base + "chain/").content)
    assert len(chain) == 3
    p7 = c.get(base + "pkcs7/")
    assert p7["Content-Type"].startswith("application/pkcs7-mime")
    # A SET OF in DER: the order is the encoding's, not the chain's.
    assert {x.serial_number for x in pkcs7.load_der_pkcs7_certificates(p7.content)} == {
        x.serial_number for x in chain
    }
    missing = c.get("/api/v1/certificates/999999/der/", HTTP_ACCEPT="application/pkix-cert")
    assert missing.status_code == 404
    assert missing.json()["code"] == "not_found"


def test_ca_detail_certificate_and_chain(requester, issuing_ca):
    c = requester.client
    detail = c.get("/api/v1/cas/issuing/").json()
    assert detail["parent"] == "root"
    assert detail["subject"] == "CN=KMI Issuing CA,O=KMI"
    assert c.get("/api/v1/cas/issuing/certificate/").content == issuing_ca.x509_certificate().public_bytes(
        serialization.Encoding.PEM
    )
    assert len(x509.load_pem_x509_certificates(c.get("/api/v1/cas/issuing/chain/").content)) == 2
    assert [ca["name"] for ca in c.get("/api/v1/cas/").json()] == ["issuing", "root"]


def test_owner_renews_and_operator_revokes_with_a_reason(requester, operator, certs):
    url = f"/api/v1/certificates/{certs[1].pk}/"
    renewed = requester.client.post(url + "renew/", {}, format="json")
    assert renewed.status_code == 201
    new = Certificate.objects.get(pk=renewed.json()["id"])
    assert new.renewed_from_id == certs[1].pk
    assert new.owner == requester.user
    assert renewed["Location"].endswith(f"/api/v1/certificates/{new.pk}/")
    assert (
        requester.client.post(url + "revoke/", {"reason": "keyCompromise"}, format="json").status_code == 403
    )
    revoked = operator.client.post(url + "revoke/", {"reason": "keyCompromise"}, format="json")
    assert revoked.status_code == 200
    assert revoked.json()["status"] == "revoked"
    assert revoked.json()["revocation_reason"] == "keyCompromise"
    assert AuditEvent.objects.filter(action="certificate.revoked", object_id=str(certs[1].pk)).count() == 1
    bad = operator.client.post(url + "revoke/", {"reason": "removeFromCRL"}, format="json")
    assert bad.status_code == 400
    again = operator.client.post(url + "renew/", {}, format="json")
    assert again.status_code == 409
    assert again.json()["code"] == "invalid_state"


def test_renew_with_a_csr_that_adds_names_is_refused(requester, certs):
    csr = make_csr(
        "ec-p256-b",
        subject="CN=host2.example.test",
        sans=[x509.DNSName("host2.example.test"), x509.DNSName("extra.example.test")],
    )
    response = requester.client.post(
        f"/api/v1/certificates/{certs[2].pk}/renew/", {"csr": csr.decode()}, format="json"
    )
    assert response.status_code == 422
    assert "may not add names" in response.json()["detail"]


def test_profile_edit_is_audited_and_validated(admin, requester):
    url = "/api/v1/profiles/tls-server/"
    assert requester.client.patch(url, {"default_validity_days": 30}, format="json").status_code == 403
    ok = admin.client.patch(url, {"default_validity_days": 30}, format="json")
    assert ok.status_code == 200
    assert ok.json()["default_validity_days"] == 30
    event = AuditEvent.objects.get(action="profile.updated")
    assert event.details["changes"] == {"default_validity_days": [90, 30]}
    bad = admin.client.patch(url, {"default_validity_days": 1000}, format="json")
    assert bad.status_code == 422
    assert Profile.objects.get(name="tls-server").default_validity_days == 30


def test_an_intermediate_is_made_when_a_second_administrator_approves(admin, make_actor, operator, root_ca):
    body = {"name": "issuing-2", "parent": "root", "subject": "CN=Second Issuing,O=KMI", "path_length": 0}
    assert operator.client.post("/api/v1/cas/", body, format="json").status_code == 403
    asked = admin.client.post("/api/v1/cas/", body, format="json")
    assert asked.status_code == 202
    creation = asked.json()
    assert (creation["state"], creation["ca"]) == ("pending", None)
    assert creation["requested_by"].startswith("alice (token ")
    assert asked["Location"] == creation["url"]
    assert admin.client.get("/api/v1/cas/issuing-2/").status_code == 404
    again = admin.client.post("/api/v1/cas/", body, format="json")
    assert again.status_code == 409
    assert "already waiting for approval" in again.json()["detail"]
    approve = f"/api/v1/ca-creations/{creation['id']}/approve/"
    own = admin.client.post(approve)
    assert own.status_code == 403
    assert own["Content-Type"] == "application/problem+json"
    assert own.json()["code"] == "separation_of_duties"
    assert operator.client.post(approve).status_code == 403
    assert admin.client.get("/api/v1/cas/issuing-2/").status_code == 404
    bob = make_actor("bob", (Role.ADMINISTRATOR, None, None))
    created = bob.client.post(approve)
    assert created.status_code == 201
    assert created.json()["parent"] == "root"
    assert created["Location"].endswith("/api/v1/cas/issuing-2/")
    assert bob.client.post(approve).status_code == 409
    done = admin.client.get(creation["url"]).json()
    assert (done["state"], done["ca"]) == ("done", "issuing-2")
    assert [a.split(" ")[0] for a in done["approved_by"]] == ["bob"]
    assert admin.client.post("/api/v1/cas/", body, format="json").status_code == 409


def test_a_ca_creation_is_rejected_with_a_reason(admin, make_actor, root_ca):
    body = {"name": "issuing-2", "parent": "root", "subject": "CN=Second Issuing,O=KMI", "path_length": 0}
    creation = admin.client.post("/api/v1/cas/", body, format="json").json()
    bob = make_actor("bob", (Role.ADMINISTRATOR, None, None))
    reject = f"/api/v1/ca-creations/{creation['id']}/reject/"
    assert bob.client.post(reject, {}, format="json").status_code == 400
    rejected = bob.client.post(reject, {"reason": "no second issuing CA this year"}, format="json")
    assert rejected.status_code == 200
    assert rejected.json()["state"] == "cancelled"
    assert rejected.json()["decided_by"].startswith("bob (token ")
    late = bob.client.post(f"/api/v1/ca-creations/{creation['id']}/approve/")
    assert late.status_code == 409
    assert late["Content-Type"] == "application/problem+json"
    assert admin.client.get("/api/v1/cas/issuing-2/").status_code == 404
    listed = admin.client.get("/api/v1/ca-creations/").json()["results"]
    assert [c["state"] for c in listed] == ["cancelled"]


def test_without_required_approvals_the_administrator_creates_at_once(admin, root_ca, settings):
    settings.KMI_CA_CREATION_APPROVALS = 0
    body = {"name": "issuing-2", "parent": "root", "subject": "CN=Second Issuing,O=KMI", "path_length": 0}
    created = admin.client.post("/api/v1/cas/", body, format="json")
    assert created.status_code == 201
    assert created["Location"].endswith("/api/v1/cas/issuing-2/")


@pytest.mark.parametrize(
    "constraints",
    [{"permitted": 5}, {"permitted": ["nonsense"]}, {"permitted": "dns:x.test"}],
)
def test_malformed_name_constraints_are_refused_cleanly(admin, root_ca, constraints):
    body = {"name": "constrained", "parent": "root", "subject": "CN=C", "name_constraints": constraints}
    response = admin.client.post("/api/v1/cas/", body, format="json")
    assert response.status_code in (400, 422)
    assert response["Content-Type"] == "application/problem+json"


def test_name_constraints_are_narrowed_into_the_new_ca(admin, root_ca, settings):
    settings.KMI_CA_CREATION_APPROVALS = 0
    body = {
        "name": "constrained",
        "parent": "root",
        "subject": "CN=C",
        "name_constraints": {"permitted": ["dns:example.test"]},
    }
    created = admin.client.post("/api/v1/cas/", body, format="json")
    assert created.status_code == 201
    assert created.json()["name_constraints"]["permitted"] == ["dns:example.test"]


@pytest.mark.parametrize("term", ["host3.example", "HOST3", "CN=host", "dns:host4", "SERIAL"])
def test_subject_san_and_serial_search_is_served_by_a_trigram_index(admin, certs, term):
    if term == "SERIAL":
        term = certs[2].serial[:12].upper()
    with CaptureQueriesContext(connection) as queries:
        page = admin.client.get("/api/v1/certificates/", {"q": term, "page_size": 2})
    assert page.status_code == 200
    assert page.json()["results"], term
    page_sql = queries.captured_queries[-1]["sql"]
    with connection.cursor() as cursor:
        # Tiny table: without sequential scans (and the id-order walk that stops early when
        # matches are common), the planner shows what a rare term costs at millions of rows.
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_indexscan = off")
        cursor.execute("EXPLAIN " + page_sql)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "pki_cert_search_trgm" in plan, plan
    assert "Seq Scan" not in plan, plan


def test_search_terms_are_literal_text(admin, certs):
    """LIKE wildcards in a term match themselves, not everything."""
    for term in ("%", "_", "host_.example", "\\"):
        page = admin.client.get("/api/v1/certificates/", {"q": term})
        assert page.status_code == 200
        assert page.json()["results"] == [], term


@pytest.mark.parametrize("params", ["", "&ca=issuing", "&ca=issuing&state=revoked", "&profile=tls-server"])
def test_certificate_pages_are_served_by_an_index_without_sorting(admin, certs, params):
    first = admin.client.get(f"/api/v1/certificates/?page_size=2{params}").json()
    url = first["next"] or f"/api/v1/certificates/?page_size=2{params}"
    with CaptureQueriesContext(connection) as queries:
        admin.client.get(url)
    page_sql = queries.captured_queries[-1]["sql"]
    with connection.cursor() as cursor:
        # The test table is tiny; forbid sequential scans to see what the planner can do at scale.
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("EXPLAIN " + page_sql)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "Index Scan" in plan or "Bitmap Index Scan" in plan, plan
    assert "Seq Scan" not in plan, plan
    if "state=revoked" not in params:
        # Revoked certificates are a small subset: the planner may fetch them through the
        # (ca, revoked_at) index and sort that subset, which stays cheap at scale.
        assert "Sort" not in plan, plan
