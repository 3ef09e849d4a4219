"""Anchoring KMI records (signed audit checkpoints) in a sibling transparency log.

The audit trail's signed checkpoints are appended, as ``RECORD_ENTRY_TYPE`` leaves, to a log that
issuance does not feed (``kmi-audit`` by default): the log's signed tree heads then commit to
every checkpoint, so a checkpoint cannot be swapped later without breaking the consistency
proofs monitors and ``verify_log`` check.
"""

from __future__ import annotations

import datetime as dt

from django.db import transaction

from pki import audit
from pki.clock import resolve
from pki.exceptions import NotFound, PolicyViolation
from pki.models.transparency import LogEntry, TransparencyLog
from pki.transparency.log import NewLeaf, append_leaves, create_log, get_log
from pki.transparency.structures import record_leaf, timestamp_ms

AUDIT_LOG = "kmi-audit"
MAX_RECORD_BYTES = 64 * 1024


def anchor_record(
    *,
    record: bytes,
    actor: str,
    log_name: str = AUDIT_LOG,
    about: dict[str, object] | None = None,
    now: dt.datetime | None = None,
) -> LogEntry:
    """Append ``record`` to the sibling log ``log_name`` (made on first use); return its entry.

    The next tree head of that log (the beat tick, or ``sign_tree_head``) covers it.
    """
    now = resolve(now)
    if not record or len(record) > MAX_RECORD_BYTES:
        raise PolicyViolation(f"a record to anchor is 1 to {MAX_RECORD_BYTES} bytes")
    try:
        log = get_log(log_name)
    except NotFound:
        log = create_log(name=log_name, actor=actor, feeds_issuance=False, now=now)
    if log.feeds_issuance:
        raise PolicyViolation(f"log {log_name} takes KMI's certificates; anchor records in a sibling log")
    ts = timestamp_ms(now)
    with transaction.atomic():
        locked = TransparencyLog.objects.select_for_update().get(pk=log.pk)
        index = locked.tree_size
        append_leaves(log=locked, leaves=[NewLeaf(record_leaf(timestamp=ts, record=record), ts)])
        audit.record(
            action="transparency.record_anchored",
            actor=actor,
            obj=locked,
            details={"log": log_name, "leaf_index": index, "bytes": len(record), **(about or {})},
            scope=f"log:{log_name}",
            now=now,
        )
    return LogEntry.objects.get(log=log, leaf_index=index)


def anchor_checkpoint(*, checkpoint_id: int, actor: str, now: dt.datetime | None = None) -> LogEntry:
    """Anchor a signed audit checkpoint (its exported line: payload, signature, public key) in
    the sibling log ``kmi-audit``; safe to run twice (the second run returns the first entry)."""
    from pki.audit_checkpoints import export_line
    from pki.models.audit import AuditCheckpoint, AuditEvent

    try:
        row = AuditCheckpoint.objects.select_related("key").get(pk=checkpoint_id)
    except AuditCheckpoint.DoesNotExist:
        raise NotFound(f"no audit checkpoint {checkpoint_id}") from None
    done = (
        AuditEvent.objects.filter(action="transparency.record_anchored", details__checkpoint=row.number)
        .values_list("details__leaf_index", flat=True)
        .first()
    )
    if done is not None:
        return LogEntry.objects.get(log__name=AUDIT_LOG, leaf_index=done)
    return anchor_record(
        record=export_line(row).encode(), actor=actor, about={"checkpoint": row.number}, now=now
    )
