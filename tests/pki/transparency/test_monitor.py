"""The threat monitor replayed over a synthetic month: quiet when issuance is normal, then
exactly one alert for a spike, one for an unusual domain and one for a burst of failed
challenges; each episode delivered once; acknowledged, resolved, and reopened as a new episode."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from cryptography import x509
from django.core import mail
from django.db import transaction

from pki import audit
from pki.enrollment import sign_csr
from pki.exceptions import InvalidState, NotFound, PolicyViolation
from pki.models import Alert, AlertKind, AlertState, AuditEvent, AuditVerification, MonitorRun
from pki.notifications import verify_webhook_signature
from pki.transparency.monitor import (
    MonitorPolicy,
    acknowledge_alert,
    count_token_error,
    registrable_domain,
    resolve_alert,
    run_monitor,
)
from tests.conftest import NOW, make_csr

pytestmark = pytest.mark.django_db

START = NOW - dt.timedelta(days=30)
POLICY = MonitorPolicy(spike_factor=5, spike_floor=20, burst=10)
USUAL = ("www.example.test", "api.example.test", "mail.corp.test")


def _issue(ca, profile, name: str, when: dt.datetime, actor: str = "acme:demo:normal"):
    csr = make_csr(subject=f"CN={name}", sans=[x509.DNSName(name)])
    return sign_csr(ca=ca, profile=profile("tls-server"), csr=csr, actor=actor, now=when)


@pytest.fixture
def month(issuing_ca, profile, lifecycle_conf, webhook_receiver):
    """Thirty days of normal issuance: one certificate every four hours for the usual names."""
    lifecycle_conf(
        ALERT_WEBHOOK_URL=webhook_receiver.url,
        ALERT_EMAILS=["pki-team@example.test"],
        WEBHOOK_SECRET="s3cret",
    )
    for i in range(30 * 6):
        _issue(issuing_ca, profile, USUAL[i % 3], START + dt.timedelta(hours=4 * i, minutes=7))
    return webhook_receiver


def test_registrable_domains_follow_the_public_suffix_list():
    assert registrable_domain("a.b.example.co.uk") == "example.co.uk"
    assert registrable_domain("*.www.example.test") == "example.test"
    assert registrable_domain("localhost") == "localhost"


def test_a_month_of_normal_issuance_then_one_alert_per_incident(issuing_ca, profile, month):
    hook = month
    # Replaying the month hour by hour (the last day here) raises nothing.
    for hour in range(24):
        report = run_monitor(now=NOW - dt.timedelta(hours=23 - hour), policy=POLICY)
        assert not report.raised, [a.summary for a in report.raised]
    assert not Alert.objects.exists()

    # A spike: 25 certificates within the hour from one account (baseline: 0.25 an hour).
    for i in range(25):
        _issue(issuing_ca, profile, USUAL[0], NOW + dt.timedelta(minutes=10 + i), actor="acme:demo:spiky")
    first = run_monitor(now=NOW + dt.timedelta(hours=1), policy=POLICY)
    assert [(a.kind, a.subject) for a in first.raised] == [(AlertKind.ISSUANCE_SPIKE, "ca:issuing")]
    dims = first.raised[0].details["dimensions"]
    assert {"actor": "acme:demo:spiky", "last_hour": 25, "baseline": 0.0} in dims

    # An unusual domain: never issued under tls-server in the whole month.
    _issue(issuing_ca, profile, "login.evil-corp.test", NOW + dt.timedelta(minutes=65))
    second = run_monitor(now=NOW + dt.timedelta(minutes=70), policy=POLICY)
    assert [(a.kind, a.subject) for a in second.raised] == [(AlertKind.NEW_DOMAIN, "domain:evil-corp.test")]
    assert [a.kind for a in second.refreshed] == [AlertKind.ISSUANCE_SPIKE]  # same episode

    # A burst of failed challenges from one ACME account.
    with transaction.atomic():
        for i in range(12):
            audit.record(
                action="acme.challenge.invalid",
                actor="acme:demo:prober",
                object_type="acmechallenge",
                object_id=str(i),
                details={"identifier": f"dns:victim{i}.example.test"},
                scope="acme:1",
                now=NOW + dt.timedelta(minutes=71, seconds=i),
            )
    third = run_monitor(now=NOW + dt.timedelta(minutes=75), policy=POLICY)
    assert [(a.kind, a.subject) for a in third.raised] == [(AlertKind.CHALLENGE_FAILURES, "acme:demo:prober")]
    run_monitor(now=NOW + dt.timedelta(minutes=76), policy=POLICY)

    assert Alert.objects.filter(kind=AlertKind.ISSUANCE_SPIKE).count() == 1
    assert Alert.objects.filter(kind=AlertKind.NEW_DOMAIN).count() == 1
    assert Alert.objects.filter(kind=AlertKind.CHALLENGE_FAILURES).count() == 1
    assert Alert.objects.get(kind=AlertKind.CHALLENGE_FAILURES).count == 2

    # Each episode was delivered once, by signed webhook and by e-mail.
    events = [json.loads(body)["alert"]["kind"] for _, body in hook.calls]
    assert sorted(events) == ["challenge_failures", "issuance_spike", "new_domain"]
    headers, body = hook.calls[0]
    assert verify_webhook_signature(b"s3cret", headers["x-kmi-timestamp"], body, headers["x-kmi-signature"])
    assert len(mail.outbox) == 3
    assert mail.outbox[0].to == ["pki-team@example.test"]

    # Acknowledge, then resolve; a spike still there afterwards is a new episode, sent again.
    spike = Alert.objects.get(kind=AlertKind.ISSUANCE_SPIKE)
    acknowledge_alert(alert_id=spike.pk, actor="alice", now=NOW + dt.timedelta(minutes=80))
    with pytest.raises(InvalidState, match="not open"):
        acknowledge_alert(alert_id=spike.pk, actor="alice")
    events_before = AuditEvent.objects.count()
    with pytest.raises(PolicyViolation, match="needs a note"):
        resolve_alert(alert_id=spike.pk, actor="alice", note="  ")
    with pytest.raises(NotFound):
        resolve_alert(alert_id=999_999, actor="alice", note="x")
    assert AuditEvent.objects.count() == events_before
    resolve_alert(
        alert_id=spike.pk, actor="alice", note="load test by the web team", now=NOW + dt.timedelta(minutes=81)
    )
    spike.refresh_from_db()
    assert (spike.state, spike.acknowledged_by, spike.resolved_by) == (AlertState.RESOLVED, "alice", "alice")
    assert AuditEvent.objects.filter(action__in=["alert.acknowledged", "alert.resolved"]).count() == 2
    assert not run_monitor(now=NOW + dt.timedelta(minutes=82), policy=POLICY).raised  # it calmed down
    for i in range(25):
        _issue(issuing_ca, profile, USUAL[1], NOW + dt.timedelta(minutes=83 + i), actor="acme:demo:spiky")
    again = run_monitor(now=NOW + dt.timedelta(minutes=110), policy=POLICY)
    assert [a.kind for a in again.raised] == [AlertKind.ISSUANCE_SPIKE]
    assert Alert.objects.filter(kind=AlertKind.ISSUANCE_SPIKE).count() == 2
    assert Alert.objects.filter(kind=AlertKind.ISSUANCE_SPIKE, state=AlertState.OPEN).count() == 1
    assert len(hook.calls) == 4
    assert audit.verify_chain().ok


def test_blocked_keys_logins_tokens_and_health_signals(issuing_ca, settings):
    from axes.models import AccessFailureLog

    now = NOW
    with transaction.atomic():
        audit.record(
            action="issuance.refused_blocked_key",
            actor="bob (token abcd)",
            object_type="key",
            object_id="ff" * 32,
            scope="ca:1",
            now=now - dt.timedelta(minutes=2),
        )
    for _ in range(3):
        row = AccessFailureLog.objects.create(
            username="admin",
            ip_address="203.0.113.9",
            user_agent="x",
            http_accept="*",
            path_info="/console/login/",
        )
        AccessFailureLog.objects.filter(pk=row.pk).update(attempt_time=now - dt.timedelta(minutes=1))
    for _ in range(10):
        count_token_error(token_prefix="kmi_t0k3n", now=now)
    AuditVerification.objects.create(
        started_at=now,
        finished_at=now,
        actor="t",
        ok=False,
        streams=1,
        events=5,
        breaks=[{"stream": "global"}],
    )
    report = run_monitor(now=now + dt.timedelta(seconds=30), policy=MonitorPolicy(burst=2), deliver=False)
    raised = {(a.kind, a.subject) for a in report.raised}
    assert (AlertKind.BLOCKED_KEY, "actor:bob (token abcd)") in raised
    assert (AlertKind.LOGIN_FAILURES, "ip:203.0.113.9") in raised
    assert (AlertKind.TOKEN_ERRORS, "token:kmi_t0k3n") in raised
    assert (AlertKind.AUDIT_CHAIN, "audit") in raised
    # The chain verifies again: its alert resolves by itself; the others wait for a person.
    AuditVerification.objects.create(
        started_at=now + dt.timedelta(minutes=1),
        finished_at=now,
        actor="t",
        ok=True,
        streams=1,
        events=5,
        breaks=[],
    )
    later = run_monitor(now=now + dt.timedelta(minutes=30), policy=MonitorPolicy(burst=2), deliver=False)
    assert [(a.kind, a.state) for a in later.resolved] == [(AlertKind.AUDIT_CHAIN, AlertState.RESOLVED)]
    assert Alert.objects.get(kind=AlertKind.BLOCKED_KEY).state == AlertState.OPEN
    assert MonitorRun.objects.count() == 2


def test_ca_near_expiry_alerts(issuing_ca):
    soon = issuing_ca.certificate.not_after - dt.timedelta(days=10)
    report = run_monitor(now=soon, policy=POLICY, deliver=False)
    assert (AlertKind.CA_EXPIRY, "ca:issuing") in {(a.kind, a.subject) for a in report.raised}


def test_an_unreachable_key_backend_alerts_where_keys_are_held(issuing_ca, lifecycle_conf):
    from pki.models import Key

    Key.objects.filter(pk=issuing_ca.key_id).update(backend="pkcs11")  # no HSM configured here
    report = run_monitor(now=NOW, policy=POLICY, deliver=False)
    assert (AlertKind.KEY_BACKEND, "ca:issuing") in {(a.kind, a.subject) for a in report.raised}
    # Where only the signing workers hold keys, their heartbeat is watched instead.
    Alert.objects.all().delete()
    lifecycle_conf(SIGNING="worker")
    assert not run_monitor(now=NOW + dt.timedelta(minutes=1), policy=POLICY, deliver=False).raised


def test_a_previous_generation_near_expiry_alerts_for_its_crl_signing_key(issuing_ca):
    from pki.models import CAGeneration, GenerationState
    from pki.rotation import rollover_ca

    rollover_ca(ca=issuing_ca, actor="ops", now=NOW)
    old = CAGeneration.objects.get(ca=issuing_ca, state=GenerationState.PREVIOUS)
    report = run_monitor(now=old.certificate.not_after - dt.timedelta(days=10), policy=POLICY, deliver=False)
    raised = {(a.kind, a.subject) for a in report.raised}
    assert (AlertKind.CA_EXPIRY, f"ca:issuing:g{old.number}") in raised
    # Not before it comes close.
    assert not [
        a
        for a in run_monitor(now=NOW, policy=POLICY, deliver=False).raised
        if a.subject.endswith(f":g{old.number}")
    ]
