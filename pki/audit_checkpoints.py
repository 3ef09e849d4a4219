"""Signed audit checkpoints, exported outside the database, and the verification that uses them.

The hash chains of ``pki.audit`` prove the trail is whole only to someone who trusts the
database: whoever can write it can truncate a lane, re-chain it after erasing an event, or empty
it. Three things close that:

- every event carries an HMAC under a key derived from ``SECRET_KEY`` (``pki.audit.event_mac``):
  an event written by anyone but KMI does not verify, even appended after the last checkpoint;
- a checkpoint (every ``KMI_AUDIT_CHECKPOINT_SECONDS``, and ``manage.py checkpoint_audit``)
  states every lane's head and count and the total, chained to the previous checkpoint, and is
  signed with the audit key — an Ed25519 key behind the ``KeyBackend`` like any CA key, so the
  database holds it only sealed under the KEK. Before it signs, the checkpointer verifies every
  event written since the previous checkpoint, so a checkpoint never blesses a forgery;
- each checkpoint is appended to ``KMI_AUDIT_CHECKPOINT_PATH`` (fsync) before its row commits,
  so a copy outside the database remembers what the trail held (and, once committed, posted to
  ``KMI_AUDIT_CHECKPOINT_WEBHOOK_URL`` when one is set).

``verify_trail`` then detects truncation, lane deletion, re-chaining and an emptied trail against
the database's own checkpoints, and with an exported file proves the database still holds
everything each exported checkpoint covered. It also cross-checks data against the trail: a
certificate shown valid although its revocation was recorded, a certificate row missing although
its issuance was recorded.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from django.conf import settings
from django.db import connection, transaction
from django.db.models import CharField
from django.db.models.functions import Cast

from pki import audit
from pki.clock import resolve
from pki.exceptions import AuditChainBroken, NotificationFailed, PKIError
from pki.keys import get_backend
from pki.keys.base import signature_verifies
from pki.keystore import generate_key
from pki.models.access import RoleGrant
from pki.models.audit import AuditCheckpoint, AuditEvent, AuditStream
from pki.models.authority import CertificateAuthority
from pki.models.blocklist import BlockedKey
from pki.models.certificate import Certificate
from pki.models.key import Key, KeyPurpose, KeyState, KeyType
from pki.notifications import send_webhook
from pki.signals import checkpoint_made
from pki.x509.csr import spki_fingerprint

log = logging.getLogger(__name__)

FORMAT = 1
GENESIS_DIGEST = "0" * 64
# pg_advisory_xact_lock key: one checkpointer at a time (b"KMIAUDCP" as a signed 64-bit number).
_LOCK_KEY = int.from_bytes(b"KMIAUDCP", "big", signed=True)
# Actions whose object is a certificate row that must exist while the event does.
ISSUANCE_ACTIONS = ("certificate.issued", "certificate.renewed", "certificate.imported")
CROSS_CHECK_LIMIT = 20  # findings of each cross-check reported (the count is always given)


# --- the audit key --------------------------------------------------------------------------------
def current_audit_key() -> Key | None:
    """The audit key that signs new checkpoints (the newest active one), if any."""
    return Key.objects.filter(purpose=KeyPurpose.AUDIT, state=KeyState.ACTIVE).order_by("-created_at").first()


def audit_key(*, actor: str, now: dt.datetime | None = None) -> Key:
    """The audit key, generated (Ed25519, in the default backend, audited) the first time."""
    key = current_audit_key()
    if key is not None:
        return key
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK_KEY])
        key = current_audit_key()
        if key is None:
            key = generate_key(
                key_type=KeyType.ED25519, purpose=KeyPurpose.AUDIT, actor=actor, scope="audit", now=now
            )
    return key


def public_key_pem(key: Key) -> str:
    """The audit key's public key as PEM (what an auditor pins with ``verify_audit --public-key``)."""
    public = serialization.load_der_public_key(bytes(key.public_key_der))
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def latest_checkpoint() -> AuditCheckpoint | None:
    """The newest checkpoint in the database (the transparency log anchors it)."""
    return AuditCheckpoint.objects.select_related("key").order_by("-number").first()


