"""Scheduled lifecycle use cases: expiry notices, auto-renewal, key deactivation and destruction."""

from __future__ import annotations

import datetime as dt
import json
import threading

import pytest
from cryptography import x509
from django.core import mail
from django.db import connection

from pki.lifecycle import (
    auto_renew_certificates,
    deactivate_expired_keys,
    deliver_notices,
    destroy_keys_past_retention,
    due_threshold,
    ensure_service_certificate,
    expiry_scan,
    plan_expiry_notices,
)
from pki.models import (
    AuditEvent,
    Certificate,
    Key,
    KeyState,
    NotificationRecord,
    NotificationState,
    SealedKey,
    SigningJob,
)
from pki.models.authority import CAState
from pki.models.key import KeyPurpose
from pki.notifications import verify_webhook_signature
from pki.revocation import revoke_certificate
from tests.conftest import NOW, make_csr
from tests.support.certs import hold_key, issue

pytestmark = pytest.mark.django_db

DAY = dt.timedelta(days=1)
SECRET = "webhook-test-secret"


# --- thresholds ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("days_left", "expected"),
    [(40, None), (30, 30), (29.5, 30), (14, 14), (10, 14), (7, 7), (0.5, 1)],
)
def test_due_threshold_is_the_most_urgent_one_reached(days_left, expected):
    assert due_threshold(NOW + days_left * DAY, (30, 14, 7, 1), NOW) == expected


# --- expiry notices --------------------------------------------------------------------------
def test_owner_is_notified_once_per_threshold_by_email_and_signed_webhook(
    issuing_ca, profile, webhook_receiver, lifecycle_conf
):
    lifecycle_conf(WEBHOOK_SECRET=SECRET)
    cert = issue(
        issuing_ca, profile, owner_email="owner@example.test", owner_webhook_url=webhook_receiver.url
    )
    at_20_days = cert.not_after - 20 * DAY
    assert expiry_scan(now=at_20_days) == {"due": 2, "sent": 2, "failed": 0, "abandoned": 0}
    assert expiry_scan(now=at_20_days + DAY) == {"due": 2, "sent": 0, "failed": 0, "abandoned": 0}

    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["owner@example.test"]
    assert "expires in 20 day(s)" in message.subject
    assert cert.serial in message.body
    assert len(webhook_receiver.calls) == 1
    headers, body = webhook_receiver.calls[0]
    assert verify_webhook_signature(
        SECRET.encode(), headers["x-kmi-timestamp"], body, headers["x-kmi-signature"]
    )
    assert not verify_webhook_signature(
        b"another-secret", headers["x-kmi-timestamp"], body, headers["x-kmi-signature"]
    )
    payload = json.loads(body)
    assert payload["event"] == "certificate.expiring"
    assert payload["threshold_days"] == 30
    assert payload["certificate"]["serial"] == cert.serial
    assert headers["x-kmi-delivery"] == payload["delivery"]
    assert message.extra_headers["X-KMI-Delivery"] != payload["delivery"]  # one key per channel

    expiry_scan(now=cert.not_after - 10 * DAY)
    assert len(mail.outbox) == 2
    assert json.loads(webhook_receiver.calls[1][1])["threshold_days"] == 14


def test_certificate_first_seen_inside_seven_days_gets_only_the_seven_day_notice(
    issuing_ca, profile, lifecycle_conf
):
    lifecycle_conf()
    cert = issue(issuing_ca, profile, owner_email="owner@example.test")
    expiry_scan(now=cert.not_after - 5 * DAY)
    assert list(NotificationRecord.objects.values_list("threshold_days", flat=True)) == [7]
    assert len(mail.outbox) == 1


def test_certificate_without_an_owner_falls_back_to_its_ca_contacts(issuing_ca, profile, lifecycle_conf):
    lifecycle_conf()
    type(issuing_ca).objects.filter(pk=issuing_ca.pk).update(owner_email="pki-team@example.test")
    cert = issue(issuing_ca, profile)
    expiry_scan(now=cert.not_after - 2 * DAY)
    assert [m.to for m in mail.outbox] == [["pki-team@example.test"]]


def test_self_renewing_certificate_is_quiet_until_the_last_threshold(issuing_ca, profile, lifecycle_conf):
    lifecycle_conf()
    cert = issue(issuing_ca, profile, owner_email="owner@example.test")
    hold_key(cert)
    for days in (25, 12, 5):
        expiry_scan(now=cert.not_after - days * DAY)
    assert mail.outbox == []
    # One day left and still no successor: the auto-renewal failed, so the owner hears of it.
    expiry_scan(now=cert.not_after - DAY / 2)
    assert len(mail.outbox) == 1


