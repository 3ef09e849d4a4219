"""The compromised-key blocklist: a key revoked for keyCompromise is never certified again."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from django.db import transaction

from pki.blocklist import REFUSED_ACTION, block_key, check_before_signing, is_blocked, reload_copy
from pki.enrollment import approve_and_issue, sign_csr
from pki.exceptions import KeyBlocked, PolicyViolation
from pki.issuance import (
    approve_request,
    issue_certificate,
    renew_certificate,
    submit_and_issue,
    submit_request,
)
from pki.key_controls import mark_key_compromised
from pki.models import AuditEvent, BlockedKey, Certificate, CertificateRequest
from pki.recording import Guard
from pki.revocation import revoke_certificate, revoke_key
from pki.x509.csr import spki_fingerprint
from tests.conftest import NOW, load_key, make_csr

pytestmark = pytest.mark.django_db

B_KEY = spki_fingerprint(load_key("ec-p256-b").public_key())  # type: ignore[arg-type]


def _issue(ca, profile, key="ec-p256-b", name="www.example.test"):
    csr = make_csr(key, subject=f"CN={name}", sans=[x509.DNSName(name)])
    return sign_csr(ca=ca, profile=profile("tls-server"), csr=csr, actor="ops", now=NOW)


def _counts():
    return Certificate.objects.count(), CertificateRequest.objects.count()


def test_revoked_for_key_compromise_the_key_is_refused_on_every_use_case(issuing_ca, profile):
    first = _issue(issuing_ca, profile)
    other = _issue(issuing_ca, profile, name="mail.example.test")  # the same key, another certificate
    revoke_certificate(certificate=first, reason="keyCompromise", actor="ops", now=NOW)
    entry = BlockedKey.objects.get()
    assert (entry.spki_sha256, entry.reason, entry.source, entry.ca_id) == (
        B_KEY,
        "keyCompromise",
        "certificate.revoked",
        issuing_ca.pk,
    )
    before = _counts()
    with pytest.raises(KeyBlocked, match="never certified again"):
        _issue(issuing_ca, profile)
    with pytest.raises(KeyBlocked):
        submit_request(
            ca=issuing_ca, profile=profile("tls-server"), csr=make_csr("ec-p256-b"), actor="rita", now=NOW
        )
    with pytest.raises(KeyBlocked):
        renew_certificate(certificate=other, actor="lifecycle", now=NOW)  # auto-renewal's path
    assert _counts() == before
    refusals = AuditEvent.objects.filter(action=REFUSED_ACTION).order_by("pk")
    assert [e.details["path"] for e in refusals] == ["submit_request", "submit_request", "renew_certificate"]
    assert {e.details["spki_sha256"] for e in refusals} == {B_KEY}
    assert [e.actor for e in refusals] == ["ops", "rita", "lifecycle"]


def test_a_pending_request_whose_key_is_blocked_since_cannot_be_approved(issuing_ca, profile):
    request = submit_request(
        ca=issuing_ca,
        profile=profile("code-signing"),
        csr=make_csr("ec-p256-b", subject="CN=Builder,O=KMI"),
        actor="rita",
        now=NOW,
    )
    revoke_key(spki_sha256=B_KEY.upper(), actor="ops", now=NOW)  # no certificate carries it yet
    assert is_blocked(B_KEY)
    with pytest.raises(KeyBlocked):
        approve_request(request=request, actor="oscar", now=NOW)
    with pytest.raises(KeyBlocked):
        approve_and_issue(request=request, actor="oscar", now=NOW)
    request.refresh_from_db()
    assert request.state == "pending"
    refusals = AuditEvent.objects.filter(action=REFUSED_ACTION, details__path="approve_request")
    assert refusals.count() == 2  # each refused attempt is kept in the trail


def test_other_revocation_reasons_do_not_block_the_key(issuing_ca, profile):
    cert = _issue(issuing_ca, profile)
    revoke_certificate(certificate=cert, reason="superseded", actor="ops", now=NOW)
    assert not BlockedKey.objects.exists()
    assert _issue(issuing_ca, profile).pk != cert.pk
    # Raising the reason to keyCompromise afterwards (RFC 5280 §5.3.1) blocks it.
    revoke_certificate(certificate=cert, reason="keyCompromise", actor="ops", now=NOW)
    assert is_blocked(B_KEY)


def test_a_compromised_ca_key_is_blocked(issuing_ca):
    mark_key_compromised(key=issuing_ca.key, actor="admin", reason="stolen backup", now=NOW)
    entry = BlockedKey.objects.get(spki_sha256=issuing_ca.key.spki_sha256)
    assert (entry.reason, entry.source) == ("cACompromise", "key.compromised")
    assert (
        AuditEvent.objects.filter(action="key.blocked", details__spki_sha256=entry.spki_sha256).count() == 1
    )


def test_blocking_twice_keeps_the_first_entry(db):
    first = block_key(spki_sha256=B_KEY, reason="keyCompromise", source="revoke_key", actor="a", now=NOW)
    again = block_key(spki_sha256=B_KEY, reason="keyCompromise", source="certificate.revoked", actor="b")
    assert again.pk == first.pk
    assert again.source == "revoke_key"
    assert AuditEvent.objects.filter(action="key.blocked").count() == 1


@pytest.mark.parametrize("bad", ["", "zz", "ab" * 31, "g" * 64, "ab" * 33])
def test_a_malformed_fingerprint_is_refused_and_nothing_is_written(db, bad):
    with pytest.raises(PolicyViolation, match="SPKI SHA-256"):
        revoke_key(spki_sha256=bad, actor="ops", now=NOW)
    with pytest.raises(PolicyViolation):
        block_key(spki_sha256=bad, reason="keyCompromise", source="test", actor="ops", now=NOW)
    assert not BlockedKey.objects.exists()
    assert not AuditEvent.objects.exists()


def test_auto_renewal_leaves_a_certificate_whose_key_is_blocked_alone(
    issuing_ca, profile, lifecycle_conf, caplog
):
    from pki.lifecycle import auto_renew_certificates

    lifecycle_conf()
    cert = _issue(issuing_ca, profile)
    Certificate.objects.filter(pk=cert.pk).update(auto_renew=True)
    other = _issue(issuing_ca, profile, name="mail.example.test")
    revoke_certificate(certificate=other, reason="keyCompromise", actor="ops", now=NOW)
    assert auto_renew_certificates(now=cert.not_after - dt.timedelta(days=5)) == []
    assert not Certificate.objects.filter(renewed_from=cert).exists()
    assert "auto-renewal of" not in caplog.text  # not even tried (and refused) at every scan


def _block_elsewhere(fingerprint: str) -> BlockedKey:
    """A row another process wrote: this process's copy of the blocklist is not told."""
    return BlockedKey.objects.create(
        spki_sha256=fingerprint, reason="keyCompromise", source="revoke_key", actor="ops", created_at=NOW
    )


