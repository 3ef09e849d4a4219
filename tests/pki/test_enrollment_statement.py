"""Enrollment outside a transaction (as the API runs it): one statement, and the cached CA and profile."""

from __future__ import annotations

import pytest
from cryptography import x509
from django.db import connection

from pki import audit
from pki.enrollment import enroll, load_targets
from pki.exceptions import NameNotAllowed
from pki.models import AuditEvent, CertificateAuthority, CertificateRequest, Key, Profile, RequestState
from pki.models.key import KeyState
from pki.profile_changes import update_profile
from pki.revocation import revoke_certificate
from tests.conftest import make_csr

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def test_auto_approved_enrollment_writes_request_certificate_and_both_events_in_one_chain(
    issuing_ca, profile
):
    result = enroll(
        ca=issuing_ca,
        profile=profile("tls-server"),
        csr=make_csr(sans=[x509.DNSName("one.example.test")]),
        actor="api:one",
    )
    assert result.certificate is not None
    request = CertificateRequest.objects.get(pk=result.request.pk)
    assert request.state == RequestState.ISSUED
    assert request.reviewed_by == "auto"
    assert result.certificate.request_id == request.pk
    submitted, issued = AuditEvent.objects.filter(actor="api:one").order_by("seq")
    assert (submitted.action, issued.action) == ("request.submitted", "certificate.issued")
    assert submitted.stream == issued.stream
    assert issued.seq == submitted.seq + 1
    assert issued.prev_hash == submitted.hash
    assert submitted.object_id == str(request.pk)
    assert submitted.details["state"] == RequestState.APPROVED
    assert audit.verify_chain().ok


def test_refused_enrollment_writes_nothing(issuing_ca, profile):
    csr = make_csr(subject="CN=Someone", sans=[x509.RFC822Name("someone@example.test")])
    events = AuditEvent.objects.count()
    with pytest.raises(NameNotAllowed):
        enroll(ca=issuing_ca, profile=profile("tls-server"), csr=csr, actor="api:two")
    assert not CertificateRequest.objects.exists()
    assert AuditEvent.objects.count() == events


def test_cached_ca_and_profile_are_reused_until_they_change(issuing_ca, profile):
    tls = profile("tls-server")
    ca, prof = load_targets(ca_name="issuing", profile_name="tls-server")
    again_ca, again_prof = load_targets(ca_name="issuing", profile_name="tls-server")
    assert ca is again_ca
    assert prof is again_prof
    assert load_targets(ca_name="nope", profile_name="nope-either") == (None, None)

    CertificateAuthority.objects.filter(pk=issuing_ca.pk).update(state="disabled")
    changed_ca, _ = load_targets(ca_name="issuing", profile_name="tls-server")
    assert changed_ca is not ca
    assert changed_ca is not None
    assert changed_ca.state == "disabled"

    update_profile(profile=tls, changes={"default_validity_days": 30}, actor="t")
    _, changed_prof = load_targets(ca_name="issuing", profile_name="tls-server")
    assert changed_prof is not prof
    assert isinstance(changed_prof, Profile)
    assert changed_prof.default_validity_days == 30


def test_cached_ca_is_reloaded_when_its_key_or_certificate_changes(root_ca, issuing_ca):
    ca, _ = load_targets(ca_name="issuing", profile_name="tls-server")
    assert ca is not None

    Key.objects.filter(pk=issuing_ca.key_id).update(state=KeyState.SUSPENDED)
    suspended, _ = load_targets(ca_name="issuing", profile_name="tls-server")
    assert suspended is not ca
    assert suspended is not None
    assert suspended.key.state == KeyState.SUSPENDED
    assert load_targets(ca_name="issuing", profile_name="tls-server")[0] is suspended

    revoke_certificate(certificate=issuing_ca.certificate, reason="keyCompromise", actor="t")
    revoked, _ = load_targets(ca_name="issuing", profile_name="tls-server")
    assert revoked is not suspended
    assert revoked is not None
    assert revoked.certificate.revoked_at is not None


def test_hot_statements_are_prepared_on_the_server(issuing_ca, profile):
    """execute_prepared really plans once per connection (psycopg ignores prepare=True when the
    connection's prepare_threshold is None, Django's default)."""
    for name in ("one.example.test", "two.example.test"):
        enroll(
            ca=issuing_ca,
            profile=profile("tls-server"),
            csr=make_csr(sans=[x509.DNSName(name)]),
            actor="api:prepared",
        )
    load_targets(ca_name="issuing", profile_name="tls-server")
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [row[0] for row in cursor.fetchall()]
    assert any("INSERT INTO pki_certificate " in s for s in prepared)
    assert any("pki_certificateauthority ca" in s for s in prepared)