def test_certificate_with_an_unrevoked_successor_is_quiet(issuing_ca, profile, lifecycle_conf):
    lifecycle_conf()
    old = issue(issuing_ca, profile, owner_email="owner@example.test")
    new = issue(issuing_ca, profile, subject="CN=new.example.test")
    Certificate.objects.filter(pk=new.pk).update(renewed_from=old, not_after=old.not_after + 90 * DAY)
    expiry_scan(now=old.not_after - 3 * DAY)
    assert mail.outbox == []
    assert not NotificationRecord.objects.exists()
    revoke_certificate(certificate=new, reason="superseded", actor="test", now=NOW)
    expiry_scan(now=old.not_after - 2 * DAY)  # a revoked successor does not count
    assert [m.to for m in mail.outbox] == [["owner@example.test"]]


def test_revoked_certificate_gets_no_expiry_notice(issuing_ca, profile, lifecycle_conf):
    lifecycle_conf()
    cert = issue(issuing_ca, profile, owner_email="owner@example.test")
    revoke_certificate(certificate=cert, reason="superseded", actor="test", now=NOW)
    expiry_scan(now=cert.not_after - 3 * DAY)
    assert mail.outbox == []


def test_failing_webhook_is_retried_with_backoff_then_abandoned(
    issuing_ca, profile, webhook_receiver, lifecycle_conf
):
    lifecycle_conf(NOTIFY_MAX_ATTEMPTS=2, NOTIFY_RETRY_SECONDS=60)
    webhook_receiver.status = 500
    cert = issue(issuing_ca, profile, owner_webhook_url=webhook_receiver.url)
    t0 = cert.not_after - 20 * DAY
    assert expiry_scan(now=t0)["failed"] == 1
    record = NotificationRecord.objects.get()
    assert record.state == NotificationState.FAILED
    assert "HTTP 500" in record.last_error
    assert record.next_attempt_at == t0 + dt.timedelta(seconds=60)
    assert expiry_scan(now=t0 + dt.timedelta(seconds=30))["failed"] == 0  # backing off
    assert expiry_scan(now=t0 + dt.timedelta(seconds=61))["abandoned"] == 1
    assert len(webhook_receiver.calls) == 2
    record.refresh_from_db()
    assert record.state == NotificationState.ABANDONED
    assert expiry_scan(now=t0 + 2 * DAY)["sent"] == 0


def test_failed_webhook_succeeds_on_retry_with_the_same_delivery_id(
    issuing_ca, profile, webhook_receiver, lifecycle_conf
):
    lifecycle_conf(NOTIFY_RETRY_SECONDS=60)
    webhook_receiver.status = 503
    cert = issue(issuing_ca, profile, owner_webhook_url=webhook_receiver.url)
    t0 = cert.not_after - 20 * DAY
    expiry_scan(now=t0)
    webhook_receiver.status = 200
    assert expiry_scan(now=t0 + dt.timedelta(minutes=2))["sent"] == 1
    ids = [headers["x-kmi-delivery"] for headers, _ in webhook_receiver.calls]
    assert len(ids) == 2
    assert ids[0] == ids[1]


def test_webhook_that_is_not_http_is_refused(issuing_ca, profile, lifecycle_conf):
    lifecycle_conf()
    cert = issue(issuing_ca, profile, owner_webhook_url="ftp://files.example.test/hook")
    assert expiry_scan(now=cert.not_after - 2 * DAY)["failed"] == 1
    assert "not an http(s) URL" in NotificationRecord.objects.get().last_error


def test_unreachable_webhook_is_recorded_as_failed(issuing_ca, profile, lifecycle_conf):
    lifecycle_conf(WEBHOOK_TIMEOUT=2)
    cert = issue(issuing_ca, profile, owner_webhook_url="http://127.0.0.1:9/unreachable")
    assert expiry_scan(now=cert.not_after - 2 * DAY)["failed"] == 1
    assert "unreachable" in NotificationRecord.objects.get().last_error


