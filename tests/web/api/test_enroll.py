"""POST /api/v1/enroll and request submission: 201 with the chain, 202 while approval is pending."""

from __future__ import annotations

import pytest
from cryptography import x509

from pki.models import AuditEvent, Certificate, CertificateRequest, Profile, RequestState
from tests.conftest import make_csr
from tests.support.hostile_csr import CORPUS, pem

pytestmark = pytest.mark.django_db

SAN_WWW = [x509.DNSName("www.example.test")]


def _enroll(actor, profile="tls-server", csr=None, **extra):
    body = {"csr": (csr or make_csr(sans=SAN_WWW)).decode(), "ca": "issuing", "profile": profile, **extra}
    return actor.client.post("/api/v1/enroll", body, format="json")


def test_enroll_auto_approved_returns_201_with_the_chain(requester):
    response = _enroll(requester)
    assert response.status_code == 201
    assert response["Content-Type"] == "application/pem-certificate-chain"
    chain = x509.load_pem_x509_certificates(response.content)
    assert [c.subject.rfc4514_string() for c in chain] == [
        "CN=www.example.test",
        "CN=KMI Issuing CA,O=KMI",
        "CN=KMI Test Root,O=KMI",
    ]
    cert = Certificate.objects.get(fingerprint_sha256__isnull=False, subject="CN=www.example.test")
    assert response["Location"].endswith(f"/api/v1/certificates/{cert.pk}/")
    assert cert.owner == requester.user
    assert cert.request.state == RequestState.ISSUED
    actions = list(AuditEvent.objects.filter(actor__startswith="rita").values_list("action", flat=True))
    assert sorted(actions) == ["certificate.issued", "request.submitted"]


def test_enroll_under_an_approval_profile_returns_202_with_the_request_url(requester):
    response = _enroll(requester, profile="code-signing", csr=make_csr("ec-p384", subject="CN=Builder,O=KMI"))
    assert response.status_code == 202
    request = CertificateRequest.objects.get()
    assert request.state == RequestState.PENDING
    assert response["Location"].endswith(f"/api/v1/requests/{request.pk}/")
    assert response.json()["state"] == "pending"
    assert response.json()["certificate"] is None
    assert not Certificate.objects.filter(request=request).exists()


def test_enroll_with_a_bad_csr_is_a_problem_document_and_writes_nothing(requester):
    before = AuditEvent.objects.count()
    response = _enroll(
        requester, csr=b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"
    )
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == "bad_csr"
    assert problem["status"] == 400
    assert problem["type"].endswith("/bad_csr")
    assert CertificateRequest.objects.count() == 0
    assert AuditEvent.objects.count() == before


def test_enroll_with_a_surrogate_character_in_the_csr_is_a_field_error(requester):
    body = '{"csr": "-----BEGIN CERTIFICATE REQUEST-----\\ud800", "ca": "issuing", "profile": "tls-server"}'
    response = requester.client.post("/api/v1/enroll", body, content_type="application/json")
    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert (error["field"], error["code"]) == ("csr", "surrogate_characters_not_allowed")
    assert "U+D800" in error["message"]
    assert CertificateRequest.objects.count() == 0


def test_enroll_with_missing_fields_lists_field_errors(requester):
    response = requester.client.post("/api/v1/enroll", {"ca": "nope"}, format="json")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    fields = {e["field"] for e in response.json()["errors"]}
    assert fields == {"csr", "ca", "profile"}


def test_enroll_with_a_name_the_profile_refuses_is_422(requester):
    csr = make_csr(subject="CN=Someone", sans=[x509.RFC822Name("someone@example.test")])
    response = _enroll(requester, csr=csr)
    assert response.status_code == 422
    assert response.json()["code"] == "name_not_allowed"
    assert CertificateRequest.objects.count() == 0


def test_enroll_when_the_ca_cannot_sign_leaves_no_approved_request_behind(requester, issuing_ca):
    issuing_ca.state = "disabled"
    issuing_ca.save(update_fields=["state"])
    response = _enroll(requester)
    assert response.status_code == 409
    assert response.json()["code"] == "ca_unavailable"
    assert CertificateRequest.objects.count() == 0


