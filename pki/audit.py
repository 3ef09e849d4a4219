"""Writing and verifying the hash-chained audit trail."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from django.db import models, transaction

from pki.clock import resolve
from pki.conf import pki_settings
from pki.models.audit import AuditEvent, AuditStream

GENESIS = "0" * 64


def _canonical(event: AuditEvent) -> bytes:
    body = {
        "stream": event.stream,
        "seq": event.seq,
        "timestamp": event.timestamp.astimezone(dt.UTC).isoformat(timespec="microseconds"),
        "actor": event.actor,
        "action": event.action,
        "object_type": event.object_type,
        "object_id": event.object_id,
        "details": event.details,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()


def event_hash(event: AuditEvent) -> str:
    """Return the SHA-256 over the previous hash and the event's canonical JSON."""
    return hashlib.sha256(event.prev_hash.encode() + b"\n" + _canonical(event)).hexdigest()


def stream_for(scope: str) -> str:
    """Pick one lane of ``scope``'s chain at random, so concurrent writers rarely wait.

    Within one transaction every event of a scope goes to the same lane: a transaction that
    locked two lanes of one scope in random order could deadlock with another doing the same.
    """
    conn = transaction.get_connection()
    outer = conn.atomic_blocks[0] if conn.atomic_blocks else None
    held: tuple[object, dict[str, str]] | None = getattr(conn, "_kmi_audit_lanes", None)
    if held is None or held[0] is not outer:
        held = (outer, {})
        conn._kmi_audit_lanes = held
    lane = held[1].get(scope)
    if lane is None:
        lane = held[1][scope] = f"{scope}/{secrets.randbelow(pki_settings().audit_lanes)}"
    return lane


def record(
    *,
    action: str,
    actor: str,
    obj: models.Model | None = None,
    object_type: str = "",
    object_id: str = "",
    details: Mapping[str, Any] | None = None,
    scope: str = "global",
    now: dt.datetime | None = None,
) -> AuditEvent:
    """Append an audit event in the caller's transaction (it must be inside one)."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("audit.record must run inside the transaction of the change it records")
    if obj is not None:
        object_type = object_type or obj._meta.model_name or ""
        object_id = object_id or str(obj.pk)
    stream = stream_for(scope)
    head = AuditStream.objects.select_for_update().filter(name=stream).first()
    if head is None:
        AuditStream.objects.bulk_create([AuditStream(name=stream)], ignore_conflicts=True)
        head = AuditStream.objects.select_for_update().get(name=stream)
    event = AuditEvent(
        stream=stream,
        seq=head.seq + 1,
        timestamp=resolve(now),
        actor=actor,
        action=action,
        object_type=object_type,
        object_id=object_id,
        details=json.loads(json.dumps(dict(details or {}), default=str)),
        prev_hash=head.head,
    )
    event.hash = event_hash(event)
    event.save(force_insert=True)
    AuditStream.objects.filter(name=stream).update(seq=event.seq, head=event.hash)
    return event


@dataclass(frozen=True)
class AuditBreak:
    """The first broken link found in a stream."""

    stream: str
    seq: int
    event_id: int | None
    problem: str


@dataclass(frozen=True)
class AuditReport:
    """Result of verifying every chain."""

    streams: int
    events: int
    breaks: tuple[AuditBreak, ...]

    @property
    def ok(self) -> bool:
        """True when every chain verifies."""
        return not self.breaks


def _verify_stream(head: AuditStream) -> tuple[int, AuditBreak | None]:
    prev = GENESIS
    expected_seq = 1
    count = 0
    events: Iterator[AuditEvent] = (
        AuditEvent.objects.filter(stream=head.name).order_by("seq").iterator(chunk_size=2000)
    )
    for event in events:
        count += 1
        if event.seq != expected_seq:
            return count, AuditBreak(head.name, expected_seq, event.pk, "event missing before this one")
        if event.prev_hash != prev:
            return count, AuditBreak(head.name, event.seq, event.pk, "prev_hash does not match")
        if event_hash(event) != event.hash:
            return count, AuditBreak(head.name, event.seq, event.pk, "event was altered")
        prev = event.hash
        expected_seq += 1
    if head.seq != expected_seq - 1 or head.head != prev:
        return count, AuditBreak(head.name, head.seq, None, "chain head does not match the last event")
    return count, None


def verify_chain() -> AuditReport:
    """Recompute every stream's chain and report the first broken link of each."""
    breaks: list[AuditBreak] = []
    total = 0
    heads = list(AuditStream.objects.order_by("name"))
    known = {h.name for h in heads}
    orphans = AuditEvent.objects.exclude(stream__in=known).values_list("stream", flat=True).distinct()
    for name in orphans:
        breaks.append(AuditBreak(name, 0, None, "events without a chain head"))
    for head in heads:
        count, problem = _verify_stream(head)
        total += count
        if problem is not None:
            breaks.append(problem)
    return AuditReport(streams=len(heads), events=total, breaks=tuple(breaks))