def checkpoint_file() -> Path:
    """Where checkpoints are exported (``KMI_AUDIT_CHECKPOINT_PATH``)."""
    return Path(settings.KMI_AUDIT_CHECKPOINT_PATH)


# --- making a checkpoint --------------------------------------------------------------------------
def _lane_problems(name: str, *, since: tuple[int, str], upto: tuple[int, str]) -> list[str]:
    """Verify the events of lane ``name`` after ``since`` up to ``upto`` (both ``(seq, head)``)."""
    prev_seq, prev = since
    expected = prev_seq + 1
    events = AuditEvent.objects.filter(stream=name, seq__gt=prev_seq, seq__lte=upto[0]).order_by("seq")
    for event in events.iterator(chunk_size=2000):
        problem = audit.link_problem(event, expected_seq=expected, prev=prev)
        if problem is not None:
            return [f"lane {name}: event {min(expected, event.seq)}: {problem}"]
        prev, expected = event.hash, expected + 1
    if expected != upto[0] + 1 or prev != upto[1]:
        return [f"lane {name}: its head does not match its last event"]
    return []


def _payload(
    *, number: int, now: dt.datetime, key: Key, lanes: Mapping[str, list[Any]], events: int, prev: str
) -> str:
    body = {
        "format": FORMAT,
        "number": number,
        "created_at": now.astimezone(dt.UTC).isoformat(timespec="microseconds"),
        "key": key.spki_sha256,
        "lanes": dict(lanes),
        "events": events,
        "prev": prev,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def export_line(row: AuditCheckpoint) -> str:
    """One line of the checkpoint file: payload, signature and the signer's public key (JSON)."""
    line = {
        "payload": row.payload,
        "signature": row.signature,
        "public_key": base64.b64encode(bytes(row.key.public_key_der)).decode(),
    }
    return json.dumps(line, sort_keys=True, separators=(",", ":")) + "\n"


def _append_to_file(path: Path, line: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        os.write(fd, line.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    if new:  # the new directory entry must be durable too
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def make_checkpoint(*, actor: str, now: dt.datetime | None = None) -> AuditCheckpoint:
    """Verify what was written since the last checkpoint, then sign, store and export a new one.

    Raises ``AuditChainBroken`` (and signs nothing) when an event since the last checkpoint does
    not verify or a lane lost events that checkpoint covered.
    """
    now = resolve(now)
    key = audit_key(actor=actor, now=now)
    backend = get_backend(key.backend)
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK_KEY])
        last = AuditCheckpoint.objects.order_by("-number").first()
        before: dict[str, list[Any]] = json.loads(last.payload)["lanes"] if last is not None else {}
        # One statement: a consistent snapshot of every head (each moves with its event's insert).
        heads: dict[str, tuple[int, str]] = {
            name: (seq, head)
            for name, seq, head in AuditStream.objects.filter(seq__gt=0)
            .order_by("name")
            .values_list("name", "seq", "head")
        }
        lanes = {name: [seq, head] for name, (seq, head) in heads.items()}
        problems = [
            f"lane {name} covered by the last checkpoint is gone" for name in before if name not in heads
        ]
        for name, (seq, head) in heads.items():
            prev_seq, prev_head = before.get(name, [0, audit.GENESIS])
            if seq < prev_seq:
                problems.append(f"lane {name} went back from {prev_seq} to {seq} events")
                continue
            problems += _lane_problems(name, since=(prev_seq, prev_head), upto=(seq, head))
        if problems:
            for problem in problems:
                log.error("audit checkpoint refused: %s", problem)
            raise AuditChainBroken("; ".join(problems[:5]))
        number = last.number + 1 if last is not None else 1
        total = sum(seq for seq, _ in heads.values())
        payload = _payload(
            number=number,
            now=now,
            key=key,
            lanes=lanes,
            events=total,
            prev=last.digest if last else GENESIS_DIGEST,
        )
        signature = backend.sign_data(key.handle, payload.encode(), None)
        row = AuditCheckpoint.objects.create(
            number=number,
            created_at=now,
            key=key,
            lanes=lanes,
            events=total,
            prev_digest=last.digest if last is not None else GENESIS_DIGEST,
            digest=hashlib.sha256(payload.encode()).hexdigest(),
            payload=payload,
            signature=base64.b64encode(signature).decode(),
        )
        # Exported before the row commits: a checkpoint the database keeps is always in the file.
        _append_to_file(checkpoint_file(), export_line(row))
        transaction.on_commit(lambda: _announce(row))
    return row


def _announce(row: AuditCheckpoint) -> None:
    """After commit: post the checkpoint to the webhook (if one is set), then send the signal."""
    url = getattr(settings, "KMI_AUDIT_CHECKPOINT_WEBHOOK_URL", "")
    if url:
        try:
            send_webhook(
                url=url,
                event="audit.checkpoint",
                payload=json.loads(export_line(row)),
                delivery_id=f"audit-checkpoint-{row.number}",
                timestamp=int(row.created_at.timestamp()),
            )
        except NotificationFailed as exc:
            log.error("audit checkpoint %s not posted to its webhook: %s", row.number, exc)
    checkpoint_made.send(sender=AuditCheckpoint, checkpoint_id=row.pk)


# --- verification ---------------------------------------------------------------------------------
@dataclass
class TrailReport:
    """What ``verify_trail`` found: the chain report's figures, every problem, and notes."""

    streams: int
    events: int
    checkpoints: int
    breaks: list[audit.AuditBreak] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing is broken (notes are not problems)."""
        return not self.breaks

    def problem(self, where: str, text: str, *, seq: int = 0, event_id: int | None = None) -> None:
        """Add a problem found at ``where`` (a lane, a checkpoint, the certificates)."""
        self.breaks.append(audit.AuditBreak(where, seq, event_id, text))


def _trusted_keys(pinned: Iterable[PublicKeyTypes], report: TrailReport) -> dict[str, PublicKeyTypes]:
    """SPKI SHA-256 -> public key of every key checkpoints may be signed with.

    A pinned key (an auditor's copy) is trusted as given. An audit key from the database is
    trusted as its backend says (the sealed private key's own public half: a database writer
    cannot swap it without the KEK); where this process cannot unseal it, the row's copy is used
    and a note says so.
    """
    out = {spki_fingerprint(k): k for k in pinned}  # type: ignore[arg-type]
    for key in Key.objects.filter(purpose=KeyPurpose.AUDIT):
        try:
            public = get_backend(key.backend).public_key(key.handle)
        except PKIError:
            public = serialization.load_der_public_key(bytes(key.public_key_der))
            report.notes.append(
                f"audit key {key.pk} cannot be unsealed here: checked against the database's copy "
                "of its public key (pin it with --public-key)"
            )
        out.setdefault(spki_fingerprint(public), public)  # type: ignore[arg-type]
    return out


def _signature_ok(
    payload: str, signature_b64: str, key_sha: str, trusted: Mapping[str, PublicKeyTypes]
) -> bool:
    public = trusted.get(key_sha)
    if public is None:
        return False
    try:
        signature = base64.b64decode(signature_b64, validate=True)
    except ValueError:
        return False
    return signature_verifies(public, signature, payload.encode(), None)


def _coverage(lanes: Mapping[str, list[Any]], where: str, report: TrailReport) -> None:
    """Report every lane whose covered head (seq, hash) the database no longer holds."""
    for name, (seq, head) in sorted(lanes.items()):
        row = AuditEvent.objects.filter(stream=name, seq=seq).values_list("id", "hash").first()
        if row is None:
            report.problem(
                name, f"{where} covered {seq} events of this lane; the database lost some", seq=seq
            )
        elif row[1] != head:
            report.problem(
                name,
                f"{where} covered this lane up to here; it was rewritten since",
                seq=seq,
                event_id=row[0],
            )


def _verify_database_checkpoints(trusted: Mapping[str, PublicKeyTypes], report: TrailReport) -> None:
    prev = GENESIS_DIGEST
    last: dict[str, Any] | None = None
    for expected, row in enumerate(AuditCheckpoint.objects.order_by("number").iterator(), start=1):
        where = f"checkpoint {row.number}"
        if row.number != expected:
            report.problem(where, f"checkpoints {expected}..{row.number - 1} are missing")
        try:
            body = json.loads(row.payload)
        except ValueError:
            report.problem(where, "its payload is not JSON")
            continue
        if hashlib.sha256(row.payload.encode()).hexdigest() != row.digest or body.get("prev") != prev:
            report.problem(where, "it does not chain to the checkpoint before it")
        if not _signature_ok(row.payload, row.signature, str(body.get("key")), trusted):
            report.problem(where, "its signature does not verify with a trusted audit key")
        prev, last = row.digest, body
    if last is not None:
        _coverage(last["lanes"], f"checkpoint {last['number']} (in the database)", report)


def _verify_empty_or_unanchored(report: TrailReport) -> None:
    if Key.objects.filter(purpose=KeyPurpose.AUDIT).exists():
        report.problem("checkpoints", "an audit key exists but the database holds no checkpoint")
        return
    cas, certs = CertificateAuthority.objects.count(), Certificate.objects.count()
    if report.events == 0 and (cas or certs):
        report.problem(
            "trail", f"the trail is empty but the database holds {cas} CAs and {certs} certificates"
        )
    elif report.events:
        report.notes.append("no checkpoint yet: run `manage.py checkpoint_audit`")


def _cross_check(report: TrailReport) -> None:
    """A certificate valid although its revocation is recorded; a row gone although its issuance
    is; a role grant the trail never recorded (a database writer's administrator); a key off the
    blocklist although its blocking is."""
    state: dict[str, str] = {}
    transitions = (
        AuditEvent.objects.filter(
            object_type="certificate", action__in=("certificate.revoked", "certificate.hold_released")
        )
        .order_by("timestamp", "id")
        .values_list("object_id", "action")
    )
    for object_id, action in transitions.iterator(chunk_size=5000):
        state[object_id] = action
    revoked = [int(pk) for pk, action in state.items() if action == "certificate.revoked" and pk.isdigit()]
    unrevoked: list[str] = []
    for start in range(0, len(revoked), 5000):
        unrevoked += Certificate.objects.filter(
            pk__in=revoked[start : start + 5000], revoked_at__isnull=True
        ).values_list("serial", flat=True)
    for serial in sorted(unrevoked)[:CROSS_CHECK_LIMIT]:
        report.problem("certificates", f"certificate {serial} is valid but the trail records its revocation")
    if len(unrevoked) > CROSS_CHECK_LIMIT:
        report.problem("certificates", f"{len(unrevoked)} certificates in all are valid despite a revocation")
    ids = Certificate.objects.annotate(sid=Cast("id", CharField())).values("sid")
    missing = AuditEvent.objects.filter(object_type="certificate", action__in=ISSUANCE_ACTIONS).exclude(
        object_id__in=ids
    )
    for event in missing.order_by("id")[:CROSS_CHECK_LIMIT]:
        report.problem(
            "certificates",
            f"certificate {event.details.get('serial', event.object_id)} is missing "
            f"although the trail records its {event.action.split('.')[1]}",
            seq=event.seq,
            event_id=event.pk,
        )
    granted = AuditEvent.objects.filter(object_type="rolegrant", action="access.granted").values("object_id")
    ungranted = (
        RoleGrant.objects.annotate(sid=Cast("id", CharField()))
        .exclude(sid__in=granted)
        .select_related("user", "ca", "profile")
    )
    for grant in ungranted.order_by("id")[:CROSS_CHECK_LIMIT]:
        report.problem(
            "grants",
            f"{grant.user.get_username()} holds the {grant.role} role"
            + (f" for CA {grant.ca.name}" if grant.ca is not None else "")
            + (f" and profile {grant.profile.name}" if grant.profile is not None else "")
            + " but the trail records no such grant",
        )
    blocked = BlockedKey.objects.annotate(sid=Cast("id", CharField())).values("sid")
    unblocked = AuditEvent.objects.filter(object_type="blockedkey", action="key.blocked").exclude(
        object_id__in=blocked
    )
    for event in unblocked.order_by("id")[:CROSS_CHECK_LIMIT]:
        report.problem(
            "blocklist",
            f"key {event.details.get('spki_sha256', event.object_id)} is off the blocklist although "
            "the trail records it blocked",
            seq=event.seq,
            event_id=event.pk,
        )


@dataclass(frozen=True)
class ExportedCheckpoint:
    """One line of an exported checkpoint file, parsed."""

    line: int
    payload: str
    signature: str
    body: dict[str, Any]


def read_exported(path: Path) -> tuple[list[ExportedCheckpoint], list[str]]:
    """Parse a checkpoint file; return its checkpoints and the problems of unreadable lines."""
    out: list[ExportedCheckpoint] = []
    problems: list[str] = []
    with path.open(encoding="utf-8") as handle:
        for number, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                line = json.loads(text)
                body = json.loads(line["payload"])
                out.append(ExportedCheckpoint(number, line["payload"], line["signature"], body))
            except (ValueError, KeyError, TypeError):
                problems.append(f"line {number} is not an exported checkpoint")
    return out, problems


def _verify_exported(path: Path, trusted: Mapping[str, PublicKeyTypes], report: TrailReport) -> None:
    exported, problems = read_exported(path)
    for problem in problems:
        report.problem(str(path), problem)
    if not exported:
        report.problem(str(path), "the file holds no checkpoint")
        return
    # The highest covered head of each lane proves every event before it (the hash chain does).
    highest: dict[str, tuple[int, str, int]] = {}
    in_db = set(AuditCheckpoint.objects.values_list("number", flat=True))
    for cp in exported:
        where = f"{path.name} line {cp.line} (checkpoint {cp.body.get('number')})"
        if not _signature_ok(cp.payload, cp.signature, str(cp.body.get("key")), trusted):
            report.problem(where, "its signature does not verify with a trusted audit key")
            continue
        if cp.body.get("number") not in in_db:
            report.problem(where, "this checkpoint was deleted from the database")
        for name, (seq, head) in cp.body.get("lanes", {}).items():
            if name not in highest or seq > highest[name][0]:
                highest[name] = (seq, head, int(cp.body["number"]))
    for name, (seq, head, number) in sorted(highest.items()):
        _coverage({name: [seq, head]}, f"exported checkpoint {number}", report)
    report.notes.append(f"{len(exported)} exported checkpoints checked against the database")


def verify_trail(
    *, checkpoints: Path | None = None, public_keys: Iterable[PublicKeyTypes] = ()
) -> TrailReport:
    """Verify the chains and MACs, the database's checkpoints, an exported file, and cross-checks."""
    chain = audit.verify_chain()
    report = TrailReport(
        streams=chain.streams,
        events=chain.events,
        checkpoints=AuditCheckpoint.objects.count(),
        breaks=list(chain.breaks),
    )
    trusted = _trusted_keys(public_keys, report)
    if report.checkpoints:
        _verify_database_checkpoints(trusted, report)
    else:
        _verify_empty_or_unanchored(report)
    if checkpoints is not None:
        _verify_exported(checkpoints, trusted, report)
    _cross_check(report)
    return report