def test_enroll_without_a_token_is_401_with_a_bearer_challenge(db, client):
    response = client.post("/api/v1/enroll", {}, content_type="application/json")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert response["Content-Type"] == "application/problem+json"


def test_enroll_for_a_profile_not_granted_is_403_and_writes_nothing(requester):
    csr = make_csr(subject="CN=Someone", sans=[x509.RFC822Name("someone@example.test")])
    response = _enroll(requester, profile="email-protection", csr=csr)
    assert response.status_code == 403
    assert CertificateRequest.objects.count() == 0


def test_submitted_request_is_approved_by_the_operator_and_issued(requester, operator):
    response = _enroll(requester, profile="code-signing", csr=make_csr("ec-p384", subject="CN=Builder,O=KMI"))
    url = response["Location"]
    assert requester.client.post(url + "approve/").status_code == 403
    approved = operator.client.post(url + "approve/")
    assert approved.status_code == 200
    assert approved.json()["state"] == "issued"
    cert_url = approved.json()["certificate"]
    assert cert_url is not None
    # The requester owns the certificate the operator approved.
    assert requester.client.get(cert_url).status_code == 200
    assert operator.client.post(url + "approve/").json()["code"] == "invalid_state"


def test_operator_rejects_with_a_reason(requester, operator):
    url = _enroll(requester, profile="code-signing", csr=make_csr("ec-p384", subject="CN=B,O=KMI"))[
        "Location"
    ]
    missing = operator.client.post(url + "reject/", {}, format="json")
    assert missing.status_code == 400
    assert missing.json()["errors"][0]["field"] == "reason"
    rejected = operator.client.post(url + "reject/", {"reason": "not a build host"}, format="json")
    assert rejected.status_code == 200
    assert rejected.json()["state"] == "rejected"
    assert rejected.json()["reason"] == "not a build host"
    event = AuditEvent.objects.get(action="request.rejected")
    assert event.actor.startswith("oscar")


def test_requests_endpoint_submits_and_lists_with_filters(requester, operator):
    created = requester.client.post(
        "/api/v1/requests/",
        {"csr": make_csr(sans=SAN_WWW).decode(), "ca": "issuing", "profile": "tls-server"},
        format="json",
    )
    assert created.status_code == 201
    assert created.json()["state"] == "issued"
    _enroll(requester, profile="code-signing", csr=make_csr("ec-p384", subject="CN=B,O=KMI"))
    pending = operator.client.get("/api/v1/requests/", {"state": "pending"}).json()["results"]
    assert [r["profile"] for r in pending] == ["code-signing"]
    by_profile = operator.client.get("/api/v1/requests/", {"profile": "tls-server"}).json()["results"]
    assert [r["state"] for r in by_profile] == ["issued"]
    bad = operator.client.get("/api/v1/requests/", {"state": "sideways"})
    assert bad.status_code == 400


def test_approval_that_cannot_issue_leaves_the_request_pending(requester, operator, issuing_ca):
    csr = make_csr("ec-p384", subject="CN=B,O=KMI")
    url = _enroll(requester, profile="code-signing", csr=csr)["Location"]
    issuing_ca.state = "disabled"
    issuing_ca.save(update_fields=["state"])
    response = operator.client.post(url + "approve/")
    assert response.status_code == 409
    assert CertificateRequest.objects.get().state == RequestState.PENDING
    assert not AuditEvent.objects.filter(action="request.approved").exists()


