"""CA use cases: create a root, create an intermediate under a parent."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from django.db import transaction

from pki import audit
from pki.blocklist import ensure_not_blocked
from pki.clock import resolve
from pki.conf import pki_settings
from pki.exceptions import CAUnavailable, InvalidCSR, InvalidState, PolicyViolation
from pki.keys import get_backend, signature_hash
from pki.keys.base import issuer_public_key
from pki.keystore import generate_key
from pki.models.authority import CAGeneration, CAState, CertificateAuthority, GenerationState
from pki.models.certificate import Certificate
from pki.models.key import Key, KeyPurpose, KeyState, KeyType
from pki.recording import record_certificate
from pki.x509 import der
from pki.x509.builders import ca_certificate_builder
from pki.x509.constraints import NameConstraints
from pki.x509.serials import random_serial

CA_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


def check_ca_name(name: str) -> None:
    """Refuse a CA name that is malformed, taken, or would collide with a CRL partition URL."""
    if not CA_NAME_RE.match(name):
        raise PolicyViolation(
            f"CA name {name!r} must be 1-63 lower-case letters, digits or hyphens (it appears in URLs)"
        )
    if CertificateAuthority.objects.filter(name=name).exists():
        raise InvalidState(f"a CA named {name!r} already exists")
    stem, _, number = name.rpartition("-")
    if number.isdigit() and CertificateAuthority.objects.filter(name=stem, crl_shards__gt=1).exists():
        # /crl/<stem>-<n>.crl is partition n of CA <stem>'s CRL (pki.locations.crl_url).
        raise InvalidState(f"CA name {name!r} would collide with a CRL partition URL of CA {stem!r}")


def sign_ca_certificate(
    *,
    subject: x509.Name,
    public_key: PublicKeyTypes,
    signer: Key,
    issuer_certificate: x509.Certificate | None,
    issuer_name: str | None,
    not_before: dt.datetime,
    not_after: dt.datetime,
    path_length: int | None,
    constraints: NameConstraints,
    actor: str,
) -> x509.Certificate:
    """Sign a CA certificate for ``public_key`` with ``signer`` through its KeyBackend.

    Without ``issuer_certificate`` it is self-signed (a root); otherwise its AKI, CRL
    Distribution Point and AIA name the issuing generation (``issuer_name``, a repository name).
    Also used for link certificates at a root rollover and for CSRs signed for other CAs.
    A key on the compromised-key blocklist is refused (``KeyBlocked``, audited for ``actor``;
    callers inside a transaction check before it, so that the refusal's event is kept).
    """
    certified = issuer_public_key(public_key)
    ensure_not_blocked(public_key=certified, actor=actor, path="sign_ca_certificate")
    builder = ca_certificate_builder(
        subject=subject,
        public_key=certified,
        serial=random_serial(),
        not_before=not_before,
        not_after=not_after,
        path_length=path_length,
        name_constraints=constraints.extension(),
        issuer=issuer_certificate,
        issuer_ca_name=issuer_name,
    )
    backend = get_backend(signer.backend)
    return backend.sign_certificate(signer.handle, builder, signature_hash(signer.key_type))


def validity_window(
    *, validity_days: int, now: dt.datetime, cap: dt.datetime | None = None
) -> tuple[dt.datetime, dt.datetime]:
    """notBefore (backdated by ``KMI_BACKDATE_SECONDS``) and notAfter of a new certificate (a CA's
    or an end entity's), never past ``cap`` (the issuer's notAfter). RFC 5280 §4.1.2.5 counts
    both ends: ``validity_days`` exactly, not a second more. The one place this is computed."""
    if validity_days < 1:
        raise PolicyViolation("validity must be at least one day")
    not_before = now - dt.timedelta(seconds=pki_settings().backdate_seconds)
    not_after = not_before + dt.timedelta(days=validity_days, seconds=-1)
    if cap is not None:
        not_after = min(not_after, cap)
    return not_before, not_after


def _sign_ca(
    *,
    name: str,
    subject: x509.Name,
    key: Key,
    signer: Key,
    issuer: CertificateAuthority | None,
    validity_days: int,
    path_length: int | None,
    constraints: NameConstraints,
    actor: str,
    now: dt.datetime,
) -> x509.Certificate:
    not_before, not_after = validity_window(
        validity_days=validity_days,
        now=now,
        cap=issuer.own_certificate().not_after if issuer is not None else None,
    )
    return sign_ca_certificate(
        subject=subject,
        public_key=key.public_key(),
        signer=signer,
        issuer_certificate=issuer.x509_certificate() if issuer is not None else None,
        issuer_name=issuer.repository_name if issuer is not None else None,
        not_before=not_before,
        not_after=not_after,
        path_length=path_length,
        constraints=constraints,
        actor=actor,
    )


def _create_ca(
    *,
    name: str,
    subject: x509.Name,
    parent: CertificateAuthority | None,
    key_type: KeyType | str,
    validity_days: int,
    path_length: int | None,
    constraints: NameConstraints,
    backend: str | None,
    actor: str,
    now: dt.datetime,
) -> CertificateAuthority:
    """Generate the CA key, sign its certificate (self-signed without ``parent``), record, audit
    (``plan_ca`` checked the request)."""
    with transaction.atomic():
        key = generate_key(key_type=key_type, purpose=KeyPurpose.CA, actor=actor, backend=backend, now=now)
        ca = CertificateAuthority.objects.create(
            name=name,
            parent=parent,
            key=key,
            path_length=path_length,
            name_constraints=constraints.to_json(),
            created_at=now,
        )
        cert = _sign_ca(
            name=name,
            subject=subject,
            key=key,
            signer=parent.key if parent is not None else key,
            issuer=parent,
            validity_days=validity_days,
            path_length=path_length,
            constraints=constraints,
            actor=actor,
            now=now,
        )
        # A root's certificate is in its own records; an intermediate's in its parent's (and CRL).
        issuer = parent if parent is not None else ca
        ca.certificate = record_certificate(cert, ca=issuer, key=key, now=now)
        ca.save(update_fields=["certificate"])
        CAGeneration.objects.create(
            ca=ca,
            number=1,
            key=key,
            certificate=ca.certificate,
            state=GenerationState.CURRENT,
            activated_at=now,
            created_at=now,
        )
        details: dict[str, Any] = {
            "subject": subject.rfc4514_string(),
            "root": parent is None,
            "serial": ca.certificate.serial,
            "key_type": key.key_type,
            "not_after": ca.certificate.not_after.isoformat(),
        }
        if parent is not None:
            details["parent"] = parent.name
        audit.record(action="ca.created", actor=actor, obj=ca, details=details, scope=f"ca:{ca.pk}", now=now)
        if parent is not None:
            audit.record(
                action="certificate.issued",
                actor=actor,
                obj=ca.certificate,
                details={
                    "serial": ca.certificate.serial,
                    "subject": ca.certificate.subject,
                    "ca": parent.name,
                    "is_ca": True,
                },
                scope=f"ca:{parent.pk}",
                now=now,
            )
    return ca


def plan_ca(
    *,
    name: str,
    parent: CertificateAuthority | None,
    key_type: KeyType | str,
    validity_days: int,
    path_length: int | None,
    name_constraints: Mapping[str, Any] | None,
    now: dt.datetime,
) -> tuple[int | None, NameConstraints]:
    """Check a new CA before anything is made (name free, key type known, parent able to sign and
    allowing the path length and constraints); return its path length and name constraints."""
    check_ca_name(name)
    if key_type not in KeyType.values:
        raise PolicyViolation(f"unknown key type {key_type!r} (known: {', '.join(KeyType.values)})")
    if validity_days < 1:
        raise PolicyViolation("validity must be at least one day")
    constraints = NameConstraints.from_json(name_constraints)
    if parent is None:
        return path_length, constraints
    ensure_can_sign(parent, now=now)
    parent_constraints = NameConstraints.from_json(parent.name_constraints)
    return child_path_length(parent, path_length), parent_constraints.narrowed_by(constraints)


def create_root_ca(
    *,
    name: str,
    subject: x509.Name,
    key_type: KeyType | str = KeyType.EC_P256,
    validity_days: int = 3650,
    path_length: int | None = None,
    name_constraints: Mapping[str, Any] | None = None,
    backend: str | None = None,
    actor: str,
    now: dt.datetime | None = None,
) -> CertificateAuthority:
    """Create a self-signed root CA with a new key."""
    now = resolve(now)
    path_length, constraints = plan_ca(
        name=name,
        parent=None,
        key_type=key_type,
        validity_days=validity_days,
        path_length=path_length,
        name_constraints=name_constraints,
        now=now,
    )
    return _create_ca(
        name=name,
        subject=subject,
        parent=None,
        key_type=key_type,
        validity_days=validity_days,
        path_length=path_length,
        constraints=constraints,
        backend=backend,
        actor=actor,
        now=now,
    )


def create_intermediate_ca(
    *,
    name: str,
    parent: CertificateAuthority,
    subject: x509.Name,
    key_type: KeyType | str = KeyType.EC_P256,
    validity_days: int = 1825,
    path_length: int | None = None,
    name_constraints: Mapping[str, Any] | None = None,
    backend: str | None = None,
    actor: str,
    now: dt.datetime | None = None,
) -> CertificateAuthority:
    """Create an intermediate CA signed by ``parent``, within its path length and name constraints."""
    now = resolve(now)
    path_length, constraints = plan_ca(
        name=name,
        parent=parent,
        key_type=key_type,
        validity_days=validity_days,
        path_length=path_length,
        name_constraints=name_constraints,
        now=now,
    )
    return _create_ca(
        name=name,
        subject=subject,
        parent=parent,
        key_type=key_type,
        validity_days=validity_days,
        path_length=path_length,
        constraints=constraints,
        backend=backend,
        actor=actor,
        now=now,
    )


def child_path_length(parent: CertificateAuthority, requested: int | None) -> int | None:
    """The pathLenConstraint of a CA certificate ``parent`` signs (RFC 5280 §4.2.1.9).

    ``requested`` must fit what the parent allows; without it the child gets the most the
    parent allows (one less than its own, or unlimited under an unlimited parent).
    """
    if parent.path_length is None:
        return requested
    if parent.path_length == 0:
        raise PolicyViolation(f"CA {parent.name} has path length 0: it cannot sign a CA")
    if requested is None:
        return parent.path_length - 1
    if requested > parent.path_length - 1:
        raise PolicyViolation(
            f"path length {requested} exceeds what {parent.name} allows ({parent.path_length - 1})"
        )
    return requested


def ensure_can_sign(ca: CertificateAuthority, *, now: dt.datetime) -> Certificate:
    """Raise ``CAUnavailable`` unless ``ca`` is active, unexpired, unrevoked and its key active."""
    if ca.state != CAState.ACTIVE:
        raise CAUnavailable(f"CA {ca.name} is {ca.state}")
    cert = ca.own_certificate()
    if cert.not_after <= now:
        raise CAUnavailable(f"CA {ca.name} expired at {cert.not_after:%Y-%m-%d %H:%M:%S}Z")
    if cert.revoked_at is not None:
        raise CAUnavailable(f"CA {ca.name}'s certificate is revoked")
    if ca.key.state != KeyState.ACTIVE:
        raise CAUnavailable(f"CA {ca.name}'s key is {ca.key.state}")
    return cert


def set_ca_state(
    *,
    ca: CertificateAuthority,
    state: CAState | str,
    actor: str,
    reason: str = "",
    now: dt.datetime | None = None,
) -> CertificateAuthority:
    """Enable (``active``) or disable a CA; a disabled CA issues nothing and takes no requests (its
    CRLs and OCSP go on). Audited; idempotent. A retired CA stays retired; a CA whose key is not
    active cannot be enabled."""
    now = resolve(now)
    value = CAState(state)
    if value == CAState.RETIRED:
        raise PolicyViolation("a CA is retired by its rollover, not by a state change")
    with transaction.atomic():
        row = CertificateAuthority.objects.select_for_update(of=("self",)).select_related("key").get(pk=ca.pk)
        if row.state == value:
            return row
        if row.state == CAState.RETIRED:
            raise InvalidState(f"CA {row.name} is retired: it only signs CRLs")
        if value == CAState.ACTIVE and row.key.state != KeyState.ACTIVE:
            raise InvalidState(f"CA {row.name}'s key is {row.key.state}: the CA cannot be enabled")
        previous = row.state
        row.state = value
        row.save(update_fields=["state"])
        audit.record(
            action="ca.enabled" if value == CAState.ACTIVE else "ca.disabled",
            actor=actor,
            obj=row,
            details={"previous_state": previous, "reason": reason},
            scope=f"ca:{row.pk}",
            now=now,
        )
    return row


def signed_request(key: Key, info: bytes) -> x509.CertificateSigningRequest:
    """Sign a CertificationRequestInfo through the key's backend and check the result (a CSR)."""
    algorithm = signature_hash(key.key_type)
    signature = get_backend(key.backend).sign_data(key.handle, info, algorithm)
    csr = x509.load_der_x509_csr(
        der.sequence(info, der.signature_algorithm(key.public_key(), algorithm), der.bit_string(signature))
    )
    if not csr.is_signature_valid:  # a backend fault must not leave with the request
        raise InvalidCSR("the request KMI signed does not verify")
    return csr


def disable_cas_holding(key: Key, *, actor: str, reason: str, now: dt.datetime) -> None:
    """Disable (audited) every CA whose current key is ``key``: it issues nothing more."""
    for ca in (
        CertificateAuthority.objects.select_for_update().filter(key=key).exclude(state=CAState.DISABLED)
    ):
        previous = ca.state
        ca.state = CAState.DISABLED
        ca.save(update_fields=["state"])
        audit.record(
            action="ca.disabled",
            actor=actor,
            obj=ca,
            details={"previous_state": previous, "reason": reason},
            scope=f"ca:{ca.pk}",
            now=now,
        )
