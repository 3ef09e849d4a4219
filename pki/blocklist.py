"""The compromised-key blocklist: a key revoked for keyCompromise is never certified again.

``block_key`` is called by every path that learns a key is compromised (``revoke_key``, any
certificate revoked with keyCompromise, a key marked compromised); ``ensure_not_blocked`` is
called by every issuance use case (submit, approve, issue, renew, ACME finalize) before it
signs, and audits each refusal as ``issuance.refused_blocked_key``.
"""

from __future__ import annotations

import datetime as dt

from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from django.db import transaction

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
    return row


def is_blocked(spki_sha256: str) -> bool:
    """True when this SPKI SHA-256 is on the blocklist."""
    return BlockedKey.objects.filter(spki_sha256=spki_sha256.lower()).exists()


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
    entry = BlockedKey.objects.filter(spki_sha256=fingerprint).only("reason", "created_at").first()
    if entry is None:
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