def test_stale_claim_of_a_dead_worker_is_taken_over_after_the_lease(issuing_ca, profile, lifecycle_conf):
    lifecycle_conf(NOTIFY_CLAIM_LEASE_SECONDS=600)
    cert = issue(issuing_ca, profile, owner_email="owner@example.test")
    t0 = cert.not_after - 2 * DAY
    plan_expiry_notices(now=t0)
    NotificationRecord.objects.update(state=NotificationState.CLAIMED, claimed_at=t0, attempts=1)
    assert deliver_notices(now=t0 + dt.timedelta(seconds=300)).sent == []
    assert len(deliver_notices(now=t0 + dt.timedelta(seconds=601)).sent) == 1
    assert len(mail.outbox) == 1


def test_ca_nearing_expiry_alerts_its_owner_and_the_alert_addresses(
    issuing_ca, webhook_receiver, lifecycle_conf
):
    lifecycle_conf(ALERT_EMAILS="security@example.test", ALERT_WEBHOOK_URL=webhook_receiver.url)
    type(issuing_ca).objects.filter(pk=issuing_ca.pk).update(owner_email="ca-owner@example.test")
    ca_cert = issuing_ca.own_certificate()
    expiry_scan(now=ca_cert.not_after - 60 * DAY)
    assert sorted(mail.outbox[0].to) == ["ca-owner@example.test", "security@example.test"]
    assert "CA certificate of issuing" in mail.outbox[0].subject
    assert json.loads(webhook_receiver.calls[0][1])["event"] == "ca.expiring"
    assert NotificationRecord.objects.filter(threshold_days=90).count() == 2


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_two_workers_delivering_at_once_send_each_notice_once(
    issuing_ca, profile, webhook_receiver, lifecycle_conf
):
    lifecycle_conf()
    certs = [
        issue(issuing_ca, profile, subject=f"CN=host{i}.example.test", owner_webhook_url=webhook_receiver.url)
        for i in range(6)
    ]
    t0 = max(c.not_after for c in certs) - 2 * DAY
    barrier = threading.Barrier(2)
    sent: list[int] = []

    def worker() -> None:
        try:
            barrier.wait()
            plan_expiry_notices(now=t0)
            sent.extend(deliver_notices(now=t0).sent)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert NotificationRecord.objects.count() == 6  # planned once between them
    assert sorted(sent) == sorted(NotificationRecord.objects.values_list("pk", flat=True))
    deliveries = [headers["x-kmi-delivery"] for headers, _ in webhook_receiver.calls]
    assert len(deliveries) == 6
    assert len(set(deliveries)) == 6


# --- auto-renewal ----------------------------------------------------------------------------
def test_certificate_whose_key_kmi_holds_is_renewed_once_on_the_same_key(issuing_ca, profile, lifecycle_conf):
    lifecycle_conf(AUTO_RENEW_DAYS=30)
    cert = issue(issuing_ca, profile, owner_email="owner@example.test")
    key = hold_key(cert)
    assert auto_renew_certificates(now=cert.not_after - 40 * DAY) == []
    at = cert.not_after - 20 * DAY
    [new_id] = auto_renew_certificates(now=at)
    assert auto_renew_certificates(now=at + DAY) == []
    new = Certificate.objects.get(pk=new_id)
    assert new.renewed_from_id == cert.pk
    assert new.key_id == key.pk
    assert new.key_fingerprint == cert.key_fingerprint
    assert new.auto_renew
    assert new.owner_email == "owner@example.test"
    assert new.serial != cert.serial
    assert AuditEvent.objects.filter(action="certificate.renewed", actor="system:lifecycle").count() == 1


def test_auto_renewal_onto_a_new_key_when_configured(issuing_ca, profile, lifecycle_conf):
    lifecycle_conf(AUTO_RENEW_NEW_KEY=True)
    cert = issue(issuing_ca, profile)
    old_key = hold_key(cert)
    [new_id] = auto_renew_certificates(now=cert.not_after - 5 * DAY)
    new = Certificate.objects.get(pk=new_id)
    assert new.key_id != old_key.pk
    assert new.key is not None
    assert new.key.purpose == KeyPurpose.END_ENTITY
    assert new.key_fingerprint == new.key.spki_sha256
    assert new.x509().public_key() == new.key.public_key()


def test_certificates_kmi_cannot_renew_are_left_alone(issuing_ca, profile, lifecycle_conf):
    lifecycle_conf()
    revoked = issue(issuing_ca, profile, subject="CN=gone.example.test")
    hold_key(revoked)
    revoke_certificate(certificate=revoked, reason="superseded", actor="test", now=NOW)
    suspended = issue(issuing_ca, profile, subject="CN=held.example.test", key_name="ec-p256-b")
    key = hold_key(suspended, "ec-p256-b")
    Key.objects.filter(pk=key.pk).update(state=KeyState.COMPROMISED)
    not_asked = issue(issuing_ca, profile, subject="CN=manual.example.test")
    assert auto_renew_certificates(now=not_asked.not_after - 5 * DAY) == []


