"""Console pages through Django's test client: every action goes through the use case, is
audited, is refused where the roles refuse it, and shows domain errors next to the field."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12
from django.contrib.auth.models import User
from django.test import Client

from pki import health
from pki.crl import publish_crl
from pki.enrollment import enroll
from pki.models import (
    AuditEvent,
    Certificate,
    CertificateRequest,
    Key,
    KeyState,
    Profile,
    RequestState,
    Role,
)
from pki.models.authority import CACreation, CAState, CertificateAuthority
from tests.conftest import make_csr
from tests.web.console.conftest import sign_in

pytestmark = pytest.mark.django_db

DNS = [x509.DNSName("www.example.test")]


def _issue(
    user: User, ca: CertificateAuthority, name: str = "www.example.test", key: str = "ec-p256"
) -> Certificate:
    result = enroll(
        ca=ca,
        profile=Profile.objects.get(name="tls-server"),
        csr=make_csr(key, subject=f"CN={name}", sans=[x509.DNSName(name)]),
        requester=user,
        actor=user.username,
    )
    assert result.certificate is not None
    return result.certificate


def test_requester_submits_operator_approves_and_downloads_the_chain(c_requester, c_operator, issuing_ca):
    csr = make_csr("ec-p256", subject="CN=Signer One")
    response = c_requester.client.post(
        "/console/enroll/", {"csr": csr.decode(), "ca": "issuing", "profile": "code-signing"}
    )
    request = CertificateRequest.objects.get()
    assert response["Location"] == f"/console/requests/{request.pk}/"
    assert request.state == RequestState.PENDING
    queue = c_operator.client.get("/console/requests/").content.decode()
    assert f'value="{request.pk}"' in queue
    assert "CN=Signer One" in queue
    detail = c_operator.client.get(f"/console/requests/{request.pk}/").content.decode()
    assert "ECDSA P-256" in detail
    assert "Approve and issue" in detail
    approved = c_operator.client.post(f"/console/requests/{request.pk}/approve/")
    cert = Certificate.objects.get(request=request)
    assert approved["Location"] == f"/console/certificates/{cert.pk}/"
    chain = c_operator.client.get(f"/api/v1/certificates/{cert.pk}/chain/")
    assert chain.status_code == 200
    assert len(x509.load_pem_x509_certificates(chain.content)) == 3
    assert AuditEvent.objects.filter(action="request.approved", actor="oscar").exists()


def test_enroll_shows_a_bad_csr_next_to_the_field(c_requester, issuing_ca):
    response = c_requester.client.post(
        "/console/enroll/", {"csr": "not a csr", "ca": "issuing", "profile": "tls-server"}
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert 'id="id_csr_error"' in page
    assert "does not parse" in page
    assert not CertificateRequest.objects.exists()


def test_enroll_refuses_a_pair_the_roles_do_not_allow(c_requester, issuing_ca):
    csr = make_csr("ec-p256", sans=DNS)
    response = c_requester.client.post(
        "/console/enroll/", {"csr": csr.decode(), "ca": "issuing", "profile": "tls-client"}
    )
    assert 'id="id_profile_error"' in response.content.decode()
    assert not CertificateRequest.objects.exists()


def test_enroll_by_upload_issues_at_once(c_requester, issuing_ca):
    from django.core.files.uploadedfile import SimpleUploadedFile

    csr = x509.load_pem_x509_csr(make_csr("ec-p256", sans=DNS))
    from cryptography.hazmat.primitives.serialization import Encoding

    upload = SimpleUploadedFile("www.csr", csr.public_bytes(Encoding.DER))
    response = c_requester.client.post(
        "/console/enroll/", {"csr_file": upload, "ca": "issuing", "profile": "tls-server"}
    )
    cert = Certificate.objects.get(owner=c_requester.user)
    assert response["Location"] == f"/console/certificates/{cert.pk}/"


def test_reject_needs_a_reason(c_operator, c_requester, issuing_ca):
    result = enroll(
        ca=issuing_ca,
        profile=Profile.objects.get(name="code-signing"),
        csr=make_csr(),
        requester=c_requester.user,
        actor="rita",
    )
    url = f"/console/requests/{result.request.pk}/reject/"
    blank = c_operator.client.post(url, {"reason": "  "})
    assert blank.status_code == 400
    assert 'id="id_reason_error"' in blank.content.decode()
    done = c_operator.client.post(url, {"reason": "not ours"})
    assert done.status_code == 302
    result.request.refresh_from_db()
    assert (result.request.state, result.request.reason) == (RequestState.REJECTED, "not ours")


def test_bulk_approve_asks_first_then_issues_each(c_operator, c_requester, issuing_ca):
    ids = [
        enroll(
            ca=issuing_ca,
            profile=Profile.objects.get(name="code-signing"),
            csr=make_csr(key, subject=f"CN=bulk {key}"),
            requester=c_requester.user,
            actor="rita",
        ).request.pk
        for key in ("ec-p256", "ec-p384")
    ]
    confirm = c_operator.client.post("/console/requests/approve/", {"ids": ids})
    assert confirm.status_code == 200
    assert "Yes, approve 2" in confirm.content.decode()
    assert not Certificate.objects.filter(request_id__in=ids).exists()
    done = c_operator.client.post("/console/requests/approve/", {"ids": ids, "confirmed": "yes"})
    assert done.status_code == 200
    assert Certificate.objects.filter(request_id__in=ids).count() == 2


def test_revoke_hold_release_and_the_next_crl(c_operator, c_requester, issuing_ca):
    cert = _issue(c_requester.user, issuing_ca)
    url = f"/console/certificates/{cert.pk}/"
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(days=2)).strftime("%Y-%m-%dT%H:%M")
    bad = c_operator.client.post(url + "revoke/", {"reason": "keyCompromise", "invalidity_date": future})
    assert bad.status_code == 400
    assert 'id="id_invalidity_date_error"' in bad.content.decode()
    hold = c_operator.client.post(url + "revoke/", {"reason": "certificateHold"})
    assert hold.status_code == 302
    assert "Release hold" in c_operator.client.get(url).content.decode()
    assert c_operator.client.post(url + "unhold/").status_code == 302
    cert.refresh_from_db()
    assert cert.revoked_at is None
    assert c_operator.client.post(url + "revoke/", {"reason": "keyCompromise"}).status_code == 302
    crl = x509.load_der_x509_crl(bytes(publish_crl(ca=issuing_ca, actor="t").der))
    assert crl.get_revoked_certificate_by_serial_number(cert.serial_int) is not None
    health.refresh_summaries()
    dashboard = c_operator.client.get("/console/").content.decode()
    assert 'data-testid="revoked-count">1<' in dashboard
    assert 'data-testid="crl-entries-issuing">1<' in dashboard


def test_renew_same_key_and_refuse_new_names(c_requester, issuing_ca):
    cert = _issue(c_requester.user, issuing_ca)
    url = f"/console/certificates/{cert.pk}/renew/"
    more = make_csr("ec-p384", sans=[*DNS, x509.DNSName("extra.example.test")])
    refused = c_requester.client.post(url, {"csr": more.decode()})
    assert refused.status_code == 400
    assert "may not add names" in refused.content.decode()
    renewed = c_requester.client.post(url, {})
    successor = Certificate.objects.get(renewed_from=cert)
    assert renewed["Location"] == f"/console/certificates/{successor.pk}/"
    assert successor.key_fingerprint == cert.key_fingerprint


def test_requester_sees_only_her_certificates(c_requester, person, issuing_ca):
    other = User.objects.create_user("bob", password="x-long-password-1")
    mine, theirs = (
        _issue(c_requester.user, issuing_ca),
        _issue(other, issuing_ca, "other.example.test", "ec-p384"),
    )
    page = c_requester.client.get("/console/certificates/").content.decode()
    assert mine.serial in page
    assert theirs.serial not in page
    assert c_requester.client.get(f"/console/certificates/{theirs.pk}/").status_code == 404
    assert (
        c_requester.client.post(
            f"/console/certificates/{mine.pk}/revoke/", {"reason": "superseded"}
        ).status_code
        == 403
    )


def test_auditor_sees_but_cannot_act(c_auditor, c_requester, issuing_ca):
    cert = _issue(c_requester.user, issuing_ca)
    page = c_auditor.client.get(f"/console/certificates/{cert.pk}/").content.decode()
    assert cert.serial in page
    assert "Revoke" not in page
    assert "certificate.issued" in page
    assert (
        c_auditor.client.post(
            f"/console/certificates/{cert.pk}/revoke/", {"reason": "superseded"}
        ).status_code
        == 403
    )
    assert c_auditor.client.get("/console/audit/").status_code == 200
    assert c_auditor.client.post("/console/profiles/tls-server/edit/", {}).status_code == 403
    cert.refresh_from_db()
    assert cert.revoked_at is None


def test_certificate_search_and_filters(c_operator, c_requester, issuing_ca):
    a = _issue(c_requester.user, issuing_ca, "alpha.example.test")
    b = _issue(c_requester.user, issuing_ca, "beta.example.test", "ec-p384")
    page = c_operator.client.get("/console/certificates/?q=ALPHA").content.decode()
    assert a.serial in page
    assert b.serial not in page
    until = (b.not_after + dt.timedelta(days=1)).date().isoformat()
    assert (
        b.serial
        in c_operator.client.get(
            f"/console/certificates/?state=valid&ca=issuing&expiring_before={until}"
        ).content.decode()
    )
    assert (
        "No certificate matches"
        in c_operator.client.get("/console/certificates/?state=revoked").content.decode()
    )
    bad = c_operator.client.get("/console/certificates/?state=bogus").content.decode()
    assert 'id="id_state_error"' in bad


def test_keyset_pages(c_operator, c_requester, issuing_ca, monkeypatch):
    from web.console import common

    monkeypatch.setattr(common, "PAGE_SIZE", 1)
    monkeypatch.setattr(common.keyset_page, "__kwdefaults__", {"size": 1})
    first, second = (
        _issue(c_requester.user, issuing_ca, "one.example.test"),
        _issue(c_requester.user, issuing_ca, "two.example.test", "ec-p384"),
    )
    page = c_operator.client.get("/console/certificates/").content.decode()
    assert second.serial in page
    assert first.serial not in page
    nxt = c_operator.client.get(f"/console/certificates/?after={second.pk}").content.decode()
    assert first.serial in nxt


def test_profile_edit_shows_a_diff_then_applies(c_admin):
    url = "/console/profiles/tls-client/edit/"
    form = c_admin.client.get(url)
    assert form.status_code == 200
    profile = Profile.objects.get(name="tls-client")
    data = {
        "description": profile.description,
        "validity_days": 200,
        "default_validity_days": 300,
        "key_types": profile.key_types,
        "min_rsa_bits": profile.min_rsa_bits,
        "key_usage": profile.key_usage,
        "extended_key_usage": profile.extended_key_usage,
        "allowed_names": "\n".join(profile.allowed_names),
    }
    bad = c_admin.client.post(url, data)
    assert bad.status_code == 400
    assert "default validity exceeds the cap" in bad.content.decode()
    data["default_validity_days"] = 100
    preview = c_admin.client.post(url, data)
    assert preview.status_code == 200
    assert "The change" in preview.content.decode()
    assert Profile.objects.get(name="tls-client").validity_days == profile.validity_days
    applied = c_admin.client.post(url, {**data, "confirmed": "yes"})
    assert applied.status_code == 302
    assert Profile.objects.get(name="tls-client").validity_days == 200
    assert AuditEvent.objects.filter(action="profile.updated", actor="alice").exists()


def test_profile_create(c_admin):
    data = {
        "name": "vpn",
        "validity_days": 30,
        "default_validity_days": 30,
        "key_types": ["ec"],
        "min_rsa_bits": 2048,
        "allowed_names": "dns:*.vpn.example.test",
    }
    assert c_admin.client.post("/console/profiles/new/", data).status_code == 302
    assert Profile.objects.get(name="vpn").allowed_names == ["dns:*.vpn.example.test"]
    again = c_admin.client.post("/console/profiles/new/", data)
    assert again.status_code == 400
    assert "exists" in again.content.decode()


def test_ca_pages_disable_enable_and_new_intermediate(c_admin, person, issuing_ca):
    assert "issuing" in c_admin.client.get("/console/cas/").content.decode()
    detail = c_admin.client.get("/console/cas/issuing/").content.decode()
    assert "full CRL" in detail
    assert "Disable" in detail
    c_admin.client.post("/console/cas/issuing/state/", {"enabled": "", "reason": "maintenance"})
    assert CertificateAuthority.objects.get(name="issuing").state == CAState.DISABLED
    c_admin.client.post("/console/cas/issuing/state/", {"enabled": "on"})
    assert CertificateAuthority.objects.get(name="issuing").state == CAState.ACTIVE
    assert AuditEvent.objects.filter(action="ca.disabled", details__reason="maintenance").exists()
    refused = c_admin.client.post(
        "/console/cas/new/",
        {
            "name": "sub",
            "parent": "issuing",
            "subject": "CN=Sub",
            "key_type": "ec-p256",
            "validity_days": 100,
        },
    )
    assert refused.status_code == 200
    assert "path length 0" in refused.content.decode()
    made = c_admin.client.post(
        "/console/cas/new/",
        {
            "name": "issuing-2",
            "parent": "root",
            "subject": "CN=Issuing Two",
            "key_type": "ec-p256",
            "validity_days": 100,
            "permitted": "dns:example.test",
        },
    )
    # Separation of duties: the CA waits for another administrator, who approves it from the list.
    assert made["Location"] == "/console/cas/"
    assert not CertificateAuthority.objects.filter(name="issuing-2").exists()
    queue = c_admin.client.get("/console/cas/").content.decode()
    assert "yours: another administrator approves" in queue
    assert queue.count('data-testid="ca-creations"') == 1
    assert "<title>CAs" in queue
    creation = CACreation.objects.get(name="issuing-2")
    own = c_admin.client.post(f"/console/cas/creations/{creation.pk}/approve/", follow=True)
    assert "another administrator must approve" in own.content.decode()
    assert not CertificateAuthority.objects.filter(name="issuing-2").exists()
    bob = person("bob", (Role.ADMINISTRATOR, None, None))
    assert "Approve and create" in bob.client.get("/console/cas/").content.decode()
    approved = bob.client.post(f"/console/cas/creations/{creation.pk}/approve/")
    assert approved["Location"] == "/console/cas/issuing-2/"
    assert CertificateAuthority.objects.get(name="issuing-2").name_constraints["permitted"] == [
        "dns:example.test"
    ]
    assert AuditEvent.objects.filter(action="ca.created", actor="bob").exists()


def test_a_ca_creation_is_rejected_from_the_console_with_a_reason(c_admin, person, issuing_ca):
    form = {"name": "sub-2", "parent": "root", "subject": "CN=Sub", "key_type": "ec-p256", "validity_days": 9}
    assert c_admin.client.post("/console/cas/new/", form)["Location"] == "/console/cas/"
    creation = CACreation.objects.get(name="sub-2")
    bob = person("bob", (Role.ADMINISTRATOR, None, None))
    no_reason = bob.client.post(f"/console/cas/creations/{creation.pk}/reject/", {"reason": ""}, follow=True)
    assert "needs a reason" in no_reason.content.decode()
    bob.client.post(f"/console/cas/creations/{creation.pk}/reject/", {"reason": "not this quarter"})
    creation.refresh_from_db()
    assert (creation.state, creation.reason, creation.decided_by) == ("cancelled", "not this quarter", "bob")
    late = c_admin.client.post(f"/console/cas/creations/{creation.pk}/approve/", follow=True)
    assert "is cancelled" in late.content.decode()
    assert not CertificateAuthority.objects.filter(name="sub-2").exists()


def test_operator_cannot_disable_a_ca(c_operator, issuing_ca):
    assert c_operator.client.post("/console/cas/issuing/state/", {"enabled": ""}).status_code == 403


def test_server_key_is_downloaded_once_then_destroyed(c_requester, c_admin, issuing_ca):
    made = c_requester.client.post(
        "/console/enroll/server-key/",
        {
            "ca": "issuing",
            "profile": "tls-server",
            "subject": "CN=device",
            "sans": "dns:device.example.test",
            "key_type": "ec-p256",
        },
    )
    assert made.status_code == 302
    url = made["Location"]
    short = c_requester.client.post(url, {"password": "short", "confirm": "short"})
    assert short.status_code == 400
    # Her other browser has no one-time download secret (it stays in the session that asked).
    other = Client()
    sign_in(other, "rita")
    elsewhere = other.post(url, {"password": "a-good-password-1", "confirm": "a-good-password-1"})
    assert elsewhere.status_code == 400
    assert "wrong download secret" in elsewhere.content.decode()
    assert Key.objects.get(purpose="end_entity").state == KeyState.ACTIVE
    blob = c_requester.client.post(url, {"password": "a-good-password-1", "confirm": "a-good-password-1"})
    assert blob["Content-Type"] == "application/x-pkcs12"
    key, cert, _ = pkcs12.load_key_and_certificates(blob.content, b"a-good-password-1")
    assert key is not None
    assert cert is not None
    again = c_requester.client.get(url).content.decode()
    assert "cannot be downloaded again" in again
    assert Key.objects.get(purpose="end_entity").state == KeyState.DESTROYED
    # Only the requester has the delivery page.
    assert c_admin.client.get(url).status_code == 404


def test_key_destroy_needs_the_typed_fingerprint(c_admin, c_requester, issuing_ca):
    c_requester.client.post(
        "/console/enroll/server-key/",
        {"ca": "issuing", "profile": "tls-server", "sans": "dns:box.example.test", "key_type": "ec-p256"},
    )
    key = Key.objects.get(purpose="end_entity")
    url = f"/console/keys/{key.pk}/"
    assert c_requester.client.post(url + "destroy/", {"typed": key.spki_sha256[:12]}).status_code == 403
    wrong = c_admin.client.post(url + "destroy/", {"typed": "nope"})
    assert wrong.status_code == 400
    assert "exactly" in wrong.content.decode()
    assert (
        c_admin.client.post(url + "destroy/", {"typed": key.spki_sha256[:12], "reason": "test"}).status_code
        == 302
    )
    key.refresh_from_db()
    assert key.state == KeyState.DESTROYED
    assert "Destroyed" in c_admin.client.get("/console/keys/").content.decode()


def test_ca_key_cannot_be_destroyed_while_the_ca_is_enabled(c_admin, issuing_ca):
    key = issuing_ca.key
    refused = c_admin.client.post(f"/console/keys/{key.pk}/destroy/", {"typed": key.spki_sha256[:12]})
    assert refused.status_code == 400
    assert "disable the CA first" in refused.content.decode()


def test_a_ca_key_is_destroyed_from_the_console_by_two_administrators(c_admin, person, issuing_ca):
    from pki.authorities import set_ca_state
    from pki.models import CAState, KeyDestruction, TwoPersonState

    set_ca_state(ca=issuing_ca, state=CAState.DISABLED, actor="t")
    key = issuing_ca.key
    url, typed = f"/console/keys/{key.pk}/destroy/", {"typed": key.spki_sha256[:12], "reason": "retired"}
    asked = c_admin.client.post(url, typed, follow=True)
    assert "a different administrator confirms it" in asked.content.decode()
    key.refresh_from_db()
    assert key.state != KeyState.DESTROYED
    again = c_admin.client.post(url, typed, follow=True)  # the one who asked cannot confirm
    assert "cannot also approve" in again.content.decode()
    bob = person("bob", (Role.ADMINISTRATOR, None, None))
    assert bob.client.post(url, typed).status_code == 302
    key.refresh_from_db()
    assert key.state == KeyState.DESTROYED
    assert KeyDestruction.objects.get(key=key).state == TwoPersonState.DONE


def test_audit_filters_verify_and_export(c_auditor, c_requester, issuing_ca):
    _issue(c_requester.user, issuing_ca)
    page = c_auditor.client.get("/console/audit/?action=certificate.issued").content.decode()
    assert "certificate.issued" in page
    assert "request.submitted" not in page
    assert 'href="/api/v1/audit-events/export/?action=certificate.issued"' in page
    c_auditor.client.post("/console/audit/verify/")
    assert "every chain whole" in c_auditor.client.get("/console/audit/").content.decode()
    export = c_auditor.client.get("/api/v1/audit-events/export/?action=certificate.issued")
    assert b"certificate.issued" in b"".join(export.streaming_content)
    assert c_requester.client.get("/console/audit/").status_code == 403


def test_tokens_are_shown_once_and_revoked(c_requester):
    made = c_requester.client.post("/console/tokens/", {"form": "create", "name": "ci"})
    assert "no-store" in made["Cache-Control"]
    text = made.content.decode().split('data-testid="new-token">')[1].split("<")[0]
    assert text.startswith("kmi_")
    assert "new-token" not in c_requester.client.get("/console/tokens/").content.decode()
    token = c_requester.user.kmi_tokens.get()
    c_requester.client.post("/console/tokens/", {"form": "revoke", "token": token.pk})
    token.refresh_from_db()
    assert token.revoked_at is not None


def test_users_and_grants(c_admin, issuing_ca):
    made = c_admin.client.post("/console/access/", {"username": "newbie", "password": "another-long-pass-9"})
    newbie = User.objects.get(username="newbie")
    assert made["Location"] == f"/console/access/users/{newbie.pk}/"
    weak = c_admin.client.post("/console/access/", {"username": "weak", "password": "123"})
    assert weak.status_code == 400
    assert not User.objects.filter(username="weak").exists()
    url = made["Location"]
    missing = c_admin.client.post(url, {"form": "grant", "role": "ca_operator"})
    assert missing.status_code == 400
    assert "names a CA" in missing.content.decode()
    c_admin.client.post(url, {"form": "grant", "role": "ca_operator", "ca": "issuing"})
    assert newbie.kmi_grants.get().role == Role.CA_OPERATOR
    c_admin.client.post(url, {"form": "deactivate"})
    newbie.refresh_from_db()
    assert not newbie.is_active
    assert AuditEvent.objects.filter(action="user.deactivated").exists()
    # The last administrator is never deactivated.
    c_admin.client.post(f"/console/access/users/{c_admin.user.pk}/", {"form": "deactivate"})
    c_admin.user.refresh_from_db()
    assert c_admin.user.is_active


def test_admin_resets_a_lost_authenticator(c_admin, c_operator):
    url = f"/console/access/users/{c_operator.user.pk}/"
    c_admin.client.post(url, {"form": "reset_totp"})
    assert not c_operator.user.totpdevice_set.exists()
    assert AuditEvent.objects.filter(action="user.totp_reset", actor="alice").exists()


def test_acme_endpoint_and_eab_key_shown_once(c_admin, c_operator, issuing_ca):
    created = c_admin.client.post(
        "/console/acme/",
        {"name": "corp", "ca": "issuing", "profile": "tls-server", "allowed_identifiers": "*.example.test"},
    )
    assert created["Location"] == "/console/acme/corp/"
    page = c_operator.client.post("/console/acme/corp/", {"form": "eab", "user": ""}).content.decode()
    assert 'data-testid="eab-hmac"' in page
    assert 'data-testid="eab-hmac"' not in c_operator.client.get("/console/acme/corp/").content.decode()
    assert c_operator.client.post("/console/acme/corp/", {"form": "disable"}).status_code == 403
    c_admin.client.post("/console/acme/corp/", {"form": "disable"})
    assert "Enable endpoint" in c_admin.client.get("/console/acme/corp/").content.decode()


def test_device_labels_codes_shown_once_and_bad_input(c_admin, c_operator, c_requester, issuing_ca):
    from pki.models import EnrollmentCode, EstLabel, ScepChallenge, ScepLabel

    url = "/console/devices/"
    made = c_admin.client.post(
        url, {"form": "label", "protocol": "est", "name": "fleet", "ca": "issuing", "profile": "tls-client"}
    )
    assert made.status_code == 302, made.content[:2000]
    c_admin.client.post(
        url,
        {"form": "label", "protocol": "scep", "name": "phones", "ca": "issuing", "profile": "tls-client"},
    )
    assert ScepLabel.objects.filter(name="phones").exists()
    # Bad input: a taken name, an EST operation as name, a short static challenge: 400, nothing made.
    events = AuditEvent.objects.count()
    for body in (
        {"protocol": "est", "name": "fleet"},
        {"protocol": "est", "name": "cacerts"},
        {"protocol": "scep", "name": "other", "challenge": "short"},
        {"protocol": "est", "name": "Bad Name"},
    ):
        refused = c_admin.client.post(
            url, {"form": "label", "ca": "issuing", "profile": "tls-client", **body}
        )
        assert refused.status_code == 400, body
    assert AuditEvent.objects.count() == events
    # The operator of the CA mints codes and a challenge, shown in that answer only.
    page = c_operator.client.post(
        url, {"form": "codes", "protocol": "est", "name": "fleet", "count": 3, "expires_days": 7}
    ).content.decode()
    assert 'data-testid="device-codes"' in page
    assert EnrollmentCode.objects.filter(label__name="fleet").count() == 3
    code_id = EnrollmentCode.objects.filter(label__name="fleet").first().pk
    assert code_id in page
    assert 'data-testid="device-codes"' not in c_operator.client.get(url).content.decode()
    page = c_operator.client.post(
        url, {"form": "challenge", "protocol": "scep", "name": "phones", "count": 1, "expires_days": 2}
    ).content.decode()
    assert 'data-testid="scep-challenge"' in page
    assert ScepChallenge.objects.filter(label__name="phones").count() == 1
    bad = c_operator.client.post(url, {"form": "codes", "protocol": "est", "name": "fleet", "count": 0})
    assert bad.status_code == 400
    assert EnrollmentCode.objects.filter(label__name="fleet").count() == 3
    # Only administrators disable; requesters see nothing.
    assert (
        c_operator.client.post(url, {"form": "disable", "protocol": "est", "name": "fleet"}).status_code
        == 403
    )
    c_admin.client.post(url, {"form": "disable", "protocol": "est", "name": "fleet"})
    assert EstLabel.objects.get(name="fleet").enabled is False
    assert AuditEvent.objects.filter(action="est.label_disabled", actor="alice").exists()
    assert c_requester.client.get(url).status_code == 403


def test_every_page_renders_for_an_administrator(c_admin, c_requester, issuing_ca):
    cert = _issue(c_requester.user, issuing_ca)
    health.refresh_summaries()
    for url in (
        "/console/",
        "/console/requests/",
        "/console/certificates/",
        f"/console/certificates/{cert.pk}/",
        "/console/enroll/",
        "/console/enroll/server-key/",
        "/console/cas/",
        "/console/cas/root/",
        "/console/cas/new/",
        "/console/profiles/",
        "/console/profiles/tls-server/",
        "/console/profiles/new/",
        "/console/keys/",
        f"/console/keys/{issuing_ca.key_id}/",
        "/console/audit/",
        "/console/access/",
        f"/console/access/users/{c_requester.user.pk}/",
        "/console/tokens/",
        "/console/acme/",
        "/console/devices/",
    ):
        assert c_admin.client.get(url).status_code == 200, url


def test_dashboard_reads_the_summary_not_the_table(
    c_admin, c_requester, issuing_ca, django_assert_max_num_queries
):
    _issue(c_requester.user, issuing_ca)
    health.refresh_summaries()
    with django_assert_max_num_queries(30):
        page = c_admin.client.get("/console/").content.decode()
    assert "Certificates expiring per week" in page
    assert "<svg" in page


def test_an_operator_cannot_approve_her_own_request(c_operator, issuing_ca):
    csr = make_csr("ec-p256", subject="CN=Mine")
    c_operator.client.post(
        "/console/enroll/", {"csr": csr.decode(), "ca": "issuing", "profile": "code-signing"}
    )
    request = CertificateRequest.objects.get()
    response = c_operator.client.post(f"/console/requests/{request.pk}/approve/", follow=True)
    assert "is your own: another operator must approve it" in response.content.decode()
    request.refresh_from_db()
    assert request.state == RequestState.PENDING


def test_a_new_root_from_the_console(c_admin, settings):
    settings.KMI_CA_CREATION_APPROVALS = 0  # a single-operator install: created at once
    made = c_admin.client.post(
        "/console/cas/new/",
        {
            "name": "second-root",
            "subject": "CN=Second Root,O=KMI",
            "key_type": "ec-p384",
            "validity_days": 3650,
        },
    )
    assert made["Location"] == "/console/cas/second-root/"
    root = CertificateAuthority.objects.get(name="second-root")
    assert root.parent is None
    assert root.key.key_type == "ec-p384"
    assert AuditEvent.objects.filter(action="ca.created", actor="alice").exists()


def test_server_key_form_shows_bad_names_next_to_their_field(c_requester, issuing_ca):
    response = c_requester.client.post(
        "/console/enroll/server-key/",
        {"ca": "issuing", "profile": "tls-server", "sans": "dns:bad name", "key_type": "ec-p256"},
    )
    assert 'id="id_sans_error"' in response.content.decode()
    refused = c_requester.client.post(
        "/console/enroll/server-key/",
        {"ca": "issuing", "profile": "tls-server", "sans": "email:a@example.test", "key_type": "ec-p256"},
    )
    assert refused.status_code == 200
    assert "not allowed" in refused.content.decode()
    assert not Key.objects.filter(purpose="end_entity").exists()


def test_hostile_ids_and_filters_are_404_or_empty_never_500(c_admin, c_requester):
    assert c_admin.client.get("/console/keys/?state=%00&purpose=x").status_code == 200
    url = f"/console/access/users/{c_requester.user.pk}/"
    for bad in ("abc", "1\x00"):
        assert c_admin.client.post(url, {"form": "revoke_grant", "grant": bad}).status_code == 404
    assert c_admin.client.post("/console/tokens/", {"form": "revoke", "token": "x"}).status_code == 404
    assert c_admin.client.get("/console/certificates/?q=a%00b").status_code == 200


def test_the_queue_shows_who_approved_and_how_many_more_are_needed(
    c_requester, c_operator, person, issuing_ca
):
    from pki.profile_changes import update_profile

    update_profile(
        profile=Profile.objects.get(name="code-signing"), changes={"approvals_required": 2}, actor="t"
    )
    olga = person("olga", (Role.CA_OPERATOR, issuing_ca, None))
    c_requester.client.post(
        "/console/enroll/",
        {
            "csr": make_csr("ec-p256", subject="CN=Signer Two").decode(),
            "ca": "issuing",
            "profile": "code-signing",
        },
    )
    request = CertificateRequest.objects.get()
    own = c_requester.client.post(f"/console/requests/{request.pk}/approve/")
    assert own.status_code in (302, 403)
    first = c_operator.client.post(f"/console/requests/{request.pk}/approve/")
    assert first["Location"] == f"/console/requests/{request.pk}/"
    queue = c_operator.client.get("/console/requests/").content.decode()
    assert "approved by oscar, 1 of 2" in queue
    detail = c_operator.client.get(f"/console/requests/{request.pk}/").content.decode()
    assert "(1 of 2)" in detail
    second = olga.client.post(f"/console/requests/{request.pk}/approve/")
    cert = Certificate.objects.get(request=request)
    assert second["Location"] == f"/console/certificates/{cert.pk}/"
