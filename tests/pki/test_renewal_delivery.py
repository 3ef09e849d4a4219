"""Auto-renewal switched on where certificates are requested, and its successor delivered to the
owner; notices go to the certificate's owner, not the CA's contacts."""

from __future__ import annotations

import datetime as dt
import io
import json

import pytest
from cryptography import x509
from django.contrib.auth.models import User
from django.core import mail
from django.core.management import call_command

from pki.enrollment import enroll
from pki.exceptions import PolicyViolation
from pki.issuance import CertificateOptions, latest_successor
from pki.lifecycle import auto_renew_certificates, deliver_notices, expiry_scan
from pki.models import Certificate, NotificationRecord, Profile
from pki.notifications import verify_webhook_signature
from pki.ocsp import ensure_ocsp_responder
from tests.conftest import NOW, make_csr

pytestmark = pytest.mark.django_db
DAY = dt.timedelta(days=1)
SECRET = "renewal-webhook-secret"


def _enroll(ca, profile_name: str = "tls-server", options: CertificateOptions | None = None, requester=None):
    result = enroll(
        ca=ca,
        profile=Profile.objects.get(name=profile_name),
        csr=make_csr(sans=[x509.DNSName("www.example.test")]),
        actor="t",
        requester=requester,
        options=options or CertificateOptions(),
        now=NOW,
    )
    assert result.certificate is not None
    return result.certificate


def test_the_profile_default_and_the_request_decide_auto_renewal(issuing_ca):
    Profile.objects.filter(name="tls-server").update(auto_renew=True, renew_before_days=20)
    by_default = _enroll(issuing_ca)
    assert (by_default.auto_renew, by_default.renew_before_days) == (True, 20)
    declined = _enroll(issuing_ca, options=CertificateOptions(auto_renew=False))
    assert (declined.auto_renew, declined.renew_before_days) == (False, None)
    own_window = _enroll(issuing_ca, options=CertificateOptions(renew_before_days=5))
    assert own_window.renew_before_days == 5


def test_renewal_happens_renew_before_days_before_expiry(issuing_ca, lifecycle_conf):
    lifecycle_conf(AUTO_RENEW_DAYS=30)
    cert = _enroll(issuing_ca, options=CertificateOptions(auto_renew=True, renew_before_days=10))
    assert auto_renew_certificates(now=cert.not_after - 11 * DAY) == []
    [new_id] = auto_renew_certificates(now=cert.not_after - 10 * DAY)
    assert latest_successor(cert).pk == new_id  # type: ignore[union-attr]


def test_a_window_longer_than_the_certificate_is_refused(issuing_ca):
    with pytest.raises(PolicyViolation, match="leaves nothing"):
        _enroll(issuing_ca, options=CertificateOptions(auto_renew=True, renew_before_days=3000))
    with pytest.raises(PolicyViolation, match="http"):
        _enroll(issuing_ca, options=CertificateOptions(owner_webhook_url="ftp://x.example.test/"))


def test_the_successor_is_delivered_by_a_signed_webhook_carrying_the_pem(
    issuing_ca, lifecycle_conf, webhook_receiver
):
    lifecycle_conf(WEBHOOK_SECRET=SECRET)
    options = CertificateOptions(
        auto_renew=True, owner_email="owner@example.test", owner_webhook_url=webhook_receiver.url
    )
    cert = _enroll(issuing_ca, options=options)
    [new_id] = auto_renew_certificates(now=cert.not_after - 20 * DAY)
    report = deliver_notices(now=cert.not_after - 20 * DAY)
    assert len(report.sent) == 2
    headers, body = webhook_receiver.calls[0]
    assert headers["x-kmi-event"] == "certificate.renewed"
    assert verify_webhook_signature(
        SECRET.encode(), headers["x-kmi-timestamp"], body, headers["x-kmi-signature"]
    )
    payload = json.loads(body)
    new = Certificate.objects.get(pk=new_id)
    chain = x509.load_pem_x509_certificates(payload["pem"].encode())
    assert chain[0] == new.x509()
    chain[0].verify_directly_issued_by(chain[1])
    assert payload["renewed_from"] == cert.serial
    assert payload["certificate"]["serial"] == new.serial
    [message] = mail.outbox
    assert message.to == ["owner@example.test"]
    assert f"/api/v1/certificates/{cert.pk}/successor/" in message.body
    assert "-----BEGIN CERTIFICATE-----" in message.body
    # One delivery per renewal: the next runs send nothing more.
    assert deliver_notices(now=cert.not_after - 19 * DAY).sent == []


def test_expiry_notices_go_to_the_owner_then_the_requester_then_the_ca(issuing_ca, lifecycle_conf):
    lifecycle_conf()
    type(issuing_ca).objects.filter(pk=issuing_ca.pk).update(owner_email="pki-team@example.test")
    issuing_ca.refresh_from_db()
    requester = User.objects.create_user("rita", email="rita@example.test")
    named = _enroll(
        issuing_ca, options=CertificateOptions(owner_email="ops@example.test"), requester=requester
    )
    by_requester = _enroll(issuing_ca, requester=requester)
    nobody = _enroll(issuing_ca)
    expiry_scan(now=named.not_after - 2 * DAY)
    recipients = {
        r.certificate_id: r.recipient for r in NotificationRecord.objects.filter(kind="certificate_expiry")
    }
    assert recipients == {
        named.pk: "ops@example.test",
        by_requester.pk: "rita@example.test",
        nobody.pk: "pki-team@example.test",
    }


def test_kmi_own_ocsp_responder_certificates_send_no_notices(issuing_ca, lifecycle_conf):
    lifecycle_conf()
    type(issuing_ca).objects.filter(pk=issuing_ca.pk).update(owner_email="pki-team@example.test")
    responder = ensure_ocsp_responder(ca=issuing_ca, actor="t", now=NOW).certificate
    for days in (3.5, 2, 0.5):
        expiry_scan(now=responder.not_after - days * DAY)
    assert not NotificationRecord.objects.filter(certificate=responder).exists()
    assert mail.outbox == []


def test_sign_csr_sets_the_owner_and_auto_renewal(issuing_ca, tmp_path):
    csr = tmp_path / "req.pem"
    csr.write_bytes(make_csr(sans=[x509.DNSName("www.example.test")]))
    call_command(
        "sign_csr", "--ca", "issuing", "--profile", "tls-server",
        "--csr", str(csr), "--out", str(tmp_path / "c.pem"),
        "--auto-renew", "--renew-before-days", "9", "--owner-email", "owner@example.test",
        stdout=io.StringIO(),
    )  # fmt: skip
    cert = Certificate.objects.get(ca=issuing_ca, is_ca=False)
    assert (cert.auto_renew, cert.renew_before_days, cert.owner_email) == (True, 9, "owner@example.test")