def test_certificate_whose_key_the_client_holds_is_renewed_on_its_public_key(
    issuing_ca, profile, lifecycle_conf
):
    lifecycle_conf()
    cert = issue(issuing_ca, profile, auto_renew=True)  # the client holds the key
    [new_id] = auto_renew_certificates(now=cert.not_after - 5 * DAY)
    new = Certificate.objects.get(pk=new_id)
    assert new.renewed_from_id == cert.pk
    assert new.key_id is None
    assert new.key_fingerprint == cert.key_fingerprint
    assert new.auto_renew
    assert auto_renew_certificates(now=cert.not_after - 4 * DAY) == []


def test_auto_renewal_refused_by_policy_is_logged_and_the_rest_continue(
    issuing_ca, profile, lifecycle_conf, caplog
):
    lifecycle_conf()
    first = issue(issuing_ca, profile, subject="CN=a.example.test")
    hold_key(first)
    second = issue(issuing_ca, profile, subject="CN=b.example.test", key_name="ec-p256-b")
    hold_key(second, "ec-p256-b")
    type(issuing_ca).objects.filter(pk=issuing_ca.pk).update(
        name_constraints={"permitted": ["dns:b.example.test"]}
    )
    renewed = auto_renew_certificates(now=first.not_after - 5 * DAY)
    assert [Certificate.objects.get(pk=pk).renewed_from_id for pk in renewed] == [second.pk]
    assert "auto-renewal of" in caplog.text


def test_auto_renewal_under_a_profile_that_needs_approval_is_submitted_once(
    issuing_ca, profile, lifecycle_conf
):
    from pki.models import CertificateRequest, RequestState

    lifecycle_conf()
    cert = issue(issuing_ca, profile, auto_renew=True)
    type(cert.profile).objects.filter(pk=cert.profile_id).update(requires_approval=True)
    cert.refresh_from_db()
    at = cert.not_after - 5 * DAY
    assert auto_renew_certificates(now=at) == []
    assert auto_renew_certificates(now=at + DAY) == []  # asked once, not at every scan
    pending = CertificateRequest.objects.get(renews=cert)
    assert (pending.state, pending.requested_by) == (RequestState.PENDING, "system:lifecycle")
    assert not Certificate.objects.filter(renewed_from=cert).exists()


# --- key deactivation and destruction --------------------------------------------------------
def test_key_whose_certificates_all_expired_is_deactivated_and_audited(issuing_ca, profile, lifecycle_conf):
    lifecycle_conf()
    cert = issue(issuing_ca, profile)
    key = hold_key(cert)
    assert deactivate_expired_keys(now=cert.not_after - DAY) == []
    assert deactivate_expired_keys(now=cert.not_after + DAY) == [str(key.pk)]
    assert deactivate_expired_keys(now=cert.not_after + 2 * DAY) == []
    key.refresh_from_db()
    assert key.state == KeyState.DEACTIVATED
    assert key.deactivated_at == cert.not_after + DAY
    event = AuditEvent.objects.get(action="key.deactivated")
    assert event.object_id == str(key.pk)
    assert event.details["previous_state"] == "active"


def test_expired_ca_key_is_deactivated_and_its_ca_disabled(issuing_ca, lifecycle_conf):
    lifecycle_conf()
    ca_cert = issuing_ca.own_certificate()
    deactivated = deactivate_expired_keys(now=ca_cert.not_after + DAY)
    assert str(issuing_ca.key_id) in deactivated
    issuing_ca.refresh_from_db()
    assert issuing_ca.state == CAState.DISABLED
    assert AuditEvent.objects.filter(action="ca.disabled", object_id=str(issuing_ca.pk)).exists()


def test_key_past_retention_is_crypto_shredded_and_its_record_kept(issuing_ca, profile, lifecycle_conf):
    lifecycle_conf(KEY_RETENTION_DAYS=30)
    cert = issue(issuing_ca, profile)
    key = hold_key(cert)
    expired_at = cert.not_after + DAY
    deactivate_expired_keys(now=expired_at)
    assert destroy_keys_past_retention(now=expired_at + 29 * DAY) == []
    assert SealedKey.objects.filter(key=key).exists()
    assert destroy_keys_past_retention(now=expired_at + 31 * DAY) == [str(key.pk)]
    assert destroy_keys_past_retention(now=expired_at + 32 * DAY) == []
    key.refresh_from_db()
    assert key.state == KeyState.DESTROYED
    assert key.destroyed_by == "system:lifecycle"
    assert not SealedKey.objects.filter(key=key).exists()
    assert AuditEvent.objects.get(action="key.destroyed").details["reason"] == "retention of 30 days ended"