def test_schema_and_docs_are_served_without_login(client):
    schema = client.get("/api/schema/?format=json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert "/api/v1/enroll" in paths
    assert set(paths["/api/v1/enroll"]["post"]["responses"]) >= {"201", "202", "400", "422"}
    docs = client.get("/api/docs/")
    assert docs.status_code == 200
    assert b"swagger-ui" in docs.content


def test_unmatched_api_urls_and_server_errors_are_problem_documents(client, rf):
    from web.api.errors import handler500

    missing = client.get("/api/v1/no-such-thing/")
    assert missing.status_code == 404
    assert missing["Content-Type"] == "application/problem+json"
    assert missing.json()["code"] == "not_found"
    failed = handler500(rf.get("/api/v1/cas/"))
    assert failed.status_code == 500
    assert failed["Content-Type"] == "application/problem+json"
    assert handler500(rf.get("/elsewhere")).status_code == 500


def test_signing_errors_are_503_with_retry_after_or_500_problem_documents(rf):
    from pki.exceptions import SigningUnavailable
    from pki.signing import SigningFailed
    from web.api.errors import exception_handler

    unavailable = SigningUnavailable("no signing worker answered within 30 s")
    unavailable.request_id = 41
    response = exception_handler(unavailable, {"request": rf.post("/api/v1/enroll")})
    assert response is not None
    assert (response.status_code, response["Retry-After"]) == (503, "5")
    assert response.data["code"] == "signing_unavailable"
    assert response.data["request"] == "http://testserver/api/v1/requests/41/"
    failed = exception_handler(SigningFailed("the signing worker failed: KeyError"), {})
    assert failed is not None
    assert failed.status_code == 500
    assert failed.content_type == "application/problem+json"
    assert failed.data["code"] == "signing_failed"


@pytest.mark.parametrize("case", sorted(CORPUS))
def test_api_enroll_answers_400_bad_csr_for_a_hostile_csr(requester, case):
    build, reason = CORPUS[case]
    der = build()
    before = (Certificate.objects.count(), CertificateRequest.objects.count(), AuditEvent.objects.count())
    response = requester.client.post(
        "/api/v1/enroll", {"csr": pem(der), "ca": "issuing", "profile": "tls-server"}, format="json"
    )
    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "bad_csr"
    assert reason in response.json()["detail"]
    assert (
        Certificate.objects.count(),
        CertificateRequest.objects.count(),
        AuditEvent.objects.count(),
    ) == before


def test_enroll_with_a_key_revoked_for_key_compromise_is_refused_and_audited(requester, operator):
    from pki.blocklist import REFUSED_ACTION
    from pki.models import BlockedKey

    enrolled = _enroll(requester)
    assert enrolled.status_code == 201
    cert = Certificate.objects.get(pk=int(enrolled["Location"].rstrip("/").rsplit("/", 1)[1]))
    count = Certificate.objects.count()
    revoked = operator.client.post(
        f"/api/v1/certificates/{cert.pk}/revoke/", {"reason": "keyCompromise"}, format="json"
    )
    assert revoked.status_code == 200, revoked.content
    assert BlockedKey.objects.filter(spki_sha256=cert.key_fingerprint).exists()
    response = _enroll(requester)
    assert response.status_code == 422
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == "key_blocked"
    assert Certificate.objects.count() == count
    refusal = AuditEvent.objects.get(action=REFUSED_ACTION)
    assert refusal.actor.startswith("rita")
    assert refusal.details["spki_sha256"] == cert.key_fingerprint


def test_the_api_shows_approvals_and_refuses_the_submitters_own(requester, operator, make_actor, issuing_ca):
    from pki.models import Role
    from pki.profile_changes import update_profile

    update_profile(
        profile=Profile.objects.get(name="code-signing"), changes={"approvals_required": 2}, actor="t"
    )
    second = make_actor("olga", (Role.CA_OPERATOR, issuing_ca, None))
    response = _enroll(requester, profile="code-signing", csr=make_csr("ec-p384", subject="CN=Builder,O=KMI"))
    url = response["Location"]
    assert response.json()["approvals_required"] == 2
    assert operator.client.post(url + "approve/").json()["state"] == "pending"
    seen = requester.client.get(url).json()
    assert [a["approved_by"].split()[0] for a in seen["approvals"]] == ["oscar"]
    again = operator.client.post(url + "approve/")
    assert again.status_code == 422
    assert "already" in again.json()["detail"]
    done = second.client.post(url + "approve/")
    assert done.status_code == 200
    assert done.json()["state"] == "issued"
    # An operator's own submission needs someone else.
    own = _enroll(operator, profile="code-signing", csr=make_csr("ec-p256", subject="CN=Ops,O=KMI"))
    refused = operator.client.post(own["Location"] + "approve/")
    assert refused.status_code == 422
    assert "your own" in refused.json()["detail"]
