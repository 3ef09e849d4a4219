"""Revocation use cases: revoke a certificate, release a hold, revoke every certificate of a key."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from django.db import transaction
from django.db.models import QuerySet

from pki import audit
from pki.blocklist import block_key, normalise_fingerprint
from pki.clock import resolve
from pki.crl import mark_stale
from pki.exceptions import InvalidState, PolicyViolation
from pki.models.certificate import Certificate, RevocationReason
from pki.models.key import Key, KeyState
from pki.models.ocsp import OCSPResponse
from pki.ocsp import PRESIGNED_HASHES, STORE
from pki.signals import certificate_status_changed


def _announce(certs: Iterable[Certificate], *, now: dt.datetime) -> None:
    """Mark the CRLs stale in the caller's transaction, and announce the change after commit.

    The stale mark commits with the status change or not at all, so a revocation that committed
    always reaches the next CRL run (within KMI_CRL_REVOCATION_DELAY), whatever crashes after
    the commit; the signal (OCSP pre-signing) may be lost in a crash and is caught up by the
    periodic refresh.
    """
    certs = list(certs)
    cert_ids = [c.pk for c in certs]
    ca_ids = sorted({c.ca_id for c in certs if c.ca_id is not None})
    if cert_ids:
        mark_stale(certificate_ids=cert_ids, now=now)
        # The pre-signed OCSP responses of these certificates tell the old status: they expire
        # with this transaction, so the database path never serves them again (even while Redis
        # is unreachable), and their Redis copies are dropped after the commit. Where Redis
        # cannot be reached, pki.ocsp_refresh drops them (expired rows) when it is back.
        serials: dict[int, list[str]] = {}
        for c in certs:
            if c.ca_id is not None:
                serials.setdefault(c.ca_id, []).append(c.serial)
        for ca_id, ca_serials in serials.items():  # the (ca, serial, hash) unique index finds them
            OCSPResponse.objects.filter(ca_id=ca_id, serial__in=ca_serials, next_update__gt=now).update(
                next_update=now
            )
        keys = [(c.ca_id, c.serial, algorithm) for c in certs if c.ca_id for algorithm in PRESIGNED_HASHES]
        transaction.on_commit(lambda: STORE.delete(keys))
        transaction.on_commit(
            lambda: certificate_status_changed.send(
                sender=Certificate, certificate_ids=cert_ids, ca_ids=ca_ids
            )
        )


def _revoke_locked(
    cert: Certificate,
    *,
    reason: RevocationReason,
    invalidity_date: dt.datetime | None,
    actor: str,
    now: dt.datetime,
) -> bool:
    """Apply a revocation to a row locked by the caller; return False when nothing changed."""
    if cert.revoked_at is not None:
        current = RevocationReason(cert.revocation_reason)
        if current == reason and (invalidity_date is None or invalidity_date == cert.invalidity_date):
            return False  # idempotent repeat
        permanent_from_hold = current == RevocationReason.CERTIFICATE_HOLD
        # RFC 5280 §5.3.1: a reason may be raised to keyCompromise after the fact.
        escalation = reason == RevocationReason.KEY_COMPROMISE
        if not (permanent_from_hold or escalation):
            raise InvalidState(
                f"certificate {cert.serial} is already revoked ({current}); only keyCompromise may follow"
            )
    else:
        cert.revoked_at = now
    previous = cert.revocation_reason
    cert.revocation_reason = reason
    if invalidity_date is not None:
        cert.invalidity_date = invalidity_date
    cert.save(update_fields=["revoked_at", "revocation_reason", "invalidity_date"])
    audit.record(
        action="certificate.revoked",
        actor=actor,
        obj=cert,
        details={
            "serial": cert.serial,
            "reason": reason.value,
            "previous_reason": previous or None,
            "invalidity_date": cert.invalidity_date.isoformat() if cert.invalidity_date else None,
        },
        scope=f"ca:{cert.ca_id}",
        now=now,
    )
    if reason == RevocationReason.KEY_COMPROMISE and cert.key_fingerprint:
        # The key is compromised, not only this certificate: no path certifies it again.
        block_key(
            spki_sha256=cert.key_fingerprint,
            reason=reason.value,
            source="certificate.revoked",
            ca_id=cert.ca_id,
            actor=actor,
            now=now,
        )
    return True


def _check_reason(
    reason: RevocationReason | str, invalidity_date: dt.datetime | None, now: dt.datetime
) -> RevocationReason:
    try:
        value = RevocationReason(reason)
    except ValueError:
        names = ", ".join(RevocationReason.values)
        raise PolicyViolation(f"unknown revocation reason {reason!r} (use one of: {names})") from None
    if value == RevocationReason.REMOVE_FROM_CRL:
        raise PolicyViolation("removeFromCRL is not a revocation reason: release the hold instead")
    if invalidity_date is not None:
        if invalidity_date.tzinfo is None:
            raise PolicyViolation("the invalidity date needs a time zone")
        if invalidity_date > now:
            raise PolicyViolation("the invalidity date cannot be in the future")
    return value


def revoke_certificate(
    *,
    certificate: Certificate,
    reason: RevocationReason | str,
    actor: str,
    invalidity_date: dt.datetime | None = None,
    now: dt.datetime | None = None,
) -> Certificate:
    """Revoke (or put on hold) a certificate; committed before it returns; idempotent; audited."""
    now = resolve(now)
    value = _check_reason(reason, invalidity_date, now)
    with transaction.atomic():
        cert = Certificate.objects.select_for_update().get(pk=certificate.pk)
        if cert.not_after <= now and cert.revoked_at is None:
            raise InvalidState(f"certificate {cert.serial} has expired; there is nothing to revoke")
        if _revoke_locked(cert, reason=value, invalidity_date=invalidity_date, actor=actor, now=now):
            _announce([cert], now=now)
    return cert


def release_hold(*, certificate: Certificate, actor: str, now: dt.datetime | None = None) -> Certificate:
    """Take a certificate off hold (RFC 5280 removeFromCRL): it is valid again."""
    now = resolve(now)
    with transaction.atomic():
        cert = Certificate.objects.select_for_update().get(pk=certificate.pk)
        if cert.revocation_reason != RevocationReason.CERTIFICATE_HOLD:
            state = cert.revocation_reason or "not revoked"
            raise InvalidState(f"certificate {cert.serial} is not on hold ({state})")
        held_since = cert.revoked_at
        cert.revoked_at = None
        cert.revocation_reason = ""
        cert.invalidity_date = None
        cert.save(update_fields=["revoked_at", "revocation_reason", "invalidity_date"])
        audit.record(
            action="certificate.hold_released",
            actor=actor,
            obj=cert,
            details={"serial": cert.serial, "held_since": held_since.isoformat() if held_since else None},
            scope=f"ca:{cert.ca_id}",
            now=now,
        )
        _announce([cert], now=now)
    return cert


def revoke_certificates(
    *,
    certificates: QuerySet[Certificate],
    reason: RevocationReason | str,
    actor: str,
    invalidity_date: dt.datetime | None = None,
    now: dt.datetime | None = None,
) -> list[Certificate]:
    """Revoke every certificate of ``certificates`` (in the caller's transaction), each audited;
    return those whose state changed. Revoked ones stay as they are unless ``reason`` raises them
    to keyCompromise or cACompromise replaces a hold."""
    now = resolve(now)
    value = _check_reason(reason, invalidity_date, now)
    changed: list[Certificate] = []
    for cert in certificates.select_for_update().order_by("pk"):
        already = cert.revoked_at is not None
        other = cert.revocation_reason not in (RevocationReason.CERTIFICATE_HOLD, value)
        if already and other and value != RevocationReason.KEY_COMPROMISE:
            continue  # already revoked for another reason: it stays revoked as it is
        if _revoke_locked(cert, reason=value, invalidity_date=invalidity_date, actor=actor, now=now):
            changed.append(cert)
    _announce(changed, now=now)
    return changed


def revoke_key(
    *,
    spki_sha256: str,
    actor: str,
    reason: RevocationReason | str = RevocationReason.KEY_COMPROMISE,
    invalidity_date: dt.datetime | None = None,
    now: dt.datetime | None = None,
) -> list[Certificate]:
    """Revoke every unexpired certificate carrying this public key and mark the key compromised."""
    now = resolve(now)
    value = _check_reason(reason, invalidity_date, now)
    fingerprint = normalise_fingerprint(spki_sha256)
    changed: list[Certificate] = []
    with transaction.atomic():
        certs = list(
            Certificate.objects.select_for_update()
            .with_key(fingerprint)
            .filter(not_after__gt=now)
            .order_by("pk")
        )
        for cert in certs:
            if _revoke_locked(cert, reason=value, invalidity_date=invalidity_date, actor=actor, now=now):
                changed.append(cert)
        if value == RevocationReason.KEY_COMPROMISE:
            # Blocked even when no certificate carries it yet: it is never certified.
            block_key(spki_sha256=fingerprint, reason=value.value, source="revoke_key", actor=actor, now=now)
            for key in (
                Key.objects.select_for_update()
                .filter(spki_sha256=fingerprint)
                .exclude(state__in=[KeyState.COMPROMISED, KeyState.DESTROYED])
            ):
                key.state = KeyState.COMPROMISED
                key.compromised_at = now
                key.save(update_fields=["state", "compromised_at"])
                audit.record(
                    action="key.compromised",
                    actor=actor,
                    obj=key,
                    details={"spki_sha256": fingerprint},
                    now=now,
                )
        audit.record(
            action="key.revoked",
            actor=actor,
            object_type="spki",
            object_id=fingerprint,
            details={"reason": value.value, "certificates": [c.serial for c in changed]},
            now=now,
        )
        _announce(changed, now=now)
    return certs
