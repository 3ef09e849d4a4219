"""The REST API for CA rollover and renewal: administrators only, audited, retries are safe."""

from __future__ import annotations

import datetime as dt

import pytest

from pki.models import AuditEvent, CAGeneration

pytestmark = pytest.mark.django_db


def test_rollover_over_the_api_and_the_generations_it_lists(admin, issuing_ca):
    response = admin.client.post("/api/v1/cas/issuing/rollover/", {"key_type": "ec-p384"}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["number"], body["state"], body["key_type"]) == (2, "current", "ec-p384")
    assert body["crl_url"] == "http://pki.example.test/crl/issuing.g2.crl"
    assert body["ocsp_url"] == "http://pki.example.test/ocsp/issuing.g2"
    assert response["Location"].endswith("/api/v1/cas/issuing/generations/")
    listed = admin.client.get("/api/v1/cas/issuing/generations/").json()
    assert [(g["number"], g["state"]) for g in listed] == [(1, "previous"), (2, "current")]
    assert listed[0]["crl_url"] == "http://pki.example.test/crl/issuing.crl"
    assert admin.client.get("/api/v1/cas/issuing/").json()["generation"] == 2
    event = AuditEvent.objects.get(action="ca.rolled_over")
    assert event.actor.startswith("alice")


def test_root_rollover_lists_its_link_certificates(admin, root_ca):
    body = admin.client.post("/api/v1/cas/root/rollover/", {}, format="json").json()
    for field in ("link_from_previous", "link_to_previous"):
        pem = admin.client.get(body[field] + "pem/")
        assert pem.status_code == 200
        assert pem.content.startswith(b"-----BEGIN CERTIFICATE-----")


def test_rollover_at_a_future_time_is_pending(admin, issuing_ca):
    at = (dt.datetime.now(dt.UTC) + dt.timedelta(days=7)).replace(microsecond=0)
    body = admin.client.post("/api/v1/cas/issuing/rollover/", {"at": at.isoformat()}, format="json").json()
    assert body["state"] == "pending"
    assert dt.datetime.fromisoformat(body["activates_at"]) == at
    again = admin.client.post("/api/v1/cas/issuing/rollover/", {}, format="json")
    # The retry of "roll over from generation 1" is the same rollover, not a second one.
    assert again.status_code == 201
    assert again.json()["number"] == 2
    assert CAGeneration.objects.filter(ca=issuing_ca).count() == 2


def test_rollover_and_renew_refuse_bad_input(admin, issuing_ca):
    bad = admin.client.post("/api/v1/cas/issuing/rollover/", {"key_type": "rsa-1024"}, format="json")
    assert bad.status_code == 400
    assert bad.json()["errors"][0]["field"] == "key_type"
    bad = admin.client.post("/api/v1/cas/issuing/renew/", {"validity_days": 0}, format="json")
    assert bad.status_code == 400
    short = admin.client.post("/api/v1/cas/issuing/renew/", {"validity_days": 2}, format="json")
    assert short.status_code == 422
    assert "not after the current one" in short.json()["detail"]
    assert CAGeneration.objects.filter(ca=issuing_ca).count() == 1


def test_renew_over_the_api(admin, root_ca):
    before = admin.client.get("/api/v1/cas/root/").json()
    response = admin.client.post("/api/v1/cas/root/renew/", {"validity_days": 5000}, format="json")
    assert response.status_code == 200, response.content
    after = response.json()
    assert after["serial"] != before["serial"]
    assert after["not_after"] > before["not_after"]
    assert after["generation"] == 1
