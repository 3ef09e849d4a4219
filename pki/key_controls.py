"""Key controls: an operator moves a key between the states of NIST SP 800-57 Part 1 §5.3.

::

    pre-activation ──► active ◄──► suspended
          │              │             │
          │              ▼             ▼
          │         deactivated ◄──────┘
          │              │
          ▼              ▼
      compromised (from any state but destroyed) ──► destroyed

- *suspend*: the key signs nothing (certificates, CRLs, OCSP responder certificates) until it is
  reactivated; a CA holding it stops issuing meanwhile.
- *reactivate*: a suspended key signs again.
- *deactivate*: for good; a CA holding it is disabled (``pki.lifecycle.deactivate_key``).
- *compromised*: the key signs nothing ever again. A CA key's certificates (its own, and any
  link certificate) are revoked with cACompromise, and with ``revoke_issued`` every unexpired
  certificate it signed too; its CA is disabled and an alert goes out.
- *destroy*: ``pki.destruction``; a CA key needs a second administrator.

Every change is audited; a change to a state the key is in already changes nothing.
"""

from __future__ import annotations

import datetime as dt
import enum
import logging
from dataclasses import dataclass

from django.contrib.auth.models import User
from django.db import transaction

from pki import audit
from pki.authorities import disable_cas_holding
from pki.blocklist import block_key
from pki.clock import resolve
from pki.exceptions import InvalidState, NotFound, PolicyViolation
from pki.models.authority import CAGeneration, CertificateAuthority
from pki.models.certificate import Certificate, RevocationReason
from pki.models.key import Key, KeyDestruction, KeyPurpose, KeyState

log = logging.getLogger(__name__)


class KeyAction(enum.StrEnum):
    """What ``key_state`` does (the command line's and the API's words)."""

    SUSPEND = "suspend"
    REACTIVATE = "reactivate"
    DEACTIVATE = "deactivate"
    COMPROMISED = "compromised"
    DESTROY = "destroy"


def find_key(text: str) -> Key:
    """A key by its id (UUID), its SPKI SHA-256 (hex, colons allowed), or a CA's name (its current key)."""
    import uuid

    text = text.strip()
    try:
        return Key.objects.get(pk=uuid.UUID(text))
    except (ValueError, Key.DoesNotExist):
        pass
    fingerprint = text.lower().replace(":", "")
    if len(fingerprint) == 64:
        keys = list(Key.objects.filter(spki_sha256=fingerprint)[:2])
        if len(keys) == 1:
            return keys[0]
        if len(keys) > 1:
            raise PolicyViolation(f"several keys carry SPKI {fingerprint[:16]}…: name one by its id")
    ca = CertificateAuthority.objects.filter(name=text).select_related("key").first()
    if ca is not None:
        return ca.key
    raise NotFound(f"no key {text!r} (give a key id, an SPKI SHA-256 or a CA name)")


def _locked(key: Key) -> Key:
    return Key.objects.select_for_update().get(pk=key.pk)


def suspend_key(*, key: Key, actor: str, reason: str = "", now: dt.datetime | None = None) -> Key:
    """Stop a key signing until it is reactivated (NIST SP 800-57 *suspended*)."""
    now = resolve(now)
    with transaction.atomic():
        key = _locked(key)
        if key.state == KeyState.SUSPENDED:
            return key
        if key.state != KeyState.ACTIVE:
            raise InvalidState(f"key {key.pk} is {key.state}: only an active key can be suspended")
        key.state, key.suspended_at = KeyState.SUSPENDED, now
        key.save(update_fields=["state", "suspended_at"])
        audit.record(action="key.suspended", actor=actor, obj=key, details={"reason": reason}, now=now)
    return key


def reactivate_key(*, key: Key, actor: str, reason: str = "", now: dt.datetime | None = None) -> Key:
    """Let a suspended key sign again."""
    now = resolve(now)
    with transaction.atomic():
        key = _locked(key)
        if key.state == KeyState.ACTIVE:
            return key
        if key.state != KeyState.SUSPENDED:
            why = " (a pre-activation CA key becomes active when its certificate is installed)"
            raise InvalidState(
                f"key {key.pk} is {key.state}: only a suspended key can be reactivated"
                f"{why if key.state == KeyState.PRE_ACTIVATION else ''}"
            )
        key.state, key.suspended_at = KeyState.ACTIVE, None
        key.save(update_fields=["state", "suspended_at"])
        audit.record(action="key.reactivated", actor=actor, obj=key, details={"reason": reason}, now=now)
    return key


