"""Writing and verifying the hash-chained audit trail."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
import json
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import models, transaction

from pki.clock import resolve
from pki.conf import pki_settings
from pki.models.audit import AuditEvent, AuditStream

GENESIS = "0" * 64

# One statement appends an event on PostgreSQL: lock the stream's head, advance it, insert the
# event. The hash is computed by the server with the same definition as ``chain_hash`` below,
# so writers pay one round trip and wait for each other only when they pick the same lane.
_PG_HEAD = "head AS (SELECT name, seq, head FROM pki_auditstream WHERE name = %(stream)s FOR UPDATE),\n"
_PG_APPEND = """
advanced AS (
    UPDATE pki_auditstream AS s
    SET seq = head.seq + 1,
        head = encode(sha256(convert_to(head.head || E'\\n' || %(body)s, 'UTF8')), 'hex')
    FROM head WHERE s.name = head.name
    RETURNING s.seq AS seq, s.head AS hash, head.head AS prev_hash
)
INSERT INTO pki_auditevent
    (stream, seq, timestamp, actor, action, object_type, object_id, details, prev_hash, hash, mac)
SELECT %(stream)s, advanced.seq, %(timestamp)s, %(actor)s, %(action)s, %(object_type)s,
       %(object_id)s, %(details)s::jsonb, advanced.prev_hash, advanced.hash,
       encode(sha256(%(mac_o)s::bytea || sha256(%(mac_i)s::bytea
           || convert_to(advanced.seq::text || E'\\n' || advanced.prev_hash || E'\\n' || %(body)s,
                      'UTF8'))), 'hex')
FROM advanced
RETURNING id, seq, prev_hash, hash
"""

# Two events chained in one statement (a request submitted and issued at once): the first
# event's hash is computed from the head, the second's from the first's; the head moves by two.
_PG_APPEND_TWO = """
ev1 AS (
    SELECT head.name, head.seq + 1 AS seq, head.head AS prev_hash,
           encode(sha256(convert_to(head.head || E'\\n' || %(body)s, 'UTF8')), 'hex') AS hash
    FROM head
),
advanced AS (
    UPDATE pki_auditstream AS s
    SET seq = ev1.seq + 1,
        head = encode(sha256(convert_to(ev1.hash || E'\\n' || %(body2)s, 'UTF8')), 'hex')
    FROM ev1 WHERE s.name = ev1.name
    RETURNING s.seq AS seq, s.head AS hash, ev1.hash AS prev_hash
)
INSERT INTO pki_auditevent
    (stream, seq, timestamp, actor, action, object_type, object_id, details, prev_hash, hash, mac)
SELECT %(stream)s, ev1.seq, %(timestamp)s, %(actor)s, %(action)s, %(object_type)s,
       %(object_id)s, %(details)s::jsonb, ev1.prev_hash, ev1.hash,
       encode(sha256(%(mac_o)s::bytea || sha256(%(mac_i)s::bytea
           || convert_to(ev1.seq::text || E'\\n' || ev1.prev_hash || E'\\n' || %(body)s, 'UTF8'))), 'hex')
FROM ev1, advanced
UNION ALL
SELECT %(stream)s, advanced.seq, %(timestamp)s, %(actor)s, %(action2)s, %(object_type2)s,
       %(object_id2)s, %(details2)s::jsonb, advanced.prev_hash, advanced.hash,
       encode(sha256(%(mac_o)s::bytea || sha256(%(mac_i)s::bytea
           || convert_to(advanced.seq::text || E'\\n' || advanced.prev_hash || E'\\n' || %(body2)s,
                      'UTF8'))), 'hex')
