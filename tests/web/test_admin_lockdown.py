"""Issue 10 §3: no back door through the Django admin.

A superuser session could delete a certificate revoked for keyCompromise (it left the CRL and
OCSP answered `unknown`), turn off approval on code-signing and raise it to 3650 days, disable a
CA, and delete requests, keys and profiles — none of it audited; "Add certificate" was a 500.
Now every PKI record is read-only in the admin, and the one change it offers on CAs (enable,
disable) goes through ``set_ca_state``, which audits it.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from pki.issuance import submit_request
from pki.models import (
    AuditEvent,
    CAState,
    Certificate,
    CertificateAuthority,
    CertificateRequest,
    Key,
    Profile,
)
from pki.revocation import revoke_certificate
from tests.conftest import NOW, make_csr
from tests.support.certs import issue

pytestmark = pytest.mark.django_db


@pytest.fixture
def boss(client):
    User.objects.create_superuser(username="boss", password="a-long-password-42")
    client.login(username="boss", password="a-long-password-42")
    return client


@pytest.fixture
def compromised(issuing_ca, profile) -> Certificate:
    cert = issue(issuing_ca, profile)
    return revoke_certificate(certificate=cert, reason="keyCompromise", actor="alice", now=NOW)


def test_add_pages_refuse_instead_of_failing(boss):
    for model in (
        "certificate",
        "certificaterequest",
        "key",
        "certificateauthority",
        "profile",
        "auditevent",
    ):
        assert boss.get(f"/admin/pki/{model}/add/").status_code == 403, model


def test_a_compromised_certificate_cannot_be_deleted(boss, compromised):
    assert boss.get(f"/admin/pki/certificate/{compromised.pk}/change/").status_code == 200  # read-only view
    assert boss.post(f"/admin/pki/certificate/{compromised.pk}/delete/", {"post": "yes"}).status_code == 403
    boss.post(
        "/admin/pki/certificate/",
        {"action": "delete_selected", "_selected_action": [compromised.pk], "post": "yes"},
    )
    assert (
        boss.post(
            f"/admin/pki/certificate/{compromised.pk}/change/", {"revoked_at": "", "revocation_reason": ""}
        ).status_code
        == 403
    )
    row = Certificate.objects.get(pk=compromised.pk)
    assert (row.revocation_reason, row.revoked_at is not None) == ("keyCompromise", True)


def test_a_profile_cannot_be_changed_here(boss, db):
    signing = Profile.objects.get(name="code-signing")
    before = (signing.requires_approval, signing.validity_days)
    page = boss.get(f"/admin/pki/profile/{signing.pk}/change/")
    assert page.status_code == 200
    assert f"/console/profiles/{signing.name}/edit/" in boss.get("/admin/pki/profile/").content.decode()
    response = boss.post(
        f"/admin/pki/profile/{signing.pk}/change/",
        {"name": signing.name, "validity_days": 3650, "requires_approval": ""},
    )
    assert response.status_code == 403
    signing.refresh_from_db()
    assert (signing.requires_approval, signing.validity_days) == before
    assert not AuditEvent.objects.filter(action="profile.updated").exists()


def test_a_ca_is_disabled_only_by_the_audited_action(boss, issuing_ca):
    response = boss.post(f"/admin/pki/certificateauthority/{issuing_ca.pk}/change/", {"state": "disabled"})
    assert response.status_code == 403
    assert CertificateAuthority.objects.get(pk=issuing_ca.pk).state == CAState.ACTIVE
    response = boss.post(
        "/admin/pki/certificateauthority/",
        {"action": "disable_cas", "_selected_action": [issuing_ca.pk]},
        follow=True,
    )
    assert response.status_code == 200
    assert CertificateAuthority.objects.get(pk=issuing_ca.pk).state == CAState.DISABLED
    event = AuditEvent.objects.get(action="ca.disabled", object_id=str(issuing_ca.pk))
    assert event.actor == "admin:boss"


def test_requests_keys_profiles_and_cas_cannot_be_deleted(boss, issuing_ca, profile):
    request = submit_request(
        ca=issuing_ca,
        profile=profile("tls-server"),
        csr=make_csr("ec-p256", subject="CN=www.example.test"),
        actor="alice",
        now=NOW,
    )
    targets = {
        "certificaterequest": request.pk,
        "key": issuing_ca.key_id,
        "profile": profile("tls-server").pk,
        "certificateauthority": issuing_ca.pk,
    }
    for model, pk in targets.items():
        assert boss.post(f"/admin/pki/{model}/{pk}/delete/", {"post": "yes"}).status_code == 403, model
        boss.post(
            f"/admin/pki/{model}/", {"action": "delete_selected", "_selected_action": [pk], "post": "yes"}
        )
    assert CertificateRequest.objects.filter(pk=request.pk).exists()
    assert Key.objects.filter(pk=issuing_ca.key_id).exists()
    assert Profile.objects.filter(name="tls-server").exists()
    assert CertificateAuthority.objects.filter(pk=issuing_ca.pk).exists()
