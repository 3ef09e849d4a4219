"""CA rollover and renewal: a new key (a new generation), or the same key with a new certificate.

*Rollover* (``rollover_ca``) gives a CA a new key and a certificate for it with the same subject
(so a new key identifier). A root certifies itself and is linked to its previous generation by
two self-issued link certificates (RFC 4210 §4.4 calls them newWithOld and oldWithNew): relying
parties that trust either root validate chains of either generation. An intermediate gets its
new certificate from its parent's current generation. Issuance moves to the new generation at
once or at ``at``; the previous generation keeps signing the CRLs (and the OCSP responder
certificates) of what it issued, at its own URLs, until the last such certificate expires
(``retire_generations``); then its key is deactivated, and destroyed after the retention period
by ``pki.lifecycle.destroy_keys_past_retention``.

*Renewal* (``renew_ca``) re-certifies the current key with a new validity: same generation,
same key identifier, so everything the CA issued keeps chaining to it.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from django.db import transaction
from django.db.models import Exists, OuterRef

from pki import audit
from pki.authorities import ensure_can_sign, sign_ca_certificate, signed_request, validity_window
from pki.blocklist import ensure_not_blocked
from pki.clock import resolve
from pki.exceptions import InvalidState, PolicyViolation
from pki.generations import current_generation
from pki.keys.base import issuer_public_key
from pki.keystore import generate_key
from pki.lifecycle import deactivate_key
from pki.models.authority import CAGeneration, CAState, CertificateAuthority, GenerationState
from pki.models.certificate import Certificate
from pki.models.key import Key, KeyPurpose, KeyState, KeyType
from pki.models.ocsp import OCSPResponder
from pki.recording import record_certificate
from pki.x509.builders import ca_request_info
from pki.x509.constraints import NameConstraints

log = logging.getLogger(__name__)

DAY = dt.timedelta(days=1)


def _lifetime_days(cert: Certificate) -> int:
    """The validity of ``cert`` in whole days (what a successor gets by default)."""
    return max(1, round((cert.not_after - cert.not_before) / DAY))


def _locked(ca: CertificateAuthority) -> CertificateAuthority:
    return (
        CertificateAuthority.objects.select_for_update(of=("self",))
        .select_related("key", "certificate", "parent", "parent__key", "parent__certificate")
        .get(pk=ca.pk)
    )


def _check_rollable(ca: CertificateAuthority, now: dt.datetime) -> None:
    if ca.state == CAState.EXTERNAL:
        raise InvalidState(f"CA {ca.name} is a certificate only: KMI holds no key to roll over")
    if ca.state == CAState.PENDING:
        raise InvalidState(
            f"CA {ca.name} waits for its certificate (install_ca_cert) and cannot roll over yet"
        )
    ensure_can_sign(ca, now=now)
    if ca.parent is not None and ca.parent.holds_key:
        ensure_can_sign(ca.parent, now=now)


def parent_is_outside(ca: CertificateAuthority) -> bool:
    """True when the CA's parent is a certificate-only CA (an offline root): a new certificate for
    the CA comes through a CSR (``install_ca_cert``), not from KMI."""
    return ca.parent is not None and not ca.parent.holds_key


def _link(
    *,
    ca: CertificateAuthority,
    subject: x509.Name,
    subject_key: Key,
    issuer: CAGeneration,
    not_before: dt.datetime,
    not_after: dt.datetime,
    actor: str,
    now: dt.datetime,
) -> Certificate:
    """A self-issued certificate of ``subject_key`` signed by generation ``issuer`` of root ``ca``."""
    cert = sign_ca_certificate(
        subject=subject,
        public_key=subject_key.public_key(),
        signer=issuer.key,
        issuer_certificate=issuer.x509_certificate(),
        issuer_name=issuer.repository_name,
        not_before=not_before,
        not_after=not_after,
        path_length=ca.path_length,
        constraints=NameConstraints.from_json(ca.name_constraints),
        actor=actor,
    )
    return record_certificate(cert, ca=ca, key=subject_key, now=now, issuer_generation=issuer.number)


def _issued_event(
    cert: Certificate, issuer: CertificateAuthority, actor: str, now: dt.datetime, **extra: Any
) -> None:
    audit.record(
        action="certificate.issued",
        actor=actor,
        obj=cert,
        details={"serial": cert.serial, "subject": cert.subject, "ca": issuer.name, "is_ca": True, **extra},
        scope=f"ca:{issuer.pk}",
        now=now,
    )


def _request_from_outside(
    *, ca: CertificateAuthority, generation: CAGeneration, subject: x509.Name, actor: str, now: dt.datetime
) -> None:
    """A new generation under a parent outside KMI (an offline root): its key waits,
    pre-activation, for the certificate its issuer signs from this request (install_ca_cert)."""
    key = generation.key
    key.state, key.activated_at = KeyState.PRE_ACTIVATION, None
    key.save(update_fields=["state", "activated_at"])
    info = ca_request_info(
        subject=subject,
        spki_der=bytes(key.public_key_der),
        path_length=ca.path_length,
        name_constraints=NameConstraints.from_json(ca.name_constraints).extension(),
        public_key=issuer_public_key(key.public_key()),
    )
    generation.request_der = signed_request(key, info).public_bytes(serialization.Encoding.DER)
    generation.save(force_insert=True)
    audit.record(
        action="ca.rolled_over",
        actor=actor,
        obj=ca,
        details={
            "generation": generation.number,
            "previous_generation": ca.generation,
            "key_type": key.key_type,
            "backend": key.backend,
            "waits_for_certificate": True,
            "activates_at": generation.activates_at.isoformat() if generation.activates_at else None,
        },
        scope=f"ca:{ca.pk}",
        now=now,
    )


def rollover_ca(
    *,
    ca: CertificateAuthority,
    actor: str,
    key_type: KeyType | str | None = None,
    backend: str | None = None,
    at: dt.datetime | None = None,
    validity_days: int | None = None,
    from_generation: int | None = None,
    now: dt.datetime | None = None,
) -> CAGeneration:
    """Give ``ca`` a new key and certificate (same subject); issuance moves to it now or at ``at``.

    ``key_type`` and ``backend`` default to the current key's; ``validity_days`` to the current
    certificate's lifetime (an intermediate's is capped by its parent's notAfter). A root also
    gets its two link certificates. Under a parent outside KMI (an offline root) the new
    generation waits with a CSR (``request_der``) for ``install_ca_certificate``. Returns the new
    generation.

    ``from_generation`` makes a retry safe: when generation ``from_generation + 1`` exists
    already (the first attempt's answer was lost), it is returned instead of a second rollover.
    """
    now = resolve(now)
    if at is not None and at.tzinfo is None:
        raise PolicyViolation("the rollover time needs a time zone (e.g. 2027-01-01T00:00:00Z)")
    activate_now = at is None or at <= now
    with transaction.atomic():
        ca = _locked(ca)
        if from_generation is not None:
            done = CAGeneration.objects.filter(ca=ca, number=from_generation + 1).first()
            if done is not None:
                done.ca = ca
                return done
            if ca.generation != from_generation:
                raise InvalidState(f"CA {ca.name} is at generation {ca.generation}, not {from_generation}")
        _check_rollable(ca, now)
        pending = CAGeneration.objects.filter(ca=ca, state=GenerationState.PENDING).first()
        if pending is not None:
            raise InvalidState(
                f"CA {ca.name} already has generation {pending.number} waiting to take over at "
                f"{pending.activates_at:%Y-%m-%d %H:%M:%S}Z"
            )
        old = current_generation(ca)
        if old.pk is None:
            old.save(force_insert=True)  # a CA recorded without its generation row
        old_cert = ca.own_certificate()
        subject = ca.x509_certificate().subject
        new_key = generate_key(
            key_type=key_type or ca.key.key_type,
            purpose=KeyPurpose.CA,
            actor=actor,
            backend=backend or ca.key.backend,
            scope=f"ca:{ca.pk}",
            now=now,
        )
        number = old.number + 1
        days = validity_days if validity_days is not None else _lifetime_days(old_cert)
        parent = ca.parent
        constraints = NameConstraints.from_json(ca.name_constraints)
        generation = CAGeneration(
            ca=ca,
            number=number,
            key=new_key,
            state=GenerationState.PENDING,
            activates_at=at if not activate_now else None,
            created_at=now,
        )
        if parent_is_outside(ca):
            _request_from_outside(ca=ca, generation=generation, subject=subject, actor=actor, now=now)
            return generation
        if parent is None:
            not_before, not_after = validity_window(validity_days=days, now=now)
            signed = sign_ca_certificate(
                subject=subject,
                public_key=new_key.public_key(),
                signer=new_key,
                issuer_certificate=None,
                issuer_name=None,
                not_before=not_before,
                not_after=not_after,
                path_length=ca.path_length,
                constraints=constraints,
                actor=actor,
            )
            generation.certificate = record_certificate(
                signed, ca=ca, key=new_key, now=now, issuer_generation=number
            )
            # Both links live as long as both roots do: no longer than the older one.
            link_until = min(old_cert.not_after, generation.certificate.not_after)
            generation.link_from_previous = _link(
                ca=ca,
                subject=subject,
                subject_key=new_key,
                issuer=old,
                not_before=not_before,
                not_after=link_until,
                actor=actor,
                now=now,
            )
            generation.save(force_insert=True)  # the next link is signed by this generation
            generation.link_to_previous = _link(
                ca=ca,
                subject=subject,
                subject_key=old.key,
                issuer=generation,
                not_before=not_before,
                not_after=link_until,
                actor=actor,
                now=now,
            )
            generation.save(update_fields=["link_to_previous"])
            for link in (generation.link_from_previous, generation.link_to_previous):
                _issued_event(link, ca, actor, now, link=True)
        else:
            not_before, not_after = validity_window(
                validity_days=days, now=now, cap=parent.own_certificate().not_after
            )
            signed = sign_ca_certificate(
                subject=subject,
                public_key=new_key.public_key(),
                signer=parent.key,
                issuer_certificate=parent.x509_certificate(),
                issuer_name=parent.repository_name,
                not_before=not_before,
                not_after=not_after,
                path_length=ca.path_length,
                constraints=constraints,
                actor=actor,
            )
            generation.certificate = record_certificate(signed, ca=parent, key=new_key, now=now)
            generation.save(force_insert=True)
            _issued_event(generation.certificate, parent, actor, now)
        assert generation.certificate is not None
        audit.record(
            action="ca.rolled_over",
            actor=actor,
            obj=ca,
            details={
                "generation": number,
                "previous_generation": old.number,
                "serial": generation.certificate.serial,
                "key_type": new_key.key_type,
                "backend": new_key.backend,
                "not_after": generation.certificate.not_after.isoformat(),
                "activates_at": None if activate_now else at.isoformat() if at else None,
                "link_from_previous": getattr(generation.link_from_previous, "serial", None),
                "link_to_previous": getattr(generation.link_to_previous, "serial", None),
            },
            scope=f"ca:{ca.pk}",
            now=now,
        )
        if activate_now:
            activate_generation(ca=ca, generation=generation, actor=actor, now=now)
    return generation


def activate_generation(
    *, ca: CertificateAuthority, generation: CAGeneration, actor: str, now: dt.datetime
) -> None:
    """Move issuance of ``ca`` (locked by the caller) to ``generation``."""
    previous = ca.generation
    CAGeneration.objects.filter(ca=ca, state=GenerationState.CURRENT).update(state=GenerationState.PREVIOUS)
    generation.state = GenerationState.CURRENT
    generation.activated_at = now
    generation.save(update_fields=["state", "activated_at"])
    ca.key = generation.key
    ca.certificate = generation.certificate
    ca.generation = generation.number
    ca.save(update_fields=["key", "certificate", "generation"])
    audit.record(
        action="ca.generation_activated",
        actor=actor,
        obj=ca,
        details={"generation": generation.number, "previous_generation": previous},
        scope=f"ca:{ca.pk}",
        now=now,
    )


def activate_due_generations(*, actor: str, now: dt.datetime | None = None) -> list[tuple[str, int]]:
    """Move issuance to every pending generation whose time has come; return (CA, generation)."""
    now = resolve(now)
    done: list[tuple[str, int]] = []
    due = CAGeneration.objects.filter(
        state=GenerationState.PENDING, activates_at__lte=now, certificate__isnull=False
    )
    for pk in list(due.values_list("pk", flat=True)):
        with transaction.atomic():
            generation = due.select_for_update(skip_locked=True).filter(pk=pk).first()
            if generation is None:
                continue
            ca = _locked(generation.ca)
            generation.ca = ca
            activate_generation(ca=ca, generation=generation, actor=actor, now=now)
        done.append((ca.name, generation.number))
    return done


def _answers_for_something(now: dt.datetime) -> Exists:
    """An unexpired certificate the generation signed, other than its own and its OCSP responders'."""
    return Exists(
        Certificate.objects.filter(
            ca_id=OuterRef("ca_id"),
            issuer_generation=OuterRef("number"),
            not_after__gt=now,
        )
        .exclude(key_fingerprint=OuterRef("key__spki_sha256"))
        .exclude(key__purpose=KeyPurpose.OCSP)
    )


def retire_generations(*, actor: str, now: dt.datetime | None = None) -> list[tuple[str, int]]:
    """Retire every previous generation that has nothing left to answer for: everything it signed
    (but its own OCSP responders) has expired. Its key and responder keys are deactivated
    (NIST SP 800-57: they sign nothing more), and destroyed after ``KMI_KEY_RETENTION_DAYS``."""
    now = resolve(now)
    done: list[tuple[str, int]] = []
    idle = CAGeneration.objects.filter(state=GenerationState.PREVIOUS).exclude(_answers_for_something(now))
    for pk in list(idle.values_list("pk", flat=True)):
        with transaction.atomic():
            generation = idle.select_for_update(skip_locked=True, of=("self",)).filter(pk=pk).first()
            if generation is None:
                continue
            generation.state = GenerationState.RETIRED
            generation.retired_at = now
            generation.save(update_fields=["state", "retired_at"])
            ca = generation.ca
            audit.record(
                action="ca.generation_retired",
                actor=actor,
                obj=ca,
                details={"generation": generation.number, "key": str(generation.key_id)},
                scope=f"ca:{ca.pk}",
                now=now,
            )
            reason = f"CA {ca.name} generation {generation.number} retired: all it issued has expired"
            deactivate_key(key=generation.key, actor=actor, reason=reason, now=now)
            for responder in OCSPResponder.objects.filter(ca=ca, generation=generation.number).select_related(
                "key"
            ):
                deactivate_key(key=responder.key, actor=actor, reason=reason, now=now)
        done.append((ca.name, generation.number))
    return done


def update_generations(*, actor: str, now: dt.datetime | None = None) -> dict[str, list[tuple[str, int]]]:
    """The scheduled job: activate the generations due, retire the idle ones."""
    now = resolve(now)
    return {
        "activated": activate_due_generations(actor=actor, now=now),
        "retired": retire_generations(actor=actor, now=now),
    }


def renew_ca(
    *,
    ca: CertificateAuthority,
    actor: str,
    validity_days: int | None = None,
    now: dt.datetime | None = None,
) -> Certificate:
    """Re-certify the CA's current key with a new validity (same subject, same key identifier).

    A root signs itself again; an intermediate gets a new certificate from its parent's current
    generation (capped by the parent's notAfter). The previous certificate stays valid until it
    expires: relying parties may hold either. Returns the new certificate.
    """
    now = resolve(now)
    # Before the transaction, so that a refusal's audit event is kept (sign_ca_certificate checks too).
    ensure_not_blocked(
        public_key=issuer_public_key(ca.key.public_key()), actor=actor, path="renew_ca", now=now
    )
    with transaction.atomic():
        ca = _locked(ca)
        _check_rollable(ca, now)
        old_cert = ca.own_certificate()
        days = validity_days if validity_days is not None else _lifetime_days(old_cert)
        constraints = NameConstraints.from_json(ca.name_constraints)
        parent = ca.parent
        issuer = parent if parent is not None else ca
        not_before, not_after = validity_window(
            validity_days=days,
            now=now,
            cap=parent.own_certificate().not_after if parent is not None else None,
        )
        if not_after <= old_cert.not_after:
            why = " (its parent's certificate ends first)" if parent is not None else ""
            raise PolicyViolation(
                f"the renewed certificate of CA {ca.name} would end at {not_after:%Y-%m-%d}, not after "
                f"the current one ({old_cert.not_after:%Y-%m-%d}){why}: renew the parent first or "
                "ask for more days"
            )
        signed = sign_ca_certificate(
            subject=ca.x509_certificate().subject,
            public_key=ca.key.public_key(),
            signer=issuer.key,
            issuer_certificate=parent.x509_certificate() if parent is not None else None,
            issuer_name=parent.repository_name if parent is not None else None,
            not_before=not_before,
            not_after=not_after,
            path_length=ca.path_length,
            constraints=constraints,
            actor=actor,
        )
        cert = record_certificate(signed, ca=issuer, key=ca.key, now=now)
        generation = current_generation(ca)
        generation.certificate = cert
        if generation.pk is None:
            generation.save(force_insert=True)
        else:
            generation.save(update_fields=["certificate"])
        ca.certificate = cert
        ca.save(update_fields=["certificate"])
        if parent is not None:
            _issued_event(cert, parent, actor, now, renewed_from=old_cert.serial)
        audit.record(
            action="ca.renewed",
            actor=actor,
            obj=ca,
            details={
                "generation": ca.generation,
                "serial": cert.serial,
                "previous_serial": old_cert.serial,
                "not_after": cert.not_after.isoformat(),
            },
            scope=f"ca:{ca.pk}",
            now=now,
        )
    return cert
