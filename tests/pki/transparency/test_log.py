"""KMI's transparency log: every issued certificate becomes a leaf, tree heads are signed by the
log key, proofs verify, and ``verify_log`` notices tampering."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import transaction

from pki import audit
from pki.enrollment import sign_csr
from pki.exceptions import AlreadyExists, NotFound, PolicyViolation
from pki.issuance import submit_and_issue
from pki.models import AuditEvent, Certificate, LogEntry, PendingLeaf, SignedTreeHead, TransparencyLog
from pki.transparency import log as ct
from pki.transparency import merkle
from pki.transparency.structures import parse_x509_leaf, x509_leaf
from tests.conftest import NOW, make_csr

pytestmark = pytest.mark.django_db


@pytest.fixture
def kmi_log(issuing_ca):
    return ct.create_log(name="kmi", actor="test", now=NOW)


def _issue(issuing_ca, profile, n: int, name: str = "www.example.test") -> list[Certificate]:
    return [
        sign_csr(
            ca=issuing_ca,
            profile=profile("tls-server"),
            csr=make_csr(subject=f"CN={name}"),
            actor="t",
            now=NOW,
        )
        for _ in range(n)
    ]


def test_every_certificate_row_is_queued_in_its_own_transaction(issuing_ca, profile):
    before = PendingLeaf.objects.count()  # the CA certificates are queued too
    _req, cert = submit_and_issue(
        ca=issuing_ca, profile=profile("tls-server"), csr=make_csr(), actor="t", now=NOW
    )
    assert cert is not None
    assert PendingLeaf.objects.filter(certificate_id=cert.pk).exists()

    def crash_after_the_insert() -> None:
        with transaction.atomic():
            _issue(issuing_ca, profile, 1)
            raise RuntimeError("crash after the insert")

    with pytest.raises(RuntimeError):
        crash_after_the_insert()
    assert PendingLeaf.objects.count() == before + 1  # the rolled-back certificate left no leaf


def test_tree_heads_are_signed_and_proofs_verify(issuing_ca, profile, kmi_log):
    certs = _issue(issuing_ca, profile, 3)
    first = ct.sign_tree_head(log=kmi_log, actor="test", now=NOW)
    assert first.tree_size == 5  # root and issuing CA certificates, then three leaves
    assert not PendingLeaf.objects.exists()
    assert ct.verify_signature(kmi_log, first)
    # create_log signed the first head (the two CA certificates), this is the second.
    assert AuditEvent.objects.filter(action="transparency.tree_head_signed").count() == 2
    # Nothing new: no new head.
    assert ct.sign_tree_head(log=kmi_log, actor="test", now=NOW).pk == first.pk
    more = _issue(issuing_ca, profile, 4)
    assert ct.tick(actor="test", now=NOW + dt.timedelta(seconds=20)) == {"kmi": 5}  # at most one per 30 s
    second = ct.tick(actor="test", now=NOW + dt.timedelta(minutes=1))
    assert second == {"kmi": 9}
    heads = list(SignedTreeHead.objects.filter(log=kmi_log).order_by("timestamp_ms"))
    assert [h.tree_size for h in heads] == [2, 5, 9]
    assert heads[2].timestamp_ms > heads[1].timestamp_ms > heads[0].timestamp_ms
    heads = heads[1:]
    for cert in [*certs, *more]:
        entry = ct.entry_for_certificate(cert, kmi_log)
        assert entry is not None
        leaf = x509_leaf(timestamp=entry.timestamp_ms, certificate_der=bytes(cert.der))
        assert parse_x509_leaf(leaf)[2] == bytes(cert.der)
        index, path = ct.inclusion_proof(log=kmi_log, leaf_hash=merkle.leaf_hash(leaf), tree_size=9)
        assert index == entry.leaf_index
        assert merkle.verify_inclusion(
            leaf=merkle.leaf_hash(leaf), index=index, size=9, path=path, root=bytes(heads[1].root_hash)
        )
    proof = ct.consistency_proof(log=kmi_log, first=5, second=9)
    assert merkle.verify_consistency(
        first=5,
        second=9,
        first_root=bytes(heads[0].root_hash),
        second_root=bytes(heads[1].root_hash),
        proof=proof,
    )
    got = ct.entries(log=kmi_log, start=2, end=100)
    assert len(got) == 7
    assert merkle.root_of(
        [merkle.leaf_hash(li) for li, _ in ct.entries(log=kmi_log, start=0, end=8)]
    ) == bytes(heads[1].root_hash)
    report = ct.verify_log(log=kmi_log)
    assert report.ok, report.problems
    assert (report.leaves, report.tree_heads) == (9, 3)


def test_verify_log_finds_a_tampered_certificate_and_a_forged_head(issuing_ca, profile, kmi_log):
    certs = _issue(issuing_ca, profile, 3)
    ct.sign_tree_head(log=kmi_log, actor="test", now=NOW)
    der = bytearray(certs[1].der)
    der[-1] ^= 1
    Certificate.objects.filter(pk=certs[1].pk).update(der=bytes(der))
    report = ct.verify_log(log=kmi_log)
    assert not report.ok
    assert any("leaf hash does not match" in p for p in report.problems)
    assert any("root hash does not match" in p for p in report.problems)
    Certificate.objects.filter(pk=certs[1].pk).update(der=bytes(certs[1].der))
    assert ct.verify_log(log=kmi_log).ok
    SignedTreeHead.objects.filter(log=kmi_log).update(signature=b"\x30\x06\x02\x01\x01\x02\x01\x01")
    assert any("bad signature" in p for p in ct.verify_log(log=kmi_log).problems)


def test_bad_requests_are_refused_and_write_nothing(issuing_ca, profile, kmi_log):
    with pytest.raises(PolicyViolation, match="not a log name"):
        ct.create_log(name="Bad Name", actor="t", now=NOW)
    with pytest.raises(AlreadyExists):
        ct.create_log(name="kmi", actor="t", now=NOW)
    assert TransparencyLog.objects.count() == 1
    with pytest.raises(PolicyViolation, match="not a published tree size"):
        ct.inclusion_proof(log=kmi_log, leaf_hash=b"\x00" * 32, tree_size=99)
    with pytest.raises(NotFound):
        ct.inclusion_proof(log=kmi_log, leaf_hash=b"\x00" * 32, tree_size=2)
    with pytest.raises(PolicyViolation):
        ct.consistency_proof(log=kmi_log, first=0, second=2)
    with pytest.raises(PolicyViolation, match="beyond the published tree"):
        ct.entries(log=kmi_log, start=2, end=3)
    with pytest.raises(NotFound):
        ct.get_log("nope")
    assert LogEntry.objects.count() == 2
    assert audit.verify_chain().ok
