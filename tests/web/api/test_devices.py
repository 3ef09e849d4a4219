"""The device enrollment administration API: EST and SCEP labels, one-time codes and challenges."""

from __future__ import annotations

import base64

import pytest
from django.test import Client

from pki.est.labels import create_est_label
from pki.models import AuditEvent, EnrollmentCode, EstLabel, Profile, ScepChallenge, ScepLabel
from pki.scep.labels import create_scep_label
from tests.conftest import make_csr

pytestmark = pytest.mark.django_db

EST = "/api/v1/est/labels/"
SCEP = "/api/v1/scep/labels/"


@pytest.fixture
def est_label(issuing_ca):
    return create_est_label(
        name="devices", ca=issuing_ca, profile=Profile.objects.get(name="tls-client"), actor="t"
    )


@pytest.fixture
def scep_label(issuing_ca):
    return create_scep_label(
        name="mdm", ca=issuing_ca, profile=Profile.objects.get(name="tls-client"), actor="t"
    )


def test_administrator_creates_an_est_label_mints_codes_and_a_device_enrolls_with_one(admin, issuing_ca):
    created = admin.client.post(
        EST,
        {"name": "fleet", "ca": "issuing", "profile": "tls-client", "client_cas": ["issuing"]},
        format="json",
    )
    assert created.status_code == 201, created.content
    assert created["Location"].endswith("/api/v1/est/labels/fleet/")
    body = created.json()
    assert (body["ca"], body["profile"], body["client_cas"], body["enabled"]) == (
        "issuing",
        "tls-client",
        ["issuing"],
        True,
    )
    assert body["est_url"].endswith("/.well-known/est/fleet/")
    assert AuditEvent.objects.filter(action="est.label_created", actor__startswith="alice").exists()

    minted = admin.client.post(f"{EST}fleet/codes/", {"count": 2, "expires_days": 3}, format="json")
    assert minted.status_code == 201, minted.content
    assert minted["Cache-Control"] == "no-store"
    codes = minted.json()["codes"]
    assert len(codes) == 2
    stored = EnrollmentCode.objects.get(pk=codes[0]["code_id"])
    assert codes[0]["secret"] not in stored.secret_sha256  # only a digest is kept
    assert AuditEvent.objects.filter(action="est.codes_created", actor__startswith="alice").exists()

    basic = base64.b64encode(f"{codes[0]['code_id']}:{codes[0]['secret']}".encode()).decode()
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    der = x509.load_pem_x509_csr(make_csr(subject="CN=device-1.example.test")).public_bytes(
        serialization.Encoding.DER
    )
    enrolled = Client().post(
        "/.well-known/est/fleet/simpleenroll",
        base64.encodebytes(der),
        content_type="application/pkcs10",
        HTTP_AUTHORIZATION=f"Basic {basic}",
    )
    assert enrolled.status_code == 200, enrolled.content
    # Nothing lists the secrets again.
    listed = admin.client.get(f"{EST}fleet/")
    assert codes[0]["secret"] not in listed.content.decode()


def test_disabled_est_label_answers_404_until_enabled_again(admin, est_label):
    disabled = admin.client.post(f"{EST}devices/disable/")
    assert disabled.status_code == 200
    assert disabled.json()["enabled"] is False
    assert Client().get("/.well-known/est/devices/cacerts").status_code == 404
    assert AuditEvent.objects.filter(action="est.label_disabled", actor__startswith="alice").count() == 1
    admin.client.post(f"{EST}devices/disable/")  # already disabled: no second event
    assert AuditEvent.objects.filter(action="est.label_disabled").count() == 1
    enabled = admin.client.post(f"{EST}devices/enable/")
    assert enabled.json()["enabled"] is True
    assert Client().get("/.well-known/est/devices/cacerts").status_code == 200
    assert AuditEvent.objects.filter(action="est.label_enabled").count() == 1