def test_zero_retention_never_destroys_automatically(issuing_ca, profile, lifecycle_conf):
    lifecycle_conf(KEY_RETENTION_DAYS=0)
    cert = issue(issuing_ca, profile)
    hold_key(cert)
    deactivate_expired_keys(now=cert.not_after + DAY)
    assert destroy_keys_past_retention(now=cert.not_after + 3650 * DAY) == []


def test_escrowed_key_is_not_destroyed_automatically(issuing_ca, profile, lifecycle_conf):
    lifecycle_conf(KEY_RETENTION_DAYS=1)
    cert = issue(issuing_ca, profile)
    key = hold_key(cert)
    Key.objects.filter(pk=key.pk).update(escrow=True)
    deactivate_expired_keys(now=cert.not_after + DAY)
    assert destroy_keys_past_retention(now=cert.not_after + 30 * DAY) == []


# --- KMI's own TLS certificate ---------------------------------------------------------------
def test_service_certificate_is_issued_once_and_renewed_on_the_same_key(issuing_ca, profile, tmp_path):
    names = ("kmi.example.test",)
    cert, changed = ensure_service_certificate(
        names=names,
        out_dir=tmp_path,
        ca=issuing_ca,
        profile=profile("tls-server"),
        renew_days=30,
        actor="test",
        now=NOW,
    )
    assert changed
    assert (tmp_path / "kmi.example.test.key").stat().st_mode & 0o777 == 0o600
    chain = x509.load_pem_x509_certificates((tmp_path / "kmi.example.test.crt").read_bytes())
    assert [c.subject for c in chain] == [cert.x509().subject, issuing_ca.x509_certificate().subject]
    again, changed = ensure_service_certificate(
        names=names,
        out_dir=tmp_path,
        ca=issuing_ca,
        profile=profile("tls-server"),
        renew_days=30,
        actor="test",
        now=NOW + DAY,
    )
    assert (again.pk, changed) == (cert.pk, False)
    renewed, changed = ensure_service_certificate(
        names=names,
        out_dir=tmp_path,
        ca=issuing_ca,
        profile=profile("tls-server"),
        renew_days=30,
        actor="test",
        now=cert.not_after - 10 * DAY,
    )
    assert changed
    assert renewed.pk != cert.pk
    assert renewed.key_fingerprint == cert.key_fingerprint


def test_service_certificate_is_signed_where_its_job_runs_with_worker_signing(
    issuing_ca, profile, tmp_path, lifecycle_conf
):
    # The job runs on the signing queue, which holds the keys: it does not queue itself a job.
    lifecycle_conf(SIGNING="worker", SIGNING_TIMEOUT=1)
    cert, changed = ensure_service_certificate(
        names=("kmi.example.test",),
        out_dir=tmp_path,
        ca=issuing_ca,
        profile=profile("tls-server"),
        renew_days=30,
        actor="test",
        now=NOW,
    )
    assert changed
    assert cert.request.state == "issued"
    assert not SigningJob.objects.exists()


def test_service_certificate_job_follows_the_settings(issuing_ca, tmp_path, lifecycle_conf):
    from pki.exceptions import NotFound
    from pki.lifecycle import renew_service_certificates

    lifecycle_conf(SERVICE_CERT_NAMES="", SERVICE_CERT_DIR="")
    assert renew_service_certificates(now=NOW) == []
    lifecycle_conf(SERVICE_CERT_NAMES="kmi.example.test,www.kmi.example.test", SERVICE_CERT_DIR=str(tmp_path))
    [serial] = renew_service_certificates(now=NOW)
    assert renew_service_certificates(now=NOW + DAY) == []
    cert = Certificate.objects.get(serial=serial)
    assert cert.san_text.splitlines() == ["dns:kmi.example.test", "dns:www.kmi.example.test"]
    lifecycle_conf(SERVICE_CA="no-such-ca")
    with pytest.raises(NotFound, match="KMI_SERVICE_CA"):
        renew_service_certificates(now=NOW)


