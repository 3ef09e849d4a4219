"""POST /api/v1/enroll: the fast path (web/api/fast_enroll.py) answers as the DRF view does.

The fast path serves plain enrollments only; everything else reaches the DRF view before
anything is written. Each test here sends the same kind of request once as it comes and once
with the fast path switched off, and compares what the client gets and what the database holds.
"""

from __future__ import annotations

import json
import time

import pytest
from cryptography import x509
from django.core.cache import cache
from django.db.models import Q

from pki.models import AuditEvent, Certificate, CertificateRequest, RequestState
from tests.conftest import make_csr
from web.api import fast_enroll

pytestmark = pytest.mark.django_db

# Headers that differ between any two responses (the new certificate's id, its size).
VARYING = {"Location", "Content-Length"}


@pytest.fixture
def served(monkeypatch):
    """Which path served each enrollment: True for the fast path, False for the DRF view."""
    seen: list[bool] = []
    real = fast_enroll.serve

    def spy(request, view):
        response = real(request, view)
        seen.append(response is not None)
        return response

    monkeypatch.setattr(fast_enroll, "serve", spy)
    return seen


@pytest.fixture
def drf_only(monkeypatch):
    """Switch the fast path off: every enrollment goes through the DRF view."""

    def off():
        monkeypatch.setattr(fast_enroll, "serve", lambda request, view: None)

    return off


def _body(name: str, **extra):
    csr = make_csr(subject=f"CN={name}", sans=[x509.DNSName(name)]).decode()
    return {"csr": csr, "ca": "issuing", "profile": "tls-server", **extra}


def _post(actor, body, **kwargs):
    kwargs.setdefault("format", "json")
    return actor.client.post("/api/v1/enroll", body, **kwargs)


def _written(actor):
    """What one enrollment left in the database, without the ids and times that always differ."""
    request = CertificateRequest.objects.filter(requester=actor.user).latest("pk")
    cert = Certificate.objects.get(request=request)
    events = AuditEvent.objects.filter(
        Q(object_type="certificaterequest", object_id=str(request.pk))
        | Q(object_type="certificate", object_id=str(cert.pk))
    ).order_by("seq")
    return {
        "request": (request.state, request.requested_by, request.reviewed_by, request.validity_days),
        "certificate": (
            cert.owner_id,
            cert.profile.name,
            cert.ca.name,
            (cert.not_after - cert.not_before).days,
        ),
        "events": [(e.action, e.actor, e.object_type, sorted(e.details)) for e in events],
    }


def _shape(response):
    headers = {k: v for k, v in response.items() if k not in VARYING}
    chain = x509.load_pem_x509_certificates(response.content)
    return response.status_code, headers, [c.issuer.rfc4514_string() for c in chain]


@pytest.mark.parametrize(
    ("extra", "headers"),
    [({}, {}), ({"validity_days": 30}, {}), ({}, {"HTTP_ACCEPT": "application/json"})],
    ids=["default", "validity_days", "accept_json"],
)
def test_a_plain_enrollment_is_served_fast_and_matches_the_drf_view(
    requester, served, drf_only, extra, headers
):
    fast = _post(requester, _body("fast.example.test", **extra), **headers)
    assert served == [True]
    fast_written = _written(requester)
    drf_only()
    slow = _post(requester, _body("slow.example.test", **extra), **headers)
    assert fast.status_code == slow.status_code == 201
    assert _shape(fast) == _shape(slow)
    assert fast["Location"].rsplit("/", 2)[0] == slow["Location"].rsplit("/", 2)[0]
    assert _written(requester) == fast_written
    assert fast_written["request"][0] == RequestState.ISSUED
    assert fast_written["events"][0][0] == "request.submitted"