def test_scep_label_created_disabled_and_a_challenge_minted(admin, issuing_ca):
    created = admin.client.post(
        SCEP,
        {
            "name": "phones",
            "ca": "issuing",
            "profile": "tls-client",
            "challenge": "a-static-secret-of-the-fleet",
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["static_challenge"] is True
    assert "challenge" not in body
    assert body["scep_url"].endswith("/scep/phones")
    assert body["ra_certificate"] == ScepLabel.objects.get(name="phones").ra_certificate.serial

    minted = admin.client.post(f"{SCEP}phones/challenges/", {"expires_days": 2}, format="json")
    assert minted.status_code == 201, minted.content
    assert minted["Cache-Control"] == "no-store"
    assert len(minted.json()["challenge"]) >= 20
    assert ScepChallenge.objects.filter(label__name="phones").count() == 1

    assert admin.client.post(f"{SCEP}phones/disable/").json()["enabled"] is False
    assert Client().get("/scep/phones?operation=GetCACaps").status_code == 404
    assert AuditEvent.objects.filter(action="scep.label_disabled").count() == 1


def test_bad_input_is_refused_and_writes_nothing(admin, est_label, scep_label):
    events = AuditEvent.objects.count()
    cases = [
        (EST, {"name": "Bad Name", "ca": "issuing", "profile": "tls-client"}, 400),
        (EST, {"name": "simpleenroll", "ca": "issuing", "profile": "tls-client"}, 422),  # an EST operation
        (EST, {"name": "devices", "ca": "issuing", "profile": "tls-client"}, 409),
        (EST, {"name": "other", "ca": "nope", "profile": "tls-client"}, 400),
        (EST, {"name": "other", "ca": "issuing", "profile": "sub-ca"}, 422),  # issues CA certificates
        (EST, {"name": "other", "ca": "issuing", "profile": "tls-client", "client_cas": ["nope"]}, 400),
        (SCEP, {"name": "other", "ca": "issuing", "profile": "tls-client", "challenge": "short"}, 422),
        (SCEP, {"name": "mdm", "ca": "issuing", "profile": "tls-client"}, 409),
        (f"{EST}devices/codes/", {"count": 0}, 400),
        (f"{EST}devices/codes/", {"count": 1001}, 400),
        (f"{EST}devices/codes/", {"expires_days": 0}, 400),
        (f"{EST}nope/codes/", {}, 404),
        (f"{SCEP}mdm/challenges/", {"expires_days": 366}, 400),
        (f"{SCEP}nope/challenges/", {}, 404),
    ]
    for url, body, expected in cases:
        response = admin.client.post(url, body, format="json")
        assert response.status_code == expected, (url, body, response.content)
        if expected != 404:
            assert response["Content-Type"] == "application/problem+json"
    assert AuditEvent.objects.count() == events
    assert EstLabel.objects.count() == 1
    assert ScepLabel.objects.count() == 1
    assert not EnrollmentCode.objects.exists()
    assert not ScepChallenge.objects.exists()


def test_operators_mint_codes_for_their_ca_only_and_only_administrators_manage_labels(
    make_actor, operator, auditor, requester, est_label, scep_label, root_ca
):
    from pki.models import Role

    # The operator of the label's CA sees it and mints its codes and challenges; not labels.
    assert [label["name"] for label in operator.client.get(EST).json()] == ["devices"]
    assert operator.client.post(f"{EST}devices/codes/", {}, format="json").status_code == 201
    assert operator.client.post(f"{SCEP}mdm/challenges/", {}, format="json").status_code == 201
    assert operator.client.post(f"{EST}devices/disable/").status_code == 403
    assert (
        operator.client.post(
            EST, {"name": "x", "ca": "issuing", "profile": "tls-client"}, format="json"
        ).status_code
        == 403
    )
    # Auditors read, never mint; requesters and other CAs' operators see nothing.
    assert [label["name"] for label in auditor.client.get(SCEP).json()] == ["mdm"]
    assert auditor.client.post(f"{EST}devices/codes/", {}, format="json").status_code == 403
    assert requester.client.get(EST).status_code == 403
    root_operator = make_actor("rory", (Role.CA_OPERATOR, root_ca, None))
    assert root_operator.client.get(EST).json() == []
    assert root_operator.client.post(f"{EST}devices/codes/", {}, format="json").status_code == 404
    assert EnrollmentCode.objects.count() == 1
    assert Client().get(EST).status_code in (401, 403)


def test_the_schema_describes_the_device_endpoints(admin):
    schema = admin.client.get("/api/schema/?format=json").json()
    paths = schema["paths"]
    for path in (
        "/api/v1/est/labels/",
        "/api/v1/est/labels/{name}/codes/",
        "/api/v1/est/labels/{name}/disable/",
        "/api/v1/scep/labels/",
        "/api/v1/scep/labels/{name}/challenges/",
    ):
        assert path in paths, path
    codes = paths["/api/v1/est/labels/{name}/codes/"]["post"]
    assert "201" in codes["responses"]


def test_label_lists_take_the_same_queries_for_one_label_or_many(admin, issuing_ca, est_label, scep_label):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as few_est:
        assert admin.client.get(EST).status_code == 200
    with CaptureQueriesContext(connection) as few_scep:
        assert admin.client.get(SCEP).status_code == 200
    tls = Profile.objects.get(name="tls-client")
    for i in range(3):
        create_est_label(name=f"e{i}", ca=issuing_ca, profile=tls, client_cas=[issuing_ca], actor="t")
        create_scep_label(name=f"s{i}", ca=issuing_ca, profile=tls, actor="t")
    with CaptureQueriesContext(connection) as many_est:
        assert len(admin.client.get(EST).json()) == 4
    with CaptureQueriesContext(connection) as many_scep:
        assert len(admin.client.get(SCEP).json()) == 4
    assert len(many_est) == len(few_est)
    assert len(many_scep) == len(few_scep)