def mark_key_compromised(
    *,
    key: Key,
    actor: str,
    reason: str = "",
    revoke_issued: bool = False,
    invalidity_date: dt.datetime | None = None,
    now: dt.datetime | None = None,
) -> list[Certificate]:
    """Mark a key compromised: it signs nothing ever again; return the certificates revoked.

    Every unexpired certificate carrying the key is revoked: with keyCompromise for an
    end-entity or OCSP key, with cACompromise for a CA key (RFC 5280 §5.3.1). For a CA key,
    ``revoke_issued`` also revokes every unexpired certificate that key signed (cACompromise),
    the CAs holding it are disabled, and an alert goes to the CA's contacts and the
    ``KMI_ALERT_*`` recipients.
    """
    from pki.revocation import revoke_certificates

    now = resolve(now)
    if invalidity_date is not None and (invalidity_date.tzinfo is None or invalidity_date > now):
        raise PolicyViolation("the invalidity date needs a time zone and cannot be in the future")
    is_ca = key.purpose == KeyPurpose.CA
    revocation = RevocationReason.CA_COMPROMISE if is_ca else RevocationReason.KEY_COMPROMISE
    with transaction.atomic():
        key = _locked(key)
        if key.state == KeyState.DESTROYED:
            raise InvalidState(f"key {key.pk} is destroyed; there is nothing left to compromise")
        previous = key.state
        if previous != KeyState.COMPROMISED:
            key.state, key.compromised_at = KeyState.COMPROMISED, now
            key.save(update_fields=["state", "compromised_at"])
        if key.spki_sha256:
            # A compromised key (a CA's too) is never certified again by any path.
            block_key(
                spki_sha256=key.spki_sha256,
                reason=revocation.value,
                source="key.compromised",
                actor=actor,
                now=now,
            )
        carrying = Certificate.objects.with_key(key.spki_sha256).filter(not_after__gt=now)
        revoked = revoke_certificates(
            certificates=carrying, reason=revocation, invalidity_date=invalidity_date, actor=actor, now=now
        )
        issued: list[Certificate] = []
        generations = list(CAGeneration.objects.filter(key=key).select_related("ca"))
        if is_ca and revoke_issued:
            for generation in generations:
                signed = Certificate.objects.filter(
                    ca=generation.ca, issuer_generation=generation.number, not_after__gt=now
                ).exclude(key_fingerprint=key.spki_sha256)
                issued += revoke_certificates(
                    certificates=signed,
                    reason=revocation,
                    invalidity_date=invalidity_date,
                    actor=actor,
                    now=now,
                )
        audit.record(
            action="key.compromised",
            actor=actor,
            obj=key,
            details={
                "previous_state": previous,
                "reason": reason,
                "spki_sha256": key.spki_sha256,
                "revoked": [c.serial for c in revoked],
                "revoked_issued": len(issued),
            },
            now=now,
        )
        if is_ca:
            disable_cas_holding(
                key, actor=actor, reason=f"its key was compromised: {reason}".rstrip(": "), now=now
            )
            for ca in {g.ca for g in generations}:
                raise_compromise_alert(ca=ca, key=key, revoked_issued=len(issued), actor=actor, now=now)
    return [*revoked, *issued]


def raise_compromise_alert(
    *, ca: CertificateAuthority, key: Key, revoked_issued: int, actor: str, now: dt.datetime
) -> None:
    """Tell the CA's contacts and the alert recipients that a CA key was compromised (one notice
    per channel, delivered by the notification workers as soon as this commits)."""
    from pki.lifecycle import plan_alert

    log.critical("CA %s: key %s marked compromised by %s", ca.name, key.pk, actor)
    plan_alert(
        ca=ca,
        event="ca.key_compromised",
        subject=f"[KMI] CA {ca.name}: its key was marked compromised",
        body=(
            f"The key {key.pk} (SPKI SHA-256 {key.spki_sha256}) of CA {ca.name} was marked compromised "
            f"by {actor} at {now:%Y-%m-%d %H:%M:%S}Z.\n\nIts CA certificate was revoked (cACompromise); "
            f"{revoked_issued} certificate(s) it issued were revoked with it. The CA signs nothing more.\n\n"
            "Remove it from every trust store that holds it, and re-issue what relied on it.\n"
        ),
        details={"key": str(key.pk), "spki_sha256": key.spki_sha256, "revoked_issued": revoked_issued},
        now=now,
    )


@dataclass(frozen=True)
class KeyStateChange:
    """What ``change_key_state`` did."""

    key: Key
    revoked: list[Certificate]
    message: str
    waiting: KeyDestruction | None = None  # a CA key's destruction waiting for a second administrator


def change_key_state(
    *,
    key: Key,
    action: KeyAction,
    actor: str,
    reason: str = "",
    revoke_issued: bool = False,
    invalidity_date: dt.datetime | None = None,
    user: User | None = None,
    now: dt.datetime | None = None,
) -> KeyStateChange:
    """Apply one key control (the command line's and the API's one entry point). ``user`` is the
    administrator acting over the API (the command line's actor is its operating-system user)."""
    from pki.destruction import destroy_or_ask
    from pki.lifecycle import deactivate_key

    now = resolve(now)
    if revoke_issued and action != KeyAction.COMPROMISED:
        raise PolicyViolation("revoking what a key signed goes with marking it compromised")
    revoked: list[Certificate] = []
    if action == KeyAction.SUSPEND:
        key = suspend_key(key=key, actor=actor, reason=reason, now=now)
    elif action == KeyAction.REACTIVATE:
        key = reactivate_key(key=key, actor=actor, reason=reason, now=now)
    elif action == KeyAction.DEACTIVATE:
        key = deactivate_key(key=key, actor=actor, reason=reason, now=now)
    elif action == KeyAction.COMPROMISED:
        revoked = mark_key_compromised(
            key=key,
            actor=actor,
            reason=reason,
            revoke_issued=revoke_issued,
            invalidity_date=invalidity_date,
            now=now,
        )
        key.refresh_from_db()
    else:
        key, waiting = destroy_or_ask(key=key, actor=actor, user=user, reason=reason, now=now)
        if waiting is not None:
            message = (
                f"destruction of CA key {key.pk} requested by {actor}: it waits for a different "
                "administrator to approve (the same command, or the API)"
            )
            return KeyStateChange(key=key, revoked=[], message=message, waiting=waiting)
    message = f"key {key.pk} ({key.purpose}, {key.key_type}) is {key.state}"
    if revoked:
        message += f"; {len(revoked)} certificate(s) revoked"
    return KeyStateChange(key=key, revoked=revoked, message=message)