BAD_PEM = "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"body": {"comment": "an extra field"}}, 201),
        ({"body": {"validity_days": "30"}}, 201),
        ({"body": {"validity_days": 0}}, 400),
        ({"body": {"ca": " issuing "}}, 400),
        ({"body": {"ca": "nope"}}, 400),
        ({"body": {"csr": ""}}, 400),
        (
            {
                "body": {
                    "csr": "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"
                }
            },
            400,
        ),
        ({"body": {"profile": "email-protection"}}, 403),
        ({"body": {"profile": "code-signing"}}, 202),
        ({"HTTP_ACCEPT": "text/html"}, 406),
        ({"format": "multipart"}, 415),
        ({"HTTP_AUTHORIZATION": "Bearer kmi_00000000_nonsense"}, 401),
    ],
)
def test_everything_but_the_plain_case_is_left_to_the_drf_view(requester, served, drf_only, change, status):
    change = dict(change)
    body = _body("edge.example.test", **change.pop("body", {}))
    if body["profile"] == "code-signing":
        body["csr"] = make_csr("ec-p384", subject="CN=Builder,O=KMI").decode()
    if "HTTP_AUTHORIZATION" in change:
        requester.client.credentials(HTTP_AUTHORIZATION=change.pop("HTTP_AUTHORIZATION"))
    as_sent = _post(requester, body, **change)
    assert served == [False]
    rows = (CertificateRequest.objects.count(), Certificate.objects.count(), AuditEvent.objects.count())
    drf_only()
    again = _post(requester, body, **change)
    assert as_sent.status_code == again.status_code == status
    assert as_sent["Content-Type"] == again["Content-Type"]
    if status >= 400:
        assert as_sent.json() == again.json()
        # The refused call wrote nothing, as the DRF view's did not either.
        after = (CertificateRequest.objects.count(), Certificate.objects.count(), AuditEvent.objects.count())
        assert after == rows


@pytest.mark.parametrize("encoding", ["utf-16", "utf-8-sig"])
def test_json_that_is_not_plain_utf8_goes_to_the_drf_view(requester, served, encoding):
    body = json.dumps(_body("enc.example.test")).encode(encoding)
    response = requester.client.post("/api/v1/enroll", body, content_type="application/json")
    assert served == [False]
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"


def test_a_request_the_domain_refuses_is_counted_once_by_the_throttle(
    requester, served, settings, one_throttle_window
):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"enroll": "3/minute"}}
    refused = _body("www.example.test")
    refused["csr"] = make_csr(subject="CN=Someone", sans=[x509.RFC822Name("someone@example.test")]).decode()
    assert _post(requester, refused).status_code == 422  # the profile refuses e-mail SANs
    assert served == [False]  # the fast path tried, enroll refused, the DRF view explained it
    window = int(time.time() // 60)
    assert cache.get(f"throttle_enroll_{requester.user.pk}_{window}") == 1
    assert _post(requester, _body("one.example.test")).status_code == 201
    assert _post(requester, _body("two.example.test")).status_code == 201
    throttled = _post(requester, _body("three.example.test"))
    assert throttled.status_code == 429
    assert int(throttled["Retry-After"]) >= 1
    assert served == [False, True, True, False]
    assert cache.get(f"throttle_enroll_{requester.user.pk}_{window}") == 4


def test_the_fast_path_stays_off_when_a_signing_worker_signs(requester, served, monkeypatch):
    # KMI_SIGNING=worker as the fast path sees it; the DRF view (signing here) still issues.
    monkeypatch.setattr(fast_enroll, "signs_here", lambda: False)
    assert _post(requester, _body("worker.example.test")).status_code == 201
    assert served == [False]


def test_a_plain_enrollment_reads_token_ca_and_profile_with_one_statement(requester, served, monkeypatch):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from pki import enrollment, recording, tokens

    assert _post(requester, _body("first.example.test")).status_code == 201
    statements: list[str] = []
    for module in (tokens, enrollment, recording):
        real = module.execute_prepared

        def counted(sql, params, real=real):
            statements.append(sql)
            return real(sql, params)

        monkeypatch.setattr(module, "execute_prepared", counted)
    with CaptureQueriesContext(connection) as orm:
        assert _post(requester, _body("second.example.test")).status_code == 201
    assert served == [True, True]
    assert len(statements) == 2, statements  # token, user, grants and both stamps; then the issuance
    assert "pki_apitoken" in statements[0]
    assert "pki_certificateauthority ca" in statements[0]
    assert "INSERT INTO pki_certificate " in statements[1]
    # (In a test's transaction the CA and profile are loaded anew: only committed rows are cached.)
    assert not [
        q["sql"] for q in orm.captured_queries if "pki_apitoken" in q["sql"] or "auth_user" in q["sql"]
    ]
