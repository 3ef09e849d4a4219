"""Escrow recovery: two distinct key recovery officers, a one-time PKCS#12; never-escrowed keys refused."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.serialization import pkcs12

from pki.models import AuditEvent, Key, KeyDelivery, Profile, Role

pytestmark = pytest.mark.django_db
PASSWORD = "correct horse battery"


def _server_key(requester, *, escrow: bool) -> Key:
    Profile.objects.filter(name="tls-client").update(escrow=escrow)
    body = {"ca": "issuing", "profile": "tls-client", "subject": "CN=device-9,O=KMI", "sans": []}
    created = requester.client.post("/api/v1/server-keys/", body, format="json")
    assert created.status_code == 201, created.content
    delivery = KeyDelivery.objects.get(pk=created.json()["id"])
    download = {"password": PASSWORD, "download_secret": created.json()["download_secret"]}
    taken = requester.client.post(created.json()["pkcs12_url"], download, format="json")
    assert taken.status_code == 200
    return Key.objects.get(pk=delivery.key_id)


@pytest.fixture
def officers(make_actor):
    return (
        make_actor("olga", (Role.KEY_RECOVERY_OFFICER, None, None)),
        make_actor("otto", (Role.KEY_RECOVERY_OFFICER, None, None)),
    )


def test_two_officers_recover_an_escrowed_key_once(requester, officers, admin):
    olga, otto = officers
    key = _server_key(requester, escrow=True)
    assert olga.client.get(f"/api/v1/keys/{key.pk}/").status_code == 200  # officers see escrowed keys
    # Administrators hold no exception: recovery is the officers' alone.
    assert (
        admin.client.post(f"/api/v1/keys/{key.pk}/recovery/", {"reason": "x"}, format="json").status_code
        == 403
    )
    asked = olga.client.post(
        f"/api/v1/keys/{key.pk}/recovery/", {"reason": "laptop lost, mail archive"}, format="json"
    )
    assert asked.status_code == 201, asked.content
    url = asked["Location"]
    early = olga.client.post(url + "pkcs12/", {"password": PASSWORD}, format="json")
    assert early.status_code == 409
    assert "second officer" in early.json()["detail"]
    own = olga.client.post(url + "approve/", format="json")
    assert own.status_code == 422
    assert "cannot also approve" in own.json()["detail"]
    approved = otto.client.post(url + "approve/", format="json")
    assert approved.status_code == 200
    assert approved.json()["state"] == "approved"
    assert otto.client.post(url + "pkcs12/", {"password": PASSWORD}, format="json").status_code == 422
    first = olga.client.post(url + "pkcs12/", {"password": PASSWORD}, format="json")
    assert first.status_code == 200
    assert first["Cache-Control"] == "no-store"
    bundle = pkcs12.load_pkcs12(first.content, PASSWORD.encode())
    assert bundle.key is not None
    assert bundle.cert is not None
    assert bundle.cert.certificate.public_key() == bundle.key.public_key()
    assert olga.client.post(url + "pkcs12/", {"password": PASSWORD}, format="json").status_code == 410
    key.refresh_from_db()
    assert key.state == "active"  # the escrowed copy stays
    actions = list(AuditEvent.objects.filter(object_id=str(key.pk)).values_list("action", flat=True))
    assert actions[-3:] == ["key.recovery_requested", "key.recovery_approved", "key.recovered"]


def test_a_key_never_escrowed_cannot_be_recovered(requester, officers):
    olga, _ = officers
    key = _server_key(requester, escrow=False)
    response = olga.client.post(f"/api/v1/keys/{key.pk}/recovery/", {"reason": "please"}, format="json")
    assert response.status_code in (403, 404, 422)
    assert not AuditEvent.objects.filter(action="key.recovery_requested").exists()


def test_key_state_over_the_api_needs_a_second_administrator_to_destroy_a_ca_key(
    admin, make_actor, issuing_ca, operator
):
    other = make_actor("adam", (Role.ADMINISTRATOR, None, None))
    url = f"/api/v1/keys/{issuing_ca.key_id}/state/"
    assert operator.client.post(url, {"action": "suspend"}, format="json").status_code in (403, 404)
    assert (
        admin.client.post(url, {"action": "suspend", "reason": "check"}, format="json").json()["state"]
        == "suspended"
    )
    assert admin.client.post(url, {"action": "deactivate"}, format="json").json()["state"] == "deactivated"
    bad = admin.client.post(url, {"action": "explode"}, format="json")
    assert bad.status_code == 400
    asked = admin.client.post(url, {"action": "destroy", "reason": "retired"}, format="json")
    assert asked.status_code == 202
    assert asked.json()["state"] == "pending"
    assert admin.client.post(url, {"action": "destroy"}, format="json").status_code == 422
    done = other.client.post(url, {"action": "destroy"}, format="json")
    assert done.status_code == 200, done.content
    assert done.json()["state"] == "destroyed"
