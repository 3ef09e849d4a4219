"""EST enrollment with a one-time code: the one-statement path and the transaction path are twins.

``pki.est.enrollment._enroll_in_one_statement`` (the code's claim joins the issuance statement)
may never diverge from ``_enroll_in_transaction`` (``enroll`` and the claim in one transaction)
in rows, audit events, refusals or answers. Each test runs both on the same label.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from cryptography import x509
from django.db import connection

from pki import audit
from pki.blocklist import REFUSED_ACTION, block_key
from pki.clock import resolve
from pki.est import enrollment as est
from pki.est.labels import IssuedCode, create_enrollment_codes, create_est_label
from pki.exceptions import KeyBlocked, NotAuthenticated, PolicyViolation
from pki.issuance import parse_csr
from pki.models import (
    AuditEvent,
    BlockedKey,
    Certificate,
    CertificateAuthority,
    CertificateRequest,
    EnrollmentCode,
    EstLabel,
    Profile,
)
from tests.conftest import make_csr

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

PATHS = {"one_statement": est._enroll_in_one_statement, "transaction": est._enroll_in_transaction}
Path = Callable[..., est.Enrollment]


@pytest.fixture
def label(issuing_ca: CertificateAuthority, profile: Callable[[str], Profile]) -> EstLabel:
    return create_est_label(name="devices", ca=issuing_ca, profile=profile("tls-client"), actor="test")


def _device(code: IssuedCode) -> est.Device:
    return est.authenticate_code(label_name="devices", code_id=code.code_id, secret=code.secret)


def _enroll(path: Path, code: IssuedCode, csr: bytes, now: dt.datetime) -> est.Enrollment:
    device = _device(code)
    assert device.code is not None
    return path(device=device, code=device.code, checked=parse_csr(csr), now=now)


def _rows(done: est.Enrollment, code: IssuedCode) -> dict[str, Any]:
    """What an enrollment wrote, without what differs by nature (ids, serials, hashes)."""
    assert done.certificate is not None
    request = CertificateRequest.objects.get(pk=done.request.pk)
    cert = Certificate.objects.get(pk=done.certificate.pk)
    used = EnrollmentCode.objects.get(pk=code.code_id)
    events = list(
        AuditEvent.objects.filter(actor=f"est:devices/code:{code.code_id}")
        .order_by("stream", "seq")
        .values("action", "object_type", "object_id", "details", "stream", "timestamp")
    )
    for event in events:
        event["details"] = {k: v for k, v in event["details"].items() if k != "serial"}
        event["object_id"] = {str(request.pk): "request", str(cert.pk): "certificate"}[event["object_id"]]
        event["stream"] = event["stream"].rsplit("/", 1)[0]  # the scope; its lane is picked at random
    fields = ("subject", "san_text", "key_fingerprint", "state", "requester_id", "reviewed_by", "reviewed_at")
    return {
        "request": {f: getattr(request, f) for f in fields},
        "certificate": {
            "request": cert.request_id == request.pk,
            "profile": cert.profile_id,
            "ca": cert.ca_id,
            "subject": cert.subject,
            "san_text": cert.san_text,
            "validity": cert.not_after - cert.not_before,
            "owner": cert.owner_id,
            "auto_renew": cert.auto_renew,
            "created_at": cert.created_at,
        },
        "code": (used.used_at, used.request_id == request.pk),
        "events": events,
    }


def test_both_paths_write_the_same_rows_and_audit_events(label: EstLabel) -> None:
    now = resolve(None).replace(microsecond=0)
    one, two = create_enrollment_codes(label=label, actor="test", count=2)
    csr = make_csr("ec-p256", subject="CN=device-1.example.test")
    fast = _enroll(est._enroll_in_one_statement, one, csr, now)
    slow = _enroll(est._enroll_in_transaction, two, csr, now)
    a, b = _rows(fast, one), _rows(slow, two)
    for done, code in ((fast, one), (slow, two)):
        actor = f"est:devices/code:{code.code_id}"
        assert CertificateRequest.objects.get(pk=done.request.pk).requested_by == actor
    assert a["code"] == (now, True)
    assert [e["action"] for e in a["events"]] == ["request.submitted", "certificate.issued"]
    assert a == b
    assert audit.verify_chain().ok


def test_the_one_statement_path_is_the_one_simple_enroll_takes(label: EstLabel) -> None:
    (code,) = create_enrollment_codes(label=label, actor="test")
    assert est._one_statement(label)
    done = est.simple_enroll(device=_device(code), csr=make_csr("ec-p256", subject="CN=d.example.test"))
    assert done.certificate is not None
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [row[0] for row in cursor.fetchall()]
    # The claim is part of the issuance statement, not a statement of its own.
    assert any("guard AS (" in s and "INSERT INTO pki_certificate " in s for s in prepared)
    assert not any(s.lstrip().startswith("UPDATE pki_enrollmentcode") for s in prepared)


@pytest.mark.parametrize("path", PATHS)
def test_a_code_is_used_once_on_both_paths(label: EstLabel, path: str) -> None:
    (code,) = create_enrollment_codes(label=label, actor="test")
    now = resolve(None)
    first = _enroll(PATHS[path], code, make_csr("ec-p256", subject="CN=d.example.test"), now)
    assert first.certificate is not None
    # The same code again, on the same path (it raced the first one and lost): nothing written.
    device = est.Device(label=_device(code).label, code=EnrollmentCode.objects.get(pk=code.code_id))
    device.code.used_at = None  # type: ignore[union-attr] - as it was read before the first one claimed it
    certificates = Certificate.objects.count()
    with pytest.raises((est._CodeTaken, est.GuardRefused)):
        PATHS[path](
            device=device,
            code=device.code,
            checked=parse_csr(make_csr("ec-p384", subject="CN=e.example.test")),
            now=now,
        )
    assert Certificate.objects.count() == certificates
    assert CertificateRequest.objects.count() == 1
    assert EnrollmentCode.objects.get(pk=code.code_id).request_id == first.request.pk
    # Through simple_enroll: another key is refused, the same key gets its certificate again.
    with pytest.raises(NotAuthenticated):
        est.simple_enroll(device=_device(code), csr=make_csr("ec-p384", subject="CN=e.example.test"))
    again = est.simple_enroll(device=_device(code), csr=make_csr("ec-p256", subject="CN=d.example.test"))
    assert again.certificate is not None
    assert again.certificate.pk == first.certificate.pk


@pytest.mark.parametrize("path", PATHS)
def test_a_blocked_key_is_refused_and_the_refusal_audited_on_both_paths(label: EstLabel, path: str) -> None:
    (code,) = create_enrollment_codes(label=label, actor="test")
    csr = make_csr("ec-p256", subject="CN=d.example.test")
    block_key(spki_sha256=parse_csr(csr).key_fingerprint, reason="keyCompromise", source="test", actor="test")
    with pytest.raises(KeyBlocked):
        _enroll(PATHS[path], code, csr, resolve(None))
    assert (
        AuditEvent.objects.filter(action=REFUSED_ACTION, actor=f"est:devices/code:{code.code_id}").count()
        == 1
    )
    assert not CertificateRequest.objects.exists()
    assert EnrollmentCode.objects.get(pk=code.code_id).used_at is None


def test_a_key_blocked_by_another_process_leaves_the_code_unused(label: EstLabel) -> None:
    """This process's copy of the blocklist has not seen the row: the one statement refuses it,
    and its code claim (which runs whatever the statement writes) claims nothing."""
    from pki.blocklist import check_before_signing, reload_copy

    reload_copy()  # whatever earlier tests in this process left in it
    (first, code) = create_enrollment_codes(label=label, actor="test", count=2)
    _enroll(PATHS["one_statement"], first, make_csr("ec-p256", subject="CN=d.example.test"), resolve(None))
    check_before_signing(spki_sha256="0" * 64, actor="test", path="sync")  # the copy is up to date
    csr = make_csr("ec-p256-b", subject="CN=d.example.test")
    BlockedKey.objects.create(
        spki_sha256=parse_csr(csr).key_fingerprint,
        reason="keyCompromise",
        source="test",
        actor="other",
        created_at=resolve(None),
    )
    with pytest.raises(KeyBlocked):
        _enroll(PATHS["one_statement"], code, csr, resolve(None))
    assert AuditEvent.objects.get(action=REFUSED_ACTION).details["path"] == "record_issuance"
    assert CertificateRequest.objects.count() == 1
    assert EnrollmentCode.objects.get(pk=code.code_id).used_at is None


@pytest.mark.parametrize("path", PATHS)
def test_a_policy_refusal_writes_nothing_on_both_paths(label: EstLabel, path: str) -> None:
    (code,) = create_enrollment_codes(label=label, actor="test")
    events = AuditEvent.objects.count()
    csr = make_csr(
        "ec-p256", subject="CN=d.example.test", sans=[x509.RegisteredID(x509.ObjectIdentifier("1.2.3.4"))]
    )
    with pytest.raises(PolicyViolation):
        _enroll(PATHS[path], code, csr, resolve(None))
    assert AuditEvent.objects.count() == events
    assert not CertificateRequest.objects.exists()
    assert EnrollmentCode.objects.get(pk=code.code_id).used_at is None