def _issue_at_once(ca, profile, key, name="www.example.test"):
    csr = make_csr(key, subject=f"CN={name}", sans=[x509.DNSName(name)])
    return issue_certificate(ca=ca, profile=profile("tls-server"), csr=csr, actor="ops", now=NOW)


def _copy_up_to_date(ca, profile):
    """Issue once and check another key: this process's copy has read the blocklist as it is
    (whatever earlier tests in this process left in it)."""
    reload_copy()
    _issue_at_once(ca, profile, "ec-p256", name="sync.example.test")
    check_before_signing(spki_sha256="0" * 64, actor="ops", path="sync", now=NOW)


def _refusal_paths():
    events = AuditEvent.objects.filter(action=REFUSED_ACTION).order_by("pk")
    return list(events.values_list("details__path", flat=True))


def test_the_recording_statement_refuses_a_key_blocked_where_this_process_did_not_see_it(issuing_ca, profile):
    _copy_up_to_date(issuing_ca, profile)
    _block_elsewhere(B_KEY)
    before = _counts()
    with pytest.raises(KeyBlocked, match="never certified again"):
        _issue_at_once(issuing_ca, profile, "ec-p256-b")
    assert _counts() == before  # signed in memory at most: nothing stored, nothing returned
    assert AuditEvent.objects.get(action=REFUSED_ACTION).details["spki_sha256"] == B_KEY
    # The copy was read again: the next attempt is refused before it signs.
    with pytest.raises(KeyBlocked):
        _issue_at_once(issuing_ca, profile, "ec-p256-b", name="mail.example.test")
    assert _refusal_paths() == ["record_issuance", "issue_certificate"]


def test_each_issuance_tells_the_copy_of_keys_blocked_elsewhere(issuing_ca, profile):
    _copy_up_to_date(issuing_ca, profile)
    _block_elsewhere(B_KEY)
    # Any issuance's statement reports the blocklist's highest row: the copy reads the new one.
    _issue_at_once(issuing_ca, profile, "ec-p256", name="mail.example.test")
    with pytest.raises(KeyBlocked):
        _issue_at_once(issuing_ca, profile, "ec-p256-b")
    assert _refusal_paths() == ["issue_certificate"]  # refused before signing


def test_a_key_blocked_in_this_process_is_refused_before_signing_once_committed(
    issuing_ca, profile, django_capture_on_commit_callbacks
):
    _copy_up_to_date(issuing_ca, profile)
    with django_capture_on_commit_callbacks(execute=True):
        revoke_key(spki_sha256=B_KEY, actor="ops", now=NOW)
    with pytest.raises(KeyBlocked):
        _issue_at_once(issuing_ca, profile, "ec-p256-b")
    assert _refusal_paths() == ["issue_certificate"]


def test_a_copy_that_knew_a_row_since_rolled_back_issues_for_that_key(issuing_ca, profile):
    _copy_up_to_date(issuing_ca, profile)
    with transaction.atomic():
        _block_elsewhere(B_KEY)
        _issue_at_once(issuing_ca, profile, "ec-p256", name="mail.example.test")  # the copy reads it
        check_before_signing(spki_sha256="0" * 64, actor="ops", path="sync", now=NOW)
        refused = False
        try:
            check_before_signing(spki_sha256=B_KEY, actor="ops", path="sync", now=NOW)
        except KeyBlocked:
            refused = True
        transaction.set_rollback(True)
    assert refused
    assert not BlockedKey.objects.exists()
    assert _issue_at_once(issuing_ca, profile, "ec-p256-b").key_fingerprint == B_KEY


def test_a_guard_that_would_run_for_a_blocked_key_is_refused(issuing_ca, profile):
    guard = Guard("guard AS (SELECT 1 AS id),\n", {})
    with pytest.raises(ValueError, match="UNBLOCKED"):
        submit_and_issue(
            ca=issuing_ca, profile=profile("tls-server"), csr=make_csr("ec-p256"), actor="ops", guard=guard
        )
