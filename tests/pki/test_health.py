"""Dashboard figures kept by workers: per-CA counts, worker heartbeats, audit verifications."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from cryptography import x509
from django.contrib.auth.models import User

from pki import health
from pki.access import grant_role
from pki.crl import publish_crl
from pki.enrollment import sign_csr
from pki.models import AuditVerification, CertificateSummary, Role
from pki.revocation import revoke_certificate
from pki.tasks import (
    BEAT_SCHEDULE,
    heartbeat,
    refresh_certificate_summaries,
    signing_heartbeat,
    verify_audit_chain,
)
from tests.conftest import NOW, make_csr

pytestmark = pytest.mark.django_db


@pytest.fixture
def issued(issuing_ca, profile):
    """Three certificates of 30, 60 and 150 days issued at NOW; the 60-day one revoked."""
    certs = []
    for key, days in (("ec-p256", 30), ("ec-p384", 60), ("rsa-2048", 150)):
        csr = make_csr(key, sans=[x509.DNSName(f"h{days}.example.test")])
        certs.append(
            sign_csr(
                ca=issuing_ca, profile=profile("tls-server"), csr=csr, validity_days=days, actor="t", now=NOW
            )
        )
    revoke_certificate(certificate=certs[1], reason="superseded", actor="t", now=NOW)
    return certs


def test_counts_expiries_by_window_and_week_and_issuance_by_day(issued, issuing_ca):
    figures = health.count_by_ca(issuing_ca.issued.all(), now=NOW + dt.timedelta(days=1))[issuing_ca.pk]
    assert (figures.valid, figures.revoked) == (2, 1)
    assert figures.expiring == {"7": 0, "30": 1, "90": 1}
    # notAfter 30 and 150 days after NOW (less the backdate), counted from the day after NOW.
    weeks = figures.expiry_weeks
    assert sum(weeks) == 2
    assert weeks[(30 - 1 - 1) // 7] == 1
    assert weeks[(150 - 1 - 1) // 7] == 1
    assert figures.issued_days[-2] == 3
    assert sum(figures.issued_days) == 3


def test_refresh_stores_one_summary_per_ca_and_figures_add_them(issued, issuing_ca, root_ca):
    with time_machine.travel(NOW + dt.timedelta(hours=1), tick=False):
        assert refresh_certificate_summaries() == 2
        admin = User.objects.create_user("alice")
        grant_role(user=admin, role=Role.ADMINISTRATOR, actor="t")
        seen = health.figures_for(admin)
    summary = CertificateSummary.objects.get(ca=issuing_ca)
    assert summary.counts["valid"] == 2
    # The root's summary counts its own certificate and the intermediate's.
    assert CertificateSummary.objects.get(ca=root_ca).counts["valid"] == 2
    assert seen.figures.valid == 4
    assert seen.missing_cas == ()


def test_a_requester_sees_a_live_count_of_her_own(issuing_ca, profile):
    rita = User.objects.create_user("rita")
    grant_role(user=rita, role=Role.REQUESTER, ca=issuing_ca, profile=profile("tls-server"), actor="t")
    from pki.enrollment import enroll

    enroll(
        ca=issuing_ca,
        profile=profile("tls-server"),
        csr=make_csr(sans=[x509.DNSName("r.example.test")]),
        requester=rita,
        actor="rita",
    )
    seen = health.figures_for(rita)
    assert seen.figures.valid == 1
    assert seen.as_of is None
    operator = User.objects.create_user("oscar")
    grant_role(user=operator, role=Role.CA_OPERATOR, ca=issuing_ca, actor="t")
    assert health.figures_for(operator).missing_cas == (issuing_ca.pk,)


def test_stored_figures_tolerate_a_misshapen_row():
    figures = health.Figures.from_json({"valid": 3, "expiry_weeks": [1, 2]})
    assert figures.valid == 3
    assert figures.expiry_weeks == [0] * health.EXPIRY_WEEKS


def test_heartbeats_say_which_queues_have_workers():
    with time_machine.travel(NOW, tick=False):
        heartbeat()
        signing_heartbeat()
    alive = {q.queue: q.alive for q in health.queue_health(now=NOW + dt.timedelta(seconds=60))}
    assert alive == {"celery": True, "signing": True}
    later = {q.queue: q.alive for q in health.queue_health(now=NOW + dt.timedelta(minutes=10))}
    assert later == {"celery": False, "signing": False}
    tasks = {entry["task"] for entry in BEAT_SCHEDULE.values()}
    assert {"pki.heartbeat", "pki.signing.heartbeat", "pki.refresh_certificate_summaries"} <= tasks


def test_revocation_health_reads_the_newest_crl_and_ocsp_freshness(issued, issuing_ca):
    publish_crl(ca=issuing_ca, actor="t", now=NOW)
    rows = {r.ca.name: r for r in health.revocation_health(now=NOW + dt.timedelta(minutes=5))}
    assert rows["issuing"].crl_number == 1
    assert rows["issuing"].crl_entries == 1
    assert not rows["issuing"].crl_stale
    assert rows["root"].crl_stale  # never published
    assert rows["issuing"].ocsp_stale  # no delegated responder yet
    late = {r.ca.name: r for r in health.revocation_health(now=NOW + dt.timedelta(days=2))}
    assert late["issuing"].crl_stale


def test_verification_is_kept_with_its_result(issued):
    result = verify_audit_chain()
    assert result["ok"] is True
    kept = AuditVerification.objects.get()
    assert kept.ok
    assert kept.actor == "system:celery"
    assert kept.events > 0
