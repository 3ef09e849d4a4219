"""Escrow recovery: a key KMI kept (a server-generated key under a profile with ``escrow``) handed
out again, once, as a PKCS#12, when two distinct key recovery officers agree.

1. An officer asks (``request_key_recovery``) with a reason. Keys that were never escrowed, or
   that are destroyed, are refused: there is nothing to recover.
2. A different officer approves (``approve_key_recovery``); the one who asked cannot.
3. The officer who asked downloads it once (``deliver_recovered_key``) under a password of their
   choosing; a second download is refused. The key stays escrowed.

Administrators hold no exception: only the ``key_recovery_officer`` role recovers keys
(``pki.access``), and every step re-reads the officer's current grants. Every step is audited.
"""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from django.contrib.auth.models import User
from django.db import transaction

from pki import audit
from pki.access import Action, can, forget_grants
from pki.clock import resolve
from pki.exceptions import AlreadyDelivered, InvalidState, PolicyViolation
from pki.issuance import chain_for
from pki.models.certificate import Certificate
from pki.models.key import Key, KeyRecovery, KeyState, TwoPersonState
from pki.serverkeys import (
    check_pkcs12_password,
    pkcs12_bundle,
    receive_sealed,
    seal_private_key,
    storing_backend,
)


def _check_officer(user: User, key: Key) -> None:
    forget_grants(user)  # the officer's grants as they are now, not as a request cached them
    if not can(user, Action.RECOVER_KEY, key):
        raise PolicyViolation(f"{user.get_username()} is not a key recovery officer")


def request_key_recovery(
    *, key: Key, requester: User, actor: str, reason: str, now: dt.datetime | None = None
) -> KeyRecovery:
    """An officer asks to recover an escrowed key; a different officer must approve."""
    now = resolve(now)
    if not reason.strip():
        raise PolicyViolation("a key recovery needs a reason (it is kept in the audit trail)")
    if not key.escrow:
        raise PolicyViolation(f"key {key.pk} was never escrowed: KMI kept no copy to recover")
    if key.state == KeyState.DESTROYED:
        raise InvalidState(f"key {key.pk} is destroyed: there is nothing left to recover")
    _check_officer(requester, key)
    with transaction.atomic():
        row = KeyRecovery.objects.create(
            key=key, reason=reason.strip(), requester=requester, requested_by=actor, created_at=now
        )
        audit.record(
            action="key.recovery_requested",
            actor=actor,
            obj=key,
            details={"recovery": row.pk, "reason": row.reason},
            now=now,
        )
    return row


def approve_key_recovery(
    *, recovery: KeyRecovery, approver: User, actor: str, now: dt.datetime | None = None
) -> KeyRecovery:
    """A second officer approves; the officer who asked may then download the key once."""
    now = resolve(now)
    with transaction.atomic():
        row = KeyRecovery.objects.select_for_update().select_related("key").get(pk=recovery.pk)
        if row.state != TwoPersonState.PENDING:
            raise InvalidState(f"key recovery {row.pk} is {row.state}")
        if approver.pk == row.requester_id:
            raise PolicyViolation("the officer who asked for a key recovery cannot also approve it")
        _check_officer(approver, row.key)
        row.state, row.approver, row.approved_by, row.approved_at = (
            TwoPersonState.APPROVED,
            approver,
            actor,
            now,
        )
        row.save(update_fields=["state", "approver", "approved_by", "approved_at"])
        audit.record(
            action="key.recovery_approved",
            actor=actor,
            obj=row.key,
            details={"recovery": row.pk, "requested_by": row.requested_by},
            now=now,
        )
    return row


def _take(
    *, recovery_id: int, actor: str, user_id: int | None, now: dt.datetime
) -> tuple[CertificateIssuerPrivateKeyTypes, list[x509.Certificate], str]:
    """Take an approved recovery's one download (caller's transaction): the key, its chain, a name."""
    row = (
        KeyRecovery.objects.select_for_update(of=("self",))
        .select_related("key", "requester")
        .get(pk=recovery_id)
    )
    if row.state == TwoPersonState.DONE:
        raise AlreadyDelivered(f"key recovery {row.pk} was downloaded at {row.delivered_at:%c}")
    if row.state != TwoPersonState.APPROVED:
        raise InvalidState(f"key recovery {row.pk} is {row.state}: it needs a second officer's approval")
    if user_id is None or user_id != row.requester_id or row.requester is None:
        raise PolicyViolation("only the officer who asked for a key recovery downloads it")
    _check_officer(row.requester, row.key)
    key = row.key
    if key.state == KeyState.DESTROYED or not key.handle:
        raise InvalidState(f"key {key.pk} was destroyed")
    private_key = storing_backend(key.backend).export_private_key(key.handle)
    certificate = Certificate.objects.filter(key=key).select_related("ca").order_by("-not_after").first()
    chain = list(chain_for(certificate)) if certificate is not None and certificate.ca is not None else []
    row.state, row.delivered_at = TwoPersonState.DONE, now
    row.save(update_fields=["state", "delivered_at"])
    audit.record(
        action="key.recovered",
        actor=actor,
        obj=key,
        details={
            "recovery": row.pk,
            "approved_by": row.approved_by,
            "serial": getattr(certificate, "serial", None),
        },
        now=now,
    )
    return private_key, chain, str(key.pk)


def hand_over_recovered_key(*, recovery_id: int, actor: str, user_id: int, recipient: str) -> dict[str, str]:
    """The signing worker's part of ``deliver_recovered_key``: take the download, return the key
    sealed to ``recipient`` (a web process's one-time X25519 key)."""
    now = resolve(None)
    with transaction.atomic():
        private_key, _chain, _name = _take(recovery_id=recovery_id, actor=actor, user_id=user_id, now=now)
    return seal_private_key(private_key, recipient)


def deliver_recovered_key(
    *, recovery: KeyRecovery, user: User, password: str, actor: str, now: dt.datetime | None = None
) -> bytes:
    """The approved key, once, as an AES-256 PKCS#12 under ``password`` (to the officer who asked).

    Where the KEK is not (``KMI_SIGNING=worker``) a signing worker hands the key over sealed to
    this process, as for server-generated keys (``pki.serverkeys``).
    """
    from pki.signing import signs_here

    now = resolve(now)
    check_pkcs12_password(password)
    if not signs_here():
        private_key = receive_sealed(
            "hand_over_recovered_key", user=user, recovery_id=recovery.pk, actor=actor, user_id=user.pk
        )
        certificate = Certificate.objects.filter(key_id=recovery.key_id).order_by("-not_after").first()
        chain = list(chain_for(certificate)) if certificate is not None and certificate.ca is not None else []
        return pkcs12_bundle(private_key, chain, str(recovery.key_id), password)
    with transaction.atomic():
        private_key, chain, name = _take(recovery_id=recovery.pk, actor=actor, user_id=user.pk, now=now)
        return pkcs12_bundle(private_key, chain, name, password)