FROM advanced
RETURNING id, seq, prev_hash, hash
"""

_known_streams: set[str] = set()


@dataclass(frozen=True)
class PendingEvent:
    """An audit event before it is chained: everything the hash covers except the chain."""

    stream: str
    timestamp: dt.datetime
    actor: str
    action: str
    object_type: str
    object_id: str
    details: dict[str, Any]

    def body(self) -> str:
        """The canonical JSON the chain hash covers."""
        return canonical_body(
            stream=self.stream,
            timestamp=self.timestamp,
            actor=self.actor,
            action=self.action,
            object_type=self.object_type,
            object_id=self.object_id,
            details=self.details,
        )

    def sql_params(self) -> dict[str, Any]:
        """Parameters of the PostgreSQL append statement."""
        inner, outer = mac_pads()
        return {
            "stream": self.stream,
            "body": self.body(),
            "mac_i": inner,
            "mac_o": outer,
            "timestamp": self.timestamp,
            "actor": self.actor,
            "action": self.action,
            "object_type": self.object_type,
            "object_id": self.object_id,
            "details": json.dumps(self.details, sort_keys=True, separators=(",", ":")),
        }


def canonical_body(
    *,
    stream: str,
    timestamp: dt.datetime,
    actor: str,
    action: str,
    object_type: str,
    object_id: str,
    details: Mapping[str, Any],
) -> str:
    """Return the canonical JSON of an event's content (sorted keys, no spaces, UTC microseconds)."""
    body = {
        "stream": stream,
        "timestamp": timestamp.astimezone(dt.UTC).isoformat(timespec="microseconds"),
        "actor": actor,
        "action": action,
        "object_type": object_type,
        "object_id": object_id,
        "details": details,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def chain_hash(prev_hash: str, body: str) -> str:
    """SHA-256 (hex) over the previous hash, a newline and the canonical body."""
    return hashlib.sha256(f"{prev_hash}\n{body}".encode()).hexdigest()


def stored_body(event: AuditEvent) -> str:
    """The canonical body of a stored event, recomputed from its columns."""
    return canonical_body(
        stream=event.stream,
        timestamp=event.timestamp,
        actor=event.actor,
        action=event.action,
        object_type=event.object_type,
        object_id=event.object_id,
        details=event.details,
    )


def event_hash(event: AuditEvent) -> str:
    """Recompute a stored event's hash from its columns."""
    return chain_hash(event.prev_hash, stored_body(event))


# The chain's SHA-256 is unkeyed: anyone who can write the database can re-chain it. Each event
# therefore also carries an HMAC-SHA256 of its place and link (lane sequence number, newline,
# previous hash, newline, body) under a key derived from SECRET_KEY, which the database never
# holds: an event written, rewritten, re-linked or re-numbered by anyone else does not verify.
# PostgreSQL computes it inside the append statement from the key's inner and outer pads
# (RFC 2104), as it computes the chain hash; the key itself is never sent. SECRET_KEY_FALLBACKS
# keep old events verifiable after a rotation. (v1 MACs left out the sequence number; migration
# 0020 re-MACs the events whose v1 MAC verified.)
_MAC_LABEL = b"kmi audit event mac v2"
_SHA256_BLOCK = 64


@functools.lru_cache(maxsize=8)
def _mac_key(secret: str) -> bytes:
    return hmac.new(secret.encode(), _MAC_LABEL, hashlib.sha256).digest()


@functools.lru_cache(maxsize=8)
def _pads(secret: str) -> tuple[bytes, bytes]:
    key = _mac_key(secret).ljust(_SHA256_BLOCK, b"\0")
    return bytes(b ^ 0x36 for b in key), bytes(b ^ 0x5C for b in key)


def mac_pads() -> tuple[bytes, bytes]:
    """The audit MAC key's HMAC inner and outer pads (what the append statement hashes with)."""
    return _pads(str(settings.SECRET_KEY))


def _mac_message(seq: int, prev_hash: str, body: str) -> bytes:
    return f"{seq}\n{prev_hash}\n{body}".encode()


def event_mac(seq: int, prev_hash: str, body: str) -> str:
    """HMAC-SHA256 (hex) of an event's place and link (lane sequence number, previous hash, body)
    under the audit MAC key."""
    message = _mac_message(seq, prev_hash, body)
    return hmac.new(_mac_key(str(settings.SECRET_KEY)), message, hashlib.sha256).hexdigest()


def mac_verifies(event: AuditEvent) -> bool:
    """True when the stored event's MAC is right under SECRET_KEY or one of its fallbacks."""
    message = _mac_message(event.seq, event.prev_hash, stored_body(event))
    for secret in (settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", ())):
        expected = hmac.new(_mac_key(str(secret)), message, hashlib.sha256).hexdigest()
        if hmac.compare_digest(expected, event.mac):
            return True
    return False


def stream_for(scope: str) -> str:
    """Pick one lane of ``scope``'s chain at random, so concurrent writers rarely wait.

    Within one transaction every event of a scope goes to the same lane: a transaction that
    locked two lanes of one scope in random order could deadlock with another doing the same.
    """
    conn = transaction.get_connection()
    if not conn.in_atomic_block:
        # One statement in autocommit is its own transaction: any lane will do, each time.
        return f"{scope}/{secrets.randbelow(pki_settings().audit_lanes)}"
    outer = conn.atomic_blocks[0] if conn.atomic_blocks else None
    held: tuple[object, dict[str, str]] | None = getattr(conn, "_kmi_audit_lanes", None)
    if held is None or held[0] is not outer:
        held = (outer, {})
        conn._kmi_audit_lanes = held
    lane = held[1].get(scope)
    if lane is None:
        lane = held[1][scope] = f"{scope}/{secrets.randbelow(pki_settings().audit_lanes)}"
    return lane


def ensure_stream(name: str) -> None:
    """Create the head row of stream ``name`` if it does not exist yet (cached per process)."""
    if name in _known_streams:
        return
    AuditStream.objects.bulk_create([AuditStream(name=name)], ignore_conflicts=True)
    # Cache it only once the row is committed (at once outside a transaction).
    transaction.on_commit(lambda: _known_streams.add(name))


def forget_stream(name: str) -> None:
    """Drop ``name`` from the per-process cache (its head row must be checked again)."""
    _known_streams.discard(name)


def pending_event(
    *,
    action: str,
    actor: str,
    obj: models.Model | None = None,
    object_type: str = "",
    object_id: str = "",
    details: Mapping[str, Any] | None = None,
    scope: str = "global",
    now: dt.datetime | None = None,
) -> PendingEvent:
    """Describe an event to append (normalising details to plain JSON)."""
    if obj is not None:
        object_type = object_type or obj._meta.model_name or ""
        object_id = object_id or str(obj.pk)
    return PendingEvent(
        stream=stream_for(scope),
        timestamp=resolve(now),
        actor=actor,
        action=action,
        object_type=object_type,
        object_id=object_id,
        details=json.loads(json.dumps(dict(details or {}), default=str)),
    )


def _head(condition: str) -> str:
    return _PG_HEAD.replace(" FOR UPDATE", f" AND {condition} FOR UPDATE") if condition else _PG_HEAD


def _returning(statement: str, extra: str) -> str:
    return f"{statement.rstrip()}, {extra}\n" if extra else statement


def pg_append_sql(prefix_ctes: str = "", *, condition: str = "", returning: str = "") -> str:
    """The PostgreSQL append statement; ``prefix_ctes`` (``name AS (...),`` each) may use ``head``.

    ``condition`` (SQL) must hold for the stream head to be taken: when it does not, nothing
    guarded by ``head`` is written and no row is returned. ``returning`` adds output columns.
    """
    return "WITH " + _head(condition) + prefix_ctes + _returning(_PG_APPEND, returning)


def pg_append_two_sql(
    prefix_ctes: str = "", *, guard: str = "", condition: str = "", returning: str = ""
) -> str:
    """Like ``pg_append_sql`` for two events of one stream, time and actor.

    The second event's other parameters end in ``2`` (``body2``, ``action2``, …). ``guard``, a
    data-modifying ``guard AS (... RETURNING ...),`` CTE, runs first: when it returns no row the
    stream head is not taken, so neither event nor anything guarded by ``head`` is written. (A
    data-modifying CTE always runs: the guard itself must also hold off when ``condition`` fails.)
    """
    body = _returning(_PG_APPEND_TWO, returning)
    if not guard:
        return "WITH " + _head(condition) + prefix_ctes + body
    # The guard, condition and CTEs are the callers' constant SQL; values are bound parameters.
    both = "EXISTS (SELECT 1 FROM guard)" + (f" AND {condition}" if condition else "")  # noqa: S608
    return "WITH " + guard + _head(both) + prefix_ctes + body


def _append(event: PendingEvent) -> AuditEvent:
    connection = transaction.get_connection()
    ensure_stream(event.stream)
    if connection.vendor == "postgresql":
        params = event.sql_params()
        with connection.cursor() as cursor:
            cursor.execute(pg_append_sql(), params)
            result = cursor.fetchone()
            if result is None:  # the head row was created in a transaction that rolled back
                forget_stream(event.stream)
                ensure_stream(event.stream)
                cursor.execute(pg_append_sql(), params)
                result = cursor.fetchone()
        pk, seq, prev_hash, hash_ = result
        return chained_row(event, pk=pk, seq=seq, prev_hash=prev_hash, hash_=hash_)
    head = AuditStream.objects.select_for_update().filter(name=event.stream).first()
    if head is None:
        forget_stream(event.stream)
        ensure_stream(event.stream)
        head = AuditStream.objects.select_for_update().get(name=event.stream)
    row = AuditEvent(
        stream=event.stream,
        seq=head.seq + 1,
        timestamp=event.timestamp,
        actor=event.actor,
        action=event.action,
        object_type=event.object_type,
        object_id=event.object_id,
        details=event.details,
        prev_hash=head.head,
    )
    body = event.body()
    row.hash = chain_hash(head.head, body)
    row.mac = event_mac(row.seq, head.head, body)
    row.save(force_insert=True)
    AuditStream.objects.filter(name=event.stream).update(seq=row.seq, head=row.hash)
    return row


def chained_row(event: PendingEvent, *, pk: int, seq: int, prev_hash: str, hash_: str) -> AuditEvent:
    """The model instance of an event the database just appended."""
    row = AuditEvent(
        id=pk,
        stream=event.stream,
        seq=seq,
        timestamp=event.timestamp,
        actor=event.actor,
        action=event.action,
        object_type=event.object_type,
        object_id=event.object_id,
        details=event.details,
        prev_hash=prev_hash,
        hash=hash_,
        mac=event_mac(seq, prev_hash, event.body()),
    )
    row._state.adding = False
    row._state.db = "default"
    return row


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
    return _append(
        pending_event(
            action=action,
            actor=actor,
            obj=obj,
            object_type=object_type,
            object_id=object_id,
            details=details,
            scope=scope,
            now=now,
        )
    )


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


def link_problem(event: AuditEvent, *, expected_seq: int, prev: str) -> str | None:
    """What is wrong with ``event`` as the link after ``prev`` at ``expected_seq``, or None."""
    if event.seq != expected_seq:
        return "event missing before this one"
    if event.prev_hash != prev:
        return "prev_hash does not match"
    if event_hash(event) != event.hash:
        return "event was altered"
    if not mac_verifies(event):
        return "event MAC does not verify (forged or rewritten)"
    return None


# Rounds of re-reading a head that moved while its lane was verified (appends go on meanwhile).
_VERIFY_ROUNDS = 20


def _verify_stream(head: AuditStream) -> tuple[int, AuditBreak | None]:
    """Verify one lane from its first event up to ``head``, read before its events.

    Events committed after ``head`` was read lie beyond it: the head is read again and they are
    verified too, so a concurrent writer is never reported as a break; an event beyond a head
    that no longer moves is one (it was written without advancing the head).
    """
    prev = GENESIS
    expected_seq = 1
    count = 0
    for _ in range(_VERIFY_ROUNDS):
        events: Iterator[AuditEvent] = (
            AuditEvent.objects.filter(stream=head.name, seq__gte=expected_seq, seq__lte=head.seq)
            .order_by("seq")
            .iterator(chunk_size=2000)
        )
        for event in events:
            count += 1
            problem = link_problem(event, expected_seq=expected_seq, prev=prev)
            if problem is not None:
                at = expected_seq if event.seq != expected_seq else event.seq
                return count, AuditBreak(head.name, at, event.pk, problem)
            prev = event.hash
            expected_seq += 1
        if head.seq != expected_seq - 1 or head.head != prev:
            return count, AuditBreak(head.name, head.seq, None, "chain head does not match the last event")
        beyond = AuditEvent.objects.filter(stream=head.name, seq__gt=head.seq).order_by("seq").first()
        if beyond is None:
            return count, None
        fresh = AuditStream.objects.filter(name=head.name).first()
        if fresh is None or fresh.seq <= head.seq:
            return count, AuditBreak(head.name, beyond.seq, beyond.pk, "event beyond the chain head")
        head = fresh
    return count, None  # still moving: what is beyond is verified next time


def verify_chain() -> AuditReport:
    """Recompute every stream's chain and report the first broken link of each."""
    breaks: list[AuditBreak] = []
    total = 0
    heads = list(AuditStream.objects.order_by("name"))
    known = {h.name for h in heads}
    # order_by("stream") replaces Meta.ordering (id), which DISTINCT would otherwise include.
    orphans = (
        AuditEvent.objects.exclude(stream__in=known)
        .order_by("stream")
        .values_list("stream", flat=True)
        .distinct()
    )
    for name in orphans:
        breaks.append(AuditBreak(name, 0, None, "events without a chain head"))
    for head in heads:
        count, problem = _verify_stream(head)
        total += count
        if problem is not None:
            breaks.append(problem)
    return AuditReport(streams=len(heads), events=total, breaks=tuple(breaks))
