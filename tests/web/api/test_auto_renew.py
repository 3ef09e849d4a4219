"""Auto-renewal and the owner over the REST API: set at enrollment, the successor fetched after."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509

from pki.lifecycle import auto_renew_certificates
from pki.models import Certificate, Profile
from tests.conftest import make_csr

pytestmark = pytest.mark.django_db
SAN_WWW = [x509.DNSName("www.example.test")]


def _enroll(actor, **extra):
    body = {"csr": make_csr(sans=SAN_WWW).decode(), "ca": "issuing", "profile": "tls-server", **extra}
    return actor.client.post("/api/v1/enroll", body, format="json")


def test_enrollment_switches_auto_renewal_on_and_names_the_owner(requester):
    response = _enroll(
        requester,
        auto_renew=True,
        renew_before_days=12,
        owner_email="team@example.test",
        owner_webhook_url="https://hooks.example.test/kmi",
    )
    assert response.status_code == 201, response.content
    detail = requester.client.get(response["Location"]).json()
    assert detail["auto_renew"] is True
    assert detail["renew_before_days"] == 12
    assert detail["owner_email"] == "team@example.test"
    assert detail["owner_webhook_url"] == "https://hooks.example.test/kmi"


def test_bad_options_are_field_errors_and_nothing_is_issued(requester):
    for field, value in (
        ("renew_before_days", 0),
        ("owner_email", "not an address"),
        ("owner_webhook_url", "gopher://x"),
        ("auto_renew", "sometimes"),
    ):
        response = _enroll(requester, **{field: value})
        assert response.status_code == 400, (field, response.content)
        assert response.json()["errors"][0]["field"] == field
    assert not Certificate.objects.filter(is_ca=False).exists()


def test_the_successor_is_served_to_whoever_may_see_the_certificate(
    requester, operator, make_actor, issuing_ca
):
    response = _enroll(requester, auto_renew=True)
    cert = Certificate.objects.get(pk=response["Location"].rstrip("/").rsplit("/", 1)[1])
    url = f"/api/v1/certificates/{cert.pk}/successor/"
    missing = requester.client.get(url)
    assert missing.status_code == 404
    assert missing.json()["code"] == "not_found"
    [new_id] = auto_renew_certificates(now=cert.not_after - dt.timedelta(days=5))
    for actor in (requester, operator):
        body = actor.client.get(url).json()
        assert body["id"] == new_id
        assert body["renewed_from_id"] == cert.pk
        chain = x509.load_pem_x509_certificates(body["pem"].encode())
        assert chain[0] == Certificate.objects.get(pk=new_id).x509()
    stranger = make_actor(
        "sam",
    )
    assert stranger.client.get(url).status_code in (403, 404)


def test_administrators_set_a_profile_default(admin):
    response = admin.client.patch(
        "/api/v1/profiles/tls-server/", {"auto_renew": True, "renew_before_days": 21}, format="json"
    )
    assert response.status_code == 200, response.content
    profile = Profile.objects.get(name="tls-server")
    assert (profile.auto_renew, profile.renew_before_days) == (True, 21)
