"""Audit checkpoints (any KMI record) anchored in a sibling log: proven by its tree heads."""

from __future__ import annotations

import datetime as dt

import pytest

from pki.exceptions import PolicyViolation
from pki.models import AuditEvent, TransparencyLog
from pki.transparency import log as ct
from pki.transparency import merkle
from pki.transparency.anchoring import anchor_record
from pki.transparency.structures import RECORD_ENTRY_TYPE, parse_x509_leaf
from tests.conftest import NOW

pytestmark = pytest.mark.django_db


def test_records_are_anchored_in_a_sibling_log_and_proven(issuing_ca):
    ct.create_log(name="kmi", actor="test", now=NOW)
    first = anchor_record(record=b'{"checkpoint": 1, "head": "ab12"}', actor="system:audit", now=NOW)
    second = anchor_record(record=b'{"checkpoint": 2, "head": "cd34"}', actor="system:audit", now=NOW)
    sibling = TransparencyLog.objects.get(name="kmi-audit")
    assert not sibling.feeds_issuance
    assert (first.leaf_index, second.leaf_index) == (0, 1)
    ct.tick(actor="test", now=NOW + dt.timedelta(minutes=1))
    leaves = ct.entries(log=sibling, start=0, end=10)
    assert [parse_x509_leaf(li)[1:] for li, _ in leaves] == [
        (RECORD_ENTRY_TYPE, b'{"checkpoint": 1, "head": "ab12"}'),
        (RECORD_ENTRY_TYPE, b'{"checkpoint": 2, "head": "cd34"}'),
    ]
    sth = ct.latest_tree_head(sibling)
    assert sth is not None
    index, path = ct.inclusion_proof(log=sibling, leaf_hash=bytes(second.leaf_hash), tree_size=sth.tree_size)
    assert merkle.verify_inclusion(
        leaf=bytes(second.leaf_hash), index=index, size=sth.tree_size, path=path, root=bytes(sth.root_hash)
    )
    assert ct.verify_log(log=sibling).ok
    # The issuance log did not take the records, nor the sibling any certificate.
    assert ct.verify_log(log=ct.get_log("kmi")).leaves == 2
    assert AuditEvent.objects.filter(action="transparency.record_anchored").count() == 2


def test_bad_records_are_refused(db):
    with pytest.raises(PolicyViolation, match="1 to"):
        anchor_record(record=b"", actor="t", now=NOW)
    ct.create_log(name="kmi", actor="t", now=NOW)
    with pytest.raises(PolicyViolation, match="sibling log"):
        anchor_record(record=b"x", actor="t", log_name="kmi", now=NOW)
    assert not TransparencyLog.objects.filter(name="kmi-audit").exists()


def test_each_signed_audit_checkpoint_is_anchored_once(
    issuing_ca, settings, tmp_path, published_tasks, django_capture_on_commit_callbacks
):
    from pki.audit_checkpoints import export_line, make_checkpoint
    from pki.transparency.anchoring import anchor_checkpoint

    settings.KMI_AUDIT_CHECKPOINT_PATH = str(tmp_path / "checkpoints.jsonl")
    with django_capture_on_commit_callbacks(execute=True):
        checkpoint = make_checkpoint(actor="test", now=NOW)
    # checkpoint_made (sent after commit) hands the anchoring to the signing queue.
    assert ("pki.signing.anchor_checkpoint", "signing") in {(n, r) for n, r, _ in published_tasks}
    entry = anchor_checkpoint(checkpoint_id=checkpoint.pk, actor="system:celery", now=NOW)
    assert anchor_checkpoint(checkpoint_id=checkpoint.pk, actor="system:celery", now=NOW).pk == entry.pk
    sibling = TransparencyLog.objects.get(name="kmi-audit")
    ct.sign_tree_head(log=sibling, actor="test", now=NOW)
    ((leaf, _),) = ct.entries(log=sibling, start=0, end=0)
    assert parse_x509_leaf(leaf)[2] == export_line(checkpoint).encode()
    assert ct.verify_log(log=sibling).ok
