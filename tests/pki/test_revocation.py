"""A revocation that committed always reaches the CRL: its stale mark is part of its transaction.

The mark used to be written by an on_commit receiver whose failure was logged and ignored, so a
crash (or a failing insert) right after the commit left the revocation off the CRL until the
CRL's half-life. Here the process is killed with SIGKILL at each point of a revocation, and the
mark is made to fail.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys

import pytest
from cryptography import x509
from django.db import DatabaseError

from pki.crl import is_due, publish_crl, publish_due_crls
from pki.generations import generation_of
from pki.models import Certificate, CertificateRevocationList, CRLStaleMark
from pki.revocation import release_hold, revoke_certificate
from pki.signals import certificate_status_changed
from tests.conftest import NOW
from tests.support.certs import issue
from tests.support.processes import ROOT, base_env


def _serials_in_latest_crl(ca) -> set[int]:
    latest = CertificateRevocationList.objects.filter(ca=ca, shard=0).order_by("-crl_number").first()
    return {entry.serial_number for entry in x509.load_der_x509_crl(bytes(latest.der))}


@pytest.mark.django_db
def test_the_stale_mark_is_written_in_the_revocation_transaction(issuing_ca, profile):
    cert = issue(issuing_ca, profile)
    publish_crl(ca=issuing_ca, actor="test", now=NOW)

    def broken_receiver(**_):
        raise RuntimeError("a receiver after commit failed")

    certificate_status_changed.connect(broken_receiver, dispatch_uid="test-broken")
    try:
        revoke_certificate(certificate=cert, reason="keyCompromise", actor="test", now=NOW)
    finally:
        certificate_status_changed.disconnect(dispatch_uid="test-broken")
    # No on_commit callback ran in this test transaction: the mark is there all the same.
    assert CRLStaleMark.objects.filter(ca=issuing_ca, shard=0).exists()
    assert is_due(generation_of(issuing_ca, None), 0, NOW + dt.timedelta(seconds=1))


@pytest.mark.django_db
def test_a_failing_mark_fails_the_revocation_and_nothing_is_committed(issuing_ca, profile, monkeypatch):
    cert = issue(issuing_ca, profile)

    def failing_bulk_create(*_, **__):
        raise DatabaseError("injected: the stale mark insert failed")

    monkeypatch.setattr(CRLStaleMark.objects, "bulk_create", failing_bulk_create)
    with pytest.raises(DatabaseError, match="injected"):
        revoke_certificate(certificate=cert, reason="keyCompromise", actor="test", now=NOW)
    cert.refresh_from_db()
    assert cert.revoked_at is None  # the caller heard "failed"; nothing was acknowledged


@pytest.mark.django_db
def test_a_released_hold_marks_the_crl_stale_too(issuing_ca, profile):
    cert = issue(issuing_ca, profile)
    revoke_certificate(certificate=cert, reason="certificateHold", actor="test", now=NOW)
    publish_crl(ca=issuing_ca, actor="test", now=NOW + dt.timedelta(seconds=1))
    assert not CRLStaleMark.objects.filter(ca=issuing_ca).exists()
    release_hold(certificate=cert, actor="test", now=NOW + dt.timedelta(seconds=2))
    assert CRLStaleMark.objects.filter(ca=issuing_ca, shard=0).exists()


@pytest.mark.django_db
def test_a_revocation_without_a_mark_is_still_found_by_publication(issuing_ca, profile):
    cert = issue(issuing_ca, profile)
    publish_crl(ca=issuing_ca, actor="test", now=NOW)
    # A row revoked outside the use case (no mark): the second guard still sees it.
    Certificate.objects.filter(pk=cert.pk).update(
        revoked_at=NOW + dt.timedelta(seconds=5), revocation_reason="keyCompromise"
    )
    assert is_due(generation_of(issuing_ca, None), 0, NOW + dt.timedelta(seconds=6))


# The revoking process: revoke certificate argv[1], killing itself with SIGKILL at point argv[2].
REVOKER = """
import datetime as dt, os, signal, sys
import django
django.setup()
from django.db import transaction
import pki.revocation as revocation
from pki.models import Certificate

cert = Certificate.objects.get(pk=int(sys.argv[1]))
point = sys.argv[2]
now = dt.datetime.fromisoformat(sys.argv[3])
die = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
if point == "before-commit":
    original = revocation.mark_stale
    def mark_then_die(**kwargs):
        original(**kwargs)
        die()  # inside the transaction, after every write of the revocation
    revocation.mark_stale = mark_then_die
    revocation.revoke_certificate(certificate=cert, reason="keyCompromise", actor="test", now=now)
elif point == "after-commit":
    with transaction.atomic():
        transaction.on_commit(die)  # runs first after the commit, before the status signal
        revocation.revoke_certificate(certificate=cert, reason="keyCompromise", actor="test", now=now)
"""


@pytest.mark.slow
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_kill_9_at_each_point_of_a_revocation_never_leaves_it_off_the_next_crl(issuing_ca, profile, tmp_path):
    env = base_env(redis_url=None, prefix="unused:", data_dir=tmp_path, kek=False)
    now = NOW + dt.timedelta(minutes=1)
    certs = {point: issue(issuing_ca, profile, subject=f"CN={point}.example.test") for point in ("a", "b")}
    publish_crl(ca=issuing_ca, actor="test", now=now)
    for point, cert in zip(("before-commit", "after-commit"), certs.values(), strict=True):
        result = subprocess.run(
            [sys.executable, "-c", REVOKER, str(cert.pk), point, (now + dt.timedelta(seconds=1)).isoformat()],
            cwd=ROOT,
            env=env,
            capture_output=True,
            check=False,
            timeout=120,
        )
        assert result.returncode == -9, result.stderr.decode()[-2000:]
    before, after = (Certificate.objects.get(pk=c.pk) for c in certs.values())
    assert before.revoked_at is None  # killed inside the transaction: nothing was acknowledged
    assert after.revoked_at is not None  # committed, then killed before any receiver ran
    later = now + dt.timedelta(seconds=2)
    published = publish_due_crls(actor="test", now=later)
    assert issuing_ca.pk in [crl.ca_id for crl in published if crl.shard == 0]
    assert int(after.serial, 16) in _serials_in_latest_crl(issuing_ca)
    assert int(before.serial, 16) not in _serials_in_latest_crl(issuing_ca)
