"""Enrollment in one transaction, server-generated keys and the audit lanes they write to."""

from __future__ import annotations

import pytest
from cryptography import x509
from django.db import transaction

from pki import audit
from pki.enrollment import approve_and_issue, enroll
from pki.exceptions import AlreadyDelivered, InvalidState, PolicyViolation
from pki.models import AuditEvent, Certificate, CertificateRequest, Key, KeyDelivery, Profile, RequestState
from pki.profile_changes import update_profile
from pki.serverkeys import deliver_pkcs12, new_download_secret, request_server_key
from pki.x509.names import parse_san, parse_subject
from tests.conftest import make_csr

pytestmark = pytest.mark.django_db


def test_one_transaction_writes_every_event_of_a_scope_to_one_lane(issuing_ca, profile):
    result = enroll(
        ca=issuing_ca,
        profile=profile("tls-server"),
        csr=make_csr(sans=[x509.DNSName("a.example.test")]),
        actor="t",
    )
    events = AuditEvent.objects.filter(actor="t")
    assert {e.action for e in events} == {"request.submitted", "certificate.issued"}
    assert len({e.stream for e in events}) == 1
    assert result.certificate is not None
    assert audit.verify_chain().ok


def test_each_scope_keeps_its_own_lane_within_a_transaction(db, monkeypatch):
    picks = iter([3, 5, 7])
    monkeypatch.setattr(audit.secrets, "randbelow", lambda n: next(picks))
    with transaction.atomic():
        assert audit.stream_for("x") == "x/3"
        assert audit.stream_for("y") == "y/5"
        assert audit.stream_for("x") == "x/3"
        assert audit.stream_for("y") == "y/5"


def test_approve_and_issue_refuses_a_request_that_is_not_pending(issuing_ca, profile):
    result = enroll(
        ca=issuing_ca,
        profile=profile("tls-server"),
        csr=make_csr(sans=[x509.DNSName("a.example.test")]),
        actor="t",
    )
    with pytest.raises(InvalidState):
        approve_and_issue(request=result.request, actor="t")
    pending = enroll(
        ca=issuing_ca, profile=profile("code-signing"), csr=make_csr("ec-p384", subject="CN=S"), actor="t"
    )
    assert pending.certificate is None
    cert = approve_and_issue(request=pending.request, actor="ops")
    assert CertificateRequest.objects.get(pk=pending.request.pk).state == RequestState.ISSUED
    assert cert.request_id == pending.request.pk


def test_enrollment_that_stops_at_approved_is_issued_by_approve_and_issue(issuing_ca, profile):
    stopped = enroll(
        ca=issuing_ca,
        profile=profile("tls-server"),
        csr=make_csr(sans=[x509.DNSName("a.example.test")]),
        actor="t",
        issue=False,
    )
    assert (stopped.request.state, stopped.certificate) == (RequestState.APPROVED, None)
    assert not Certificate.objects.filter(request=stopped.request).exists()
    cert = approve_and_issue(request=stopped.request, actor="ops")
    assert cert is not None
    assert cert.request_id == stopped.request.pk
    assert CertificateRequest.objects.get(pk=stopped.request.pk).state == RequestState.ISSUED
    with pytest.raises(InvalidState, match="is issued, not pending"):
        approve_and_issue(request=stopped.request, actor="ops")


def test_approve_only_records_the_approval_and_issues_nothing(issuing_ca, profile):
    pending = enroll(
        ca=issuing_ca, profile=profile("code-signing"), csr=make_csr("ec-p384", subject="CN=S"), actor="t"
    )
    assert approve_and_issue(request=pending.request, actor="ops", issue=False) is None
    assert CertificateRequest.objects.get(pk=pending.request.pk).state == RequestState.APPROVED
    assert not Certificate.objects.filter(request=pending.request).exists()
    assert approve_and_issue(request=pending.request, actor="ops") is not None


def test_profile_update_refuses_unknown_fields_and_inconsistent_values(profile):
    tls = profile("tls-server")
    with pytest.raises(PolicyViolation, match="cannot be edited"):
        update_profile(profile=tls, changes={"name": "x"}, actor="t")
    with pytest.raises(PolicyViolation):
        update_profile(profile=tls, changes={"key_types": ["dsa"]}, actor="t")
    unchanged = update_profile(profile=tls, changes={"validity_days": tls.validity_days}, actor="t")
    assert unchanged.validity_days == 397
    assert not AuditEvent.objects.filter(action="profile.updated").exists()


def test_server_key_delivery_is_once_and_needs_a_long_password_and_its_download_secret(issuing_ca, profile):
    secret, digest = new_download_secret()
    delivery = request_server_key(
        ca=issuing_ca,
        profile=profile("tls-client"),
        subject=parse_subject("CN=device"),
        sans=[parse_san("dns:device.example.test")],
        key_type="ed25519",
        actor="t",
        download_secret_sha256=digest,
    )
    assert delivery.secret_sha256 == digest != secret  # only the digest is stored
    with pytest.raises(PolicyViolation, match="at least"):
        deliver_pkcs12(delivery=delivery, password="short", download_secret=secret, actor="t")
    # Knowing the delivery id is not enough: the one-time secret is needed.
    for wrong in ("", "guess", digest):
        with pytest.raises(PolicyViolation, match="wrong download secret"):
            deliver_pkcs12(
                delivery=delivery, password="long enough password", download_secret=wrong, actor="t"
            )
    delivery.refresh_from_db()
    assert delivery.delivered_at is None
    assert Key.objects.get(pk=delivery.key_id).state == "active"
    assert deliver_pkcs12(
        delivery=delivery, password="long enough password", download_secret=secret, actor="t"
    )
    with pytest.raises(AlreadyDelivered):
        deliver_pkcs12(delivery=delivery, password="long enough password", download_secret=secret, actor="t")
    assert Key.objects.get(pk=delivery.key_id).state == "destroyed"
    assert audit.verify_chain().ok


def test_server_key_refuses_rsa_4096_before_generating_anything(issuing_ca, profile):
    with pytest.raises(PolicyViolation):
        request_server_key(
            ca=issuing_ca,
            profile=profile("tls-client"),
            subject=parse_subject("CN=d"),
            sans=[],
            key_type="rsa-4096",
            actor="t",
            download_secret_sha256=new_download_secret()[1],
        )
    assert KeyDelivery.objects.count() == 0
    assert Profile.objects.filter(escrow=True).count() == 0


def test_server_key_needs_the_digest_of_a_download_secret(issuing_ca, profile):
    with pytest.raises(PolicyViolation, match="download secret"):
        request_server_key(
            ca=issuing_ca,
            profile=profile("tls-client"),
            subject=parse_subject("CN=d"),
            sans=[parse_san("dns:device.example.test")],
            key_type="ec-p256",
            actor="t",
            download_secret_sha256="not a digest",
        )
    assert KeyDelivery.objects.count() == 0
