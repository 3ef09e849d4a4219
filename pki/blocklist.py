"""The compromised-key blocklist: a key revoked for keyCompromise is never certified again.

``block_key`` is called by every path that learns a key is compromised (``revoke_key``, any
certificate revoked with keyCompromise, a key marked compromised). Every issuance use case
(submit, approve, issue, renew, ACME finalize, EST, SCEP) refuses a blocked key before it signs,
and audits each refusal as ``issuance.refused_blocked_key``.

What decides is the statement that records a certificate: ``pki.recording.record_issuance``
writes nothing for a blocked key, in the same statement as the insert, so no key blocked between
a check and the write is ever recorded. The check before signing is a courtesy that spares the
signature: ``ensure_not_blocked`` asks the database (paths that store a request without issuing
it, or issue later); ``check_before_signing`` reads this process's copy of the blocklist, for the
paths that sign and record at once, where one round trip per certificate is a fifth of the cost.
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from django.db import connection, transaction

from pki import audit
from pki.clock import resolve
from pki.exceptions import KeyBlocked, PolicyViolation
from pki.models.blocklist import BlockedKey
from pki.x509.csr import spki_fingerprint

REFUSED_ACTION = "issuance.refused_blocked_key"


def normalise_fingerprint(spki_sha256: str) -> str:
    """Return a SPKI SHA-256 as 64 lower-case hex digits (colons and case ignored); refuse anything else."""
    value = spki_sha256.strip().lower().replace(":", "")
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise PolicyViolation(f"{spki_sha256!r} is not a SPKI SHA-256 (64 hex digits)")
    return value


def block_key(
    *,
    spki_sha256: str,
    reason: str,
    source: str,
    actor: str,
    ca_id: int | None = None,
    now: dt.datetime | None = None,
) -> BlockedKey:
    """Put a public key on the blocklist (idempotent: the first entry stays); audited as ``key.blocked``."""
    now = resolve(now)
    fingerprint = normalise_fingerprint(spki_sha256)
    with transaction.atomic():
        row, created = BlockedKey.objects.get_or_create(
            spki_sha256=fingerprint,
            defaults={"reason": reason, "source": source, "ca_id": ca_id, "actor": actor, "created_at": now},
        )
        if created:
            audit.record(
                action="key.blocked",
                actor=actor,
                obj=row,
                details={"spki_sha256": fingerprint, "reason": reason, "source": source},
                now=now,
            )
            # This process's copy learns it at commit (the others from their next issuance).
            transaction.on_commit(lambda: _copy.add(fingerprint))
    return row


def is_blocked(spki_sha256: str) -> bool:
    """True when this SPKI SHA-256 is on the blocklist."""
    return BlockedKey.objects.filter(spki_sha256=spki_sha256.lower()).exists()


@dataclass(frozen=True)
class _Entry:
    reason: str
    created_at: dt.datetime


def _lookup(fingerprint: str) -> _Entry | None:
    found = BlockedKey.objects.filter(spki_sha256=fingerprint).values_list("reason", "created_at").first()
    return _Entry(*found) if found is not None else None


class _Copy:
    """This process's copy of the blocklist (PostgreSQL), read by ``check_before_signing``.

    Read whole on first use; each issuance statement reports the highest row id of the table
    (``note_highest``), and the copy reads the rows past its own highest before its next check
    (or reads it all again when the table has fewer rows than it knew: a test's rollback). A row
    committed out of id order is missed until a statement refuses its key (``reload``).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: set[str] = set()
        self._highest: int | None = None  # of the rows read; None: never read
        self._reported: int | None = None  # by the last issuance statement
        self._loaded = False

    def contains(self, fingerprint: str) -> bool:
        with self._lock:
            if not self._loaded or self._reported != self._highest:
                self._refresh()
            return fingerprint in self._keys

    def _refresh(self) -> None:
        rows = BlockedKey.objects.order_by("id").values_list("id", "spki_sha256")
        grow = self._loaded and self._highest is not None and (self._reported or 0) > self._highest
        if grow:
            rows = rows.filter(id__gt=self._highest)
        else:
            self._keys = set()
        for pk, fingerprint in rows:
            self._keys.add(fingerprint)
            self._highest = pk
        if not grow and not self._keys:
            self._highest = None
        self._reported, self._loaded = self._highest, True

    def note_highest(self, highest: int | None) -> None:
        with self._lock:
            self._reported = highest

    def add(self, fingerprint: str) -> None:
        with self._lock:
            self._keys.add(fingerprint)

    def discard(self, fingerprint: str) -> None:
        with self._lock:
            self._keys.discard(fingerprint)

    def reload(self) -> None:
        with self._lock:
            self._loaded = False


_copy = _Copy()
note_highest = _copy.note_highest


def reload_copy() -> None:
    """Read this process's copy of the blocklist again, whole, at its next check (tests)."""
    _copy.reload()


def check_before_signing(*, spki_sha256: str, actor: str, path: str, now: dt.datetime | None = None) -> None:
    """``ensure_not_blocked`` for a path that signs and records at once (``record_issuance``).

    On PostgreSQL it reads this process's copy, not the database: the recording statement
    decides. A key blocked since this process's last issuance can be signed once, in memory:
    its statement writes nothing, the refusal is audited (``after_refused_statement``) and
    nothing signed leaves the process. For callers in autocommit (the REST and EST fast paths,
    ``issue_certificate``): a caller inside its own transaction asks ``ensure_not_blocked``
    before it, or a refusal's event would go with its rollback.
    """
    fingerprint = spki_sha256.lower()
    if connection.vendor == "postgresql" and not _copy.contains(fingerprint):
        return
    ensure_not_blocked(spki_sha256=fingerprint, actor=actor, path=path, now=now)


def after_refused_statement(*, spki_sha256: str, actor: str, now: dt.datetime) -> None:
    """A recording statement wrote nothing: ``KeyBlocked`` (audited) when its key is why.

    The copy is read again whole. (Inside a caller's transaction the refusal's event goes with
    the caller's rollback; the paths that sign and record at once run in autocommit.)
    """
    _copy.reload()
    ensure_not_blocked(spki_sha256=spki_sha256, actor=actor, path="record_issuance", now=now)


def ensure_not_blocked(
    *,
    actor: str,
    path: str,
    public_key: CertificatePublicKeyTypes | None = None,
    spki_sha256: str = "",
    now: dt.datetime | None = None,
) -> None:
    """Raise ``KeyBlocked`` when the key is on the blocklist, after auditing the refusal.

    The refusal event is written in its own (nested) transaction before the error is raised:
    callers check before they open the transaction of the change, so the event is kept.
    """
    fingerprint = spki_sha256.lower() if spki_sha256 else ""
    if not fingerprint:
        if public_key is None:
            raise ValueError("ensure_not_blocked needs a public_key or a spki_sha256")
        fingerprint = spki_fingerprint(public_key)
    entry = _lookup(fingerprint)
    if entry is None:
        _copy.discard(fingerprint)  # a row this process saw in a transaction that rolled back
        return
    now = resolve(now)
    with transaction.atomic():
        audit.record(
            action=REFUSED_ACTION,
            actor=actor,
            object_type="spki",
            object_id=fingerprint,
            details={"spki_sha256": fingerprint, "path": path, "actor": actor, "reason": entry.reason},
            now=now,
        )
    raise KeyBlocked(
        f"the key {fingerprint[:16]}… was revoked for {entry.reason} on "
        f"{entry.created_at:%Y-%m-%d}: it is never certified again; use a new key"
    )