def test_a_notice_that_cannot_be_built_is_recorded_and_the_others_still_go(
    issuing_ca, profile, lifecycle_conf
):
    lifecycle_conf()
    bad = issue(issuing_ca, profile, subject="CN=a.example.test", owner_email="owner@example.test")
    good = issue(issuing_ca, profile, subject="CN=b.example.test", owner_email="owner@example.test")
    plan_expiry_notices(now=bad.not_after - 2 * DAY)
    # A stored webhook "URL" urllib cannot even parse: an unexpected error, not a delivery failure.
    NotificationRecord.objects.filter(certificate=bad).update(channel="webhook", recipient="not a url")
    report = deliver_notices(now=bad.not_after - 2 * DAY)
    assert len(report.sent) == 1
    assert len(report.failed) == 1
    assert NotificationRecord.objects.get(certificate=good).state == NotificationState.SENT
    assert NotificationRecord.objects.get(certificate=bad).last_error


# --- approved requests nobody issued ------------------------------------------------------------


def _approved(issuing_ca, profile, key_name: str, subject: str, at: dt.datetime):
    from pki.issuance import submit_request

    return submit_request(
        ca=issuing_ca,
        profile=profile("tls-server"),
        csr=make_csr(key_name, subject=f"CN={subject}", sans=[x509.DNSName(subject)]),
        actor="api:client-who-gave-up",
        now=at,
    )


def test_stranded_approved_requests_are_issued_or_given_up(issuing_ca, profile):
    from pki.lifecycle import reconcile_approved_requests
    from pki.models import AuditEvent, CertificateRequest, RequestState

    fresh = _approved(
        issuing_ca, profile, "ec-p256", "fresh.example.test", NOW + dt.timedelta(days=1, hours=1, minutes=58)
    )
    stranded = _approved(
        issuing_ca, profile, "ec-p256-b", "stranded.example.test", NOW + dt.timedelta(hours=3)
    )
    ancient = _approved(issuing_ca, profile, "ec-p384", "ancient.example.test", NOW)
    outcome = reconcile_approved_requests(now=NOW + dt.timedelta(days=1, hours=2))
    assert outcome == {"issued": [stranded.pk], "failed": [ancient.pk], "retry": []}
    states = dict(CertificateRequest.objects.values_list("pk", "state"))
    assert states == {
        fresh.pk: RequestState.APPROVED,
        stranded.pk: RequestState.ISSUED,
        ancient.pk: RequestState.FAILED,
    }
    assert "never issued" in CertificateRequest.objects.get(pk=ancient.pk).reason
    assert AuditEvent.objects.filter(action="request.failed", object_id=str(ancient.pk)).exists()
    assert AuditEvent.objects.filter(action="certificate.issued", actor="system:lifecycle").count() == 1
    # Run again: nothing left to do (idempotent).
    assert reconcile_approved_requests(now=NOW + dt.timedelta(days=1, hours=2)) == {
        "issued": [],
        "failed": [],
        "retry": [],
    }


def test_a_stranded_request_the_policy_now_refuses_fails_and_one_whose_ca_is_down_waits(issuing_ca, profile):
    from pki.lifecycle import reconcile_approved_requests
    from pki.models import CertificateAuthority, CertificateRequest, Profile
    from pki.tasks import BEAT_SCHEDULE

    waiting = _approved(issuing_ca, profile, "ec-p256", "www.example.test", NOW)
    refused = _approved(issuing_ca, profile, "ec-p256-b", "other.example.test", NOW)
    later = NOW + dt.timedelta(hours=1)
    # The CA is disabled: the same authority re-check as any issuance keeps both waiting.
    CertificateAuthority.objects.filter(pk=issuing_ca.pk).update(state=CAState.DISABLED)
    assert reconcile_approved_requests(now=later)["retry"] == [waiting.pk, refused.pk]
    CertificateAuthority.objects.filter(pk=issuing_ca.pk).update(state=CAState.ACTIVE)
    # The profile now refuses the second one's key type: it fails, with the reason.
    tls = Profile.objects.get(name="tls-server")
    CertificateRequest.objects.filter(pk=refused.pk).update(profile=Profile.objects.get(name="code-signing"))
    outcome = reconcile_approved_requests(now=later)
    assert outcome == {"issued": [waiting.pk], "failed": [refused.pk], "retry": []}
    assert "refused when issued later" in CertificateRequest.objects.get(pk=refused.pk).reason
    assert tls.pk
    assert BEAT_SCHEDULE["reconcile-approved-requests"]["task"] == "pki.signing.reconcile_requests"
