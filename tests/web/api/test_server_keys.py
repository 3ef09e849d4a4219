"""Server-generated keys: a PKCS#12 (AES-256) downloadable exactly once, then KMI's copy is destroyed."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives.serialization import pkcs12

from pki.models import AuditEvent, Key, KeyDelivery, KeyState, SealedKey

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery"
AES256_CBC_OID = bytes.fromhex("060960864801650304012a")  # DER of 2.16.840.1.101.3.4.1.42


def _download(created, password=PASSWORD):
    """The PKCS#12 download body: the password and the creation response's one-time secret."""
    return {"password": password, "download_secret": created.json()["download_secret"]}


def _create(actor, profile="tls-client", **extra):
    body = {
        "ca": "issuing",
        "profile": profile,
        "subject": "CN=device-17,O=KMI",
        "sans": ["dns:device-17.example.test"],
    }
    return actor.client.post("/api/v1/server-keys/", {**body, **extra}, format="json")


def test_key_is_delivered_once_as_aes256_pkcs12_then_destroyed(requester):
    created = _create(requester)
    assert created.status_code == 201
    delivery = KeyDelivery.objects.get()
    key = delivery.key
    assert SealedKey.objects.filter(key=key).exists()
    assert "handle" not in requester.client.get(f"/api/v1/keys/{key.pk}/").json()
    url = created.json()["pkcs12_url"]
    secret = created.json()["download_secret"]
    assert delivery.secret_sha256 == hashlib.sha256(secret.encode()).hexdigest()  # only its digest is kept
    assert "download_secret" not in requester.client.get(created.json()["url"]).json()  # shown once

    short = requester.client.post(url, _download(created, "short"), format="json")
    assert short.status_code == 400
    assert short.json()["errors"][0]["field"] == "password"
    # Knowing the delivery (its id, its URL) is not enough: the one-time secret is needed.
    no_secret = requester.client.post(url, {"password": PASSWORD}, format="json")
    assert no_secret.status_code == 400
    assert no_secret.json()["errors"][0]["field"] == "download_secret"
    wrong = requester.client.post(url, {"password": PASSWORD, "download_secret": "guess"}, format="json")
    assert wrong.status_code == 422
    assert "wrong download secret" in wrong.json()["detail"]
    key.refresh_from_db()
    assert key.state == KeyState.ACTIVE

    first = requester.client.post(url, _download(created), format="json")
    assert first.status_code == 200
    assert first["Content-Type"] == "application/x-pkcs12"
    assert first["Cache-Control"] == "no-store"
    # PBES2 with AES-256-CBC (OID 2.16.840.1.101.3.4.1.42) protects the key bag.
    assert AES256_CBC_OID in first.content
    bundle = pkcs12.load_pkcs12(first.content, PASSWORD.encode())
    assert bundle.cert is not None
    assert bundle.cert.certificate.subject.rfc4514_string() == "CN=device-17,O=KMI"
    assert bundle.key is not None
    assert bundle.cert.certificate.public_key() == bundle.key.public_key()
    assert len(bundle.additional_certs) == 2
    with pytest.raises(ValueError):
        pkcs12.load_pkcs12(first.content, b"wrong password!!")

    second = requester.client.post(url, _download(created), format="json")
    assert second.status_code == 410
    assert second.json()["code"] == "already_delivered"
    key.refresh_from_db()
    assert key.state == KeyState.DESTROYED
    assert not SealedKey.objects.filter(key=key).exists()
    actions = set(AuditEvent.objects.filter(object_id=str(key.pk)).values_list("action", flat=True))
    assert actions == {"key.generated", "key.delivered", "key.destroyed"}


def test_escrow_profile_keeps_the_key_after_delivery(requester, admin):
    admin.client.patch("/api/v1/profiles/tls-client/", {"escrow": True}, format="json")
    created = _create(requester)
    url = created.json()["pkcs12_url"]
    assert requester.client.post(url, _download(created), format="json").status_code == 200
    key = Key.objects.get(purpose="end_entity")
    assert key.escrow is True
    assert key.state == KeyState.ACTIVE
    assert SealedKey.objects.filter(key=key).exists()


def test_only_the_requester_downloads_not_even_an_administrator(requester, admin):
    created = _create(requester)
    url = created.json()["pkcs12_url"]
    assert admin.client.post(url, _download(created), format="json").status_code == 404
    assert requester.client.post(url, _download(created), format="json").status_code == 200


def test_pending_approval_is_202_and_download_waits_for_issuance(requester, operator):
    created = _create(
        requester, profile="code-signing", subject="CN=Signer,O=KMI", sans=[], key_type="ec-p384"
    )
    assert created.status_code == 202
    url = created.json()["pkcs12_url"]
    early = requester.client.post(url, _download(created), format="json")
    assert early.status_code == 409
    request_url = created.json()["request"]
    assert operator.client.post(request_url + "approve/").status_code == 200
    assert requester.client.post(url, _download(created), format="json").status_code == 200


def test_refused_request_stores_no_key(requester):
    response = _create(requester, sans=["dns:bad_name"])
    assert response.status_code == 400
    bad_policy = _create(requester, profile="tls-server", sans=["email:x@example.test"])
    assert bad_policy.status_code == 422
    assert not Key.objects.filter(purpose="end_entity").exists()
    assert not SealedKey.objects.exclude(key__purpose="ca").exists()
    assert KeyDelivery.objects.count() == 0


def test_key_types_kmi_will_not_generate_are_refused(requester):
    response = _create(requester, key_type="rsa-4096")
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "key_type"
