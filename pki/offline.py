"""CAs whose certificate comes from outside: offline roots, external parents, CSRs for other CAs.

- ``request_ca_certificate`` makes a CA's key and a CSR only (``init_ca --csr-out``): the CA
  waits (state *pending*, key *pre-activation*) until ``install_ca_certificate`` brings the
  certificate its issuer signed, checked against the key, the subject and the constraints asked
  for. Its issuer becomes its parent: a KMI CA, or one recorded as a certificate only.
- ``sign_ca_request`` is the other side: a KMI CA (typically a root on an instance kept
  offline) signs another CA's CSR.
- ``record_external_ca`` keeps a CA certificate KMI holds no key for (a parent or a trust
  anchor of chains): it signs nothing, and KMI publishes nothing for it but its certificate and
  the CRLs given to it (``pki.importing.import_crl``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID
from django.db import transaction

from pki import audit
from pki.authorities import (
    check_ca_name,
    child_path_length,
    ensure_can_sign,
    sign_ca_certificate,
    signed_request,
    validity_window,
)
from pki.clock import resolve
from pki.exceptions import InvalidCSR, InvalidState, PolicyViolation
from pki.keys import key_type_of
from pki.keys.base import issuer_public_key
from pki.keystore import generate_key
from pki.models.authority import CAGeneration, CAState, CertificateAuthority, GenerationState
from pki.models.certificate import Certificate
from pki.models.key import Key, KeyPurpose, KeyState, KeyType
from pki.recording import record_certificate
from pki.x509.builders import ca_request_info
from pki.x509.constraints import NameConstraints
from pki.x509.csr import load_csr, spki_der, spki_fingerprint

MAX_REQUEST_BYTES = 64 * 1024
CLOCK_SKEW = dt.timedelta(minutes=5)


# --- a KMI CA that asks an outside issuer ----------------------------------------------------------


def request_ca_certificate(
    *,
    name: str,
    subject: x509.Name,
    key_type: KeyType | str = KeyType.EC_P256,
    path_length: int | None = None,
    name_constraints: Mapping[str, Any] | None = None,
    backend: str | None = None,
    actor: str,
    now: dt.datetime | None = None,
) -> tuple[CertificateAuthority, x509.CertificateSigningRequest]:
    """Make a CA's key and a CSR for it; the CA waits for its certificate (``install_ca_certificate``).

    The key stays *pre-activation* (NIST SP 800-57) until the certificate is installed; it signs
    only the request itself (proof of possession).
    """
    now = resolve(now)
    check_ca_name(name)
    if not list(subject):
        raise PolicyViolation("a CA needs a subject")
    constraints = NameConstraints.from_json(name_constraints)
    with transaction.atomic():
        key = generate_key(
            key_type=key_type, purpose=KeyPurpose.CA, actor=actor, backend=backend, activate=False, now=now
        )
        ca = CertificateAuthority.objects.create(
            name=name,
            key=key,
            state=CAState.PENDING,
            path_length=path_length,
            name_constraints=constraints.to_json(),
            created_at=now,
        )
        public_key = issuer_public_key(key.public_key())
        info = ca_request_info(
            subject=subject,
            spki_der=bytes(key.public_key_der),
            path_length=path_length,
            name_constraints=constraints.extension(),
            public_key=public_key,
        )
        csr = signed_request(key, info)
        CAGeneration.objects.create(
            ca=ca,
            number=1,
            key=key,
            state=GenerationState.PENDING,
            request_der=csr.public_bytes(serialization.Encoding.DER),
            created_at=now,
        )
        audit.record(
            action="ca.requested",
            actor=actor,
            obj=ca,
            details={
                "subject": subject.rfc4514_string(),
                "key_type": key.key_type,
                "backend": key.backend,
                "path_length": path_length,
                "name_constraints": constraints.to_json(),
            },
            scope=f"ca:{ca.pk}",
            now=now,
        )
    return ca, csr


def _basic_constraints(cert: x509.Certificate) -> x509.BasicConstraints:
    try:
        ext = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    except x509.ExtensionNotFound:
        raise PolicyViolation("the certificate has no basicConstraints: it is not a CA certificate") from None
    if not ext.value.ca:
        raise PolicyViolation("the certificate says cA=FALSE: it is not a CA certificate")
    return ext.value


def check_ca_certificate(cert: x509.Certificate, *, now: dt.datetime, signs_crls: bool = True) -> None:
    """Refuse a certificate that cannot serve as a CA's: not a CA, no keyCertSign (or cRLSign
    when KMI is to sign its CRLs), expired or not valid yet."""
    _basic_constraints(cert)
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    if usage is not None:
        if not usage.key_cert_sign:
            raise PolicyViolation("the certificate's keyUsage lacks keyCertSign: it cannot sign certificates")
        if signs_crls and not usage.crl_sign:
            raise PolicyViolation("the certificate's keyUsage lacks cRLSign: KMI could not sign its CRLs")
    if cert.not_valid_after_utc <= now:
        raise PolicyViolation(f"the certificate expired at {cert.not_valid_after_utc:%Y-%m-%d %H:%M:%S}Z")
    if cert.not_valid_before_utc > now + CLOCK_SKEW:
        raise PolicyViolation(
            f"the certificate is not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M:%S}Z"
        )


def issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """True when ``issuer``'s key signed ``cert`` (and the names chain)."""
    try:
        cert.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def _issuer_generation(cert: x509.Certificate) -> tuple[CertificateAuthority, int] | None:
    """The KMI CA generation (with a certificate) that signed ``cert``, if KMI knows it."""
    candidates = CAGeneration.objects.filter(
        certificate__isnull=False, certificate__subject=cert.issuer.rfc4514_string()
    ).select_related("ca", "certificate")
    for generation in candidates:
        assert generation.certificate is not None
        if issued_by(cert, generation.certificate.x509()):
            return generation.ca, generation.number
    return None


def _ca_of_certificate(cert: x509.Certificate) -> CertificateAuthority | None:
    """The KMI CA (any generation) whose certificate is ``cert`` or has its subject and key."""
    key = spki_fingerprint(issuer_public_key(cert.public_key()))
    generation = (
        CAGeneration.objects.filter(
            certificate__subject=cert.subject.rfc4514_string(), certificate__key_fingerprint=key
        )
        .select_related("ca")
        .first()
    )
    return generation.ca if generation is not None else None


def _external_name(cert: x509.Certificate) -> str:
    """A free CA name derived from the certificate's CN (``Example Root CA`` → ``example-root-ca``)."""
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    base = (
        re.sub(r"[^a-z0-9]+", "-", str(cns[0].value).lower() if cns else "").strip("-")[:56] or "external-ca"
    )
    if not base[0].isalnum():
        base = f"ca-{base}"
    name, n = base, 1
    while CertificateAuthority.objects.filter(name=name).exists() or name.rpartition("-")[2].isdigit():
        n += 1
        name = f"{base}-x{n}"
    return name


def _public_key_row(cert: x509.Certificate, *, now: dt.datetime) -> Key:
    public_key = issuer_public_key(cert.public_key())
    return Key.objects.create(
        id=uuid.uuid4(),
        key_type=key_type_of(public_key),
        purpose=KeyPurpose.EXTERNAL,
        backend="",
        handle="",
        public_key_der=spki_der(public_key),
        spki_sha256=spki_fingerprint(public_key),
        state=KeyState.ACTIVE,
        created_at=now,
        activated_at=now,
    )


def record_external_ca(
    *,
    certificate: x509.Certificate,
    actor: str,
    name: str | None = None,
    parent: CertificateAuthority | None = None,
    now: dt.datetime | None = None,
) -> CertificateAuthority:
    """Record a CA certificate KMI holds no key for (a parent or trust anchor); idempotent.

    A self-signed certificate is a root; otherwise ``parent`` (or the KMI CA that signed it)
    must have issued it, so the records never hold a certificate nobody vouches for.
    """
    now = resolve(now)
    known = _ca_of_certificate(certificate)
    if known is not None:
        if name is not None and known.name != name:
            raise InvalidState(f"KMI has this CA certificate already, as CA {known.name}")
        return known
    if certificate.issuer == certificate.subject and issued_by(certificate, certificate):
        issuer_generation = None
    else:
        found = (
            (parent, parent.generation)
            if parent is not None and issued_by(certificate, parent.x509_certificate())
            else _issuer_generation(certificate)
        )
        if found is None:
            raise PolicyViolation(
                f"KMI does not know the issuer {certificate.issuer.rfc4514_string()!r} of this CA "
                "certificate: import the issuer first (import_ca --cert), or give the chain"
            )
        parent, issuer_generation = found
    _basic_constraints(certificate)
    name = name or _external_name(certificate)
    check_ca_name(name)
    with transaction.atomic():
        key = _public_key_row(certificate, now=now)
        ca = CertificateAuthority.objects.create(
            name=name,
            parent=parent if issuer_generation is not None else None,
            key=key,
            state=CAState.EXTERNAL,
            path_length=_basic_constraints(certificate).path_length,
            name_constraints=NameConstraints.of_certificate(certificate).to_json(),
            created_at=now,
        )
        record_imported_ca(
            ca=ca,
            certificate=certificate,
            issuer=parent if issuer_generation is not None and parent is not None else ca,
            issuer_generation=issuer_generation or 1,
            key_note="none (certificate only)",
            actor=actor,
            now=now,
        )
    return ca


def record_imported_ca(
    *,
    ca: CertificateAuthority,
    certificate: x509.Certificate,
    issuer: CertificateAuthority,
    issuer_generation: int,
    key_note: str,
    actor: str,
    now: dt.datetime,
) -> None:
    """Record an imported CA's certificate (under ``issuer``, itself for a root) as its first
    generation, and audit the import (``ca.imported``; ``key_note`` says where its key is)."""
    row = record_certificate(certificate, ca=issuer, key=ca.key, now=now, issuer_generation=issuer_generation)
    ca.certificate = row
    ca.save(update_fields=["certificate"])
    CAGeneration.objects.create(
        ca=ca,
        number=1,
        key=ca.key,
        certificate=row,
        state=GenerationState.CURRENT,
        activated_at=now,
        created_at=now,
    )
    audit.record(
        action="ca.imported",
        actor=actor,
        obj=ca,
        details={
            "subject": row.subject,
            "serial": row.serial,
            "fingerprint_sha256": row.fingerprint_sha256,
            "key": key_note,
            "backend": ca.key.backend or None,
            "parent": issuer.name if issuer.pk != ca.pk else None,
        },
        scope=f"ca:{ca.pk}",
        now=now,
    )


def parent_for(
    cert: x509.Certificate, chain: Sequence[x509.Certificate], actor: str, now: dt.datetime
) -> tuple[CertificateAuthority, int]:
    """The CA generation that signed ``cert``: known to KMI, or recorded from ``chain`` (issuer
    first, each certificate recorded as a certificate-only CA unless KMI knows it)."""
    for issuer, above in itertools.pairwise(chain):
        if not issued_by(issuer, above):
            raise PolicyViolation(
                f"the chain is broken: {issuer.subject.rfc4514_string()!r} is not signed by the "
                "next certificate"
            )
    parent: CertificateAuthority | None = None
    for issuer in reversed(chain):  # the top first, so each one's parent is known when it comes
        parent = record_external_ca(certificate=issuer, actor=actor, parent=parent, now=now)
    found = _issuer_generation(cert)
    if found is None:
        detail = "the chain's first certificate" if chain else "any CA KMI knows (give --chain)"
        raise PolicyViolation(f"the certificate is not signed by {detail}")
    return found


def _certificate_row(
    certificate: x509.Certificate,
    *,
    parent: CertificateAuthority,
    key: Key,
    issuer_generation: int,
    now: dt.datetime,
) -> Certificate:
    """The certificate's row: recorded now, or already there when a KMI CA of this instance
    signed the request (``sign_ca_request``) — then it learns which key it certifies."""
    der = certificate.public_bytes(serialization.Encoding.DER)
    existing = Certificate.objects.filter(fingerprint_sha256=hashlib.sha256(der).hexdigest()).first()
    if existing is None:
        return record_certificate(
            certificate, ca=parent, key=key, now=now, issuer_generation=issuer_generation
        )
    if existing.ca_id != parent.pk:
        raise InvalidState(f"KMI recorded this certificate under another CA than {parent.name}")
    existing.key = key
    existing.save(update_fields=["key"])
    return existing


def install_ca_certificate(
    *,
    ca: CertificateAuthority,
    certificate: x509.Certificate,
    actor: str,
    chain: Sequence[x509.Certificate] = (),
    now: dt.datetime | None = None,
) -> CertificateAuthority:
    """Install the certificate an outside issuer signed for a CA waiting for it; the CA then issues.

    The certificate must carry the CA's key and the subject it asked for, be a CA certificate
    (keyCertSign and cRLSign), be valid now, and keep the path length and name constraints the
    CA asked for (KMI adopts them when the request left them open). Its issuer must be a CA KMI
    knows, or come with ``chain`` (issuer first, up to a root), whose certificates KMI records
    as certificate-only CAs.
    """
    now = resolve(now)
    with transaction.atomic():
        ca = CertificateAuthority.objects.select_for_update(of=("self",)).select_related("key").get(pk=ca.pk)
        generation = (
            CAGeneration.objects.filter(ca=ca, certificate__isnull=True, state=GenerationState.PENDING)
            .select_related("key")
            .first()
        )
        if generation is None:
            raise InvalidState(f"CA {ca.name} is not waiting for a certificate")
        request = x509.load_der_x509_csr(bytes(generation.request_der))
        key = generation.key
        if spki_fingerprint(issuer_public_key(certificate.public_key())) != key.spki_sha256:
            raise PolicyViolation(f"the certificate is for another key than CA {ca.name}'s")
        if certificate.subject != request.subject:
            raise PolicyViolation(
                f"the certificate names {certificate.subject.rfc4514_string()!r}, "
                f"the CA asked for {request.subject.rfc4514_string()!r}"
            )
        check_ca_certificate(certificate, now=now)
        granted = _basic_constraints(certificate).path_length
        if ca.path_length is not None and granted != ca.path_length:
            raise PolicyViolation(
                f"the certificate allows path length {granted}, the CA asked for {ca.path_length}"
            )
        asked = NameConstraints.from_json(ca.name_constraints)
        given = NameConstraints.of_certificate(certificate)
        if asked and given.to_json() != asked.to_json():
            raise PolicyViolation(
                f"the certificate's name constraints {given.to_json()} are not the ones asked "
                f"for {asked.to_json()}"
            )
        parent, issuer_generation = parent_for(certificate, chain, actor, now)
        if parent.pk == ca.pk:
            raise PolicyViolation(
                "a CA cannot install a certificate it signed itself: use init_ca without --csr-out"
            )
        row = _certificate_row(
            certificate, parent=parent, key=key, issuer_generation=issuer_generation, now=now
        )
        generation.certificate = row
        generation.save(update_fields=["certificate"])
        if key.state == KeyState.PRE_ACTIVATION:  # NIST SP 800-57: certified, the key may now sign
            key.state, key.activated_at = KeyState.ACTIVE, now
            key.save(update_fields=["state", "activated_at"])
            audit.record(
                action="key.activated",
                actor=actor,
                obj=key,
                details={"reason": f"CA {ca.name}'s certificate installed"},
                now=now,
            )
        if ca.certificate_id is not None:
            # A rollover under an outside parent: issuance moves now, or at the time it set.
            from pki.rotation import activate_generation

            if generation.activates_at is None or generation.activates_at <= now:
                activate_generation(ca=ca, generation=generation, actor=actor, now=now)
        else:
            generation.state, generation.activated_at = GenerationState.CURRENT, now
            generation.save(update_fields=["state", "activated_at"])
            ca.key = key
            ca.parent = parent
            ca.certificate = row
            ca.generation = generation.number
            ca.state = CAState.ACTIVE
            ca.path_length = granted
            ca.name_constraints = given.to_json()
            ca.save(
                update_fields=[
                    "parent",
                    "certificate",
                    "generation",
                    "state",
                    "path_length",
                    "name_constraints",
                ]
            )
        audit.record(
            action="ca.certificate_installed",
            actor=actor,
            obj=ca,
            details={
                "generation": generation.number,
                "serial": row.serial,
                "subject": row.subject,
                "issuer": parent.name,
                "not_after": row.not_after.isoformat(),
                "path_length": granted,
            },
            scope=f"ca:{ca.pk}",
            now=now,
        )
    return ca


# --- a KMI CA that signs another CA's request -------------------------------------------------------


def _requested(csr: x509.CertificateSigningRequest) -> tuple[int | None, NameConstraints]:
    """The path length and name constraints a CA request asks for (its extensionRequest)."""
    try:
        extensions = csr.extensions
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as exc:
        raise InvalidCSR(f"the request's extensions do not parse: {exc}") from None
    path_length = None
    try:
        basic = extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        pass
    else:
        if not basic.ca:
            raise PolicyViolation("the request asks for cA=FALSE: sign it under a profile (sign_csr) instead")
        path_length = basic.path_length
    try:
        constraints = NameConstraints.from_extension(
            extensions.get_extension_for_class(x509.NameConstraints).value
        )
    except x509.ExtensionNotFound:
        constraints = NameConstraints()
    return path_length, constraints


def sign_ca_request(
    *,
    parent: CertificateAuthority,
    csr: bytes | str,
    actor: str,
    path_length: int | None = None,
    validity_days: int = 1825,
    now: dt.datetime | None = None,
) -> Certificate:
    """Sign a CA certificate for another CA's CSR (an online KMI's, or any CA's); audited.

    The subject and key come from the request (its signature must verify; the key must be one
    KMI accepts for CAs). The path length is ``path_length``, else the request's, within what
    ``parent`` allows; the name constraints are the request's, narrowed into ``parent``'s.
    The certificate is recorded under ``parent`` (so it can be revoked on its CRL).
    """
    now = resolve(now)
    ensure_can_sign(parent, now=now)
    request = load_csr(csr, max_bytes=MAX_REQUEST_BYTES)
    try:
        signature_ok = request.is_signature_valid
        public_key = issuer_public_key(request.public_key())
    except (ValueError, TypeError) as exc:
        raise InvalidCSR(f"the request's key or signature cannot be checked: {exc}") from None
    if not signature_ok:
        raise InvalidCSR("the request's signature does not verify (proof of possession failed)")
    key_type_of(public_key)  # refuses weak or unknown keys
    if not list(request.subject):
        raise PolicyViolation("the request has an empty subject: a CA needs a name")
    asked_length, asked_constraints = _requested(request)
    granted = child_path_length(parent, path_length if path_length is not None else asked_length)
    constraints = NameConstraints.from_json(parent.name_constraints).narrowed_by(asked_constraints)
    not_before, not_after = validity_window(
        validity_days=validity_days, now=now, cap=parent.own_certificate().not_after
    )
    signed = sign_ca_certificate(
        subject=request.subject,
        public_key=public_key,
        signer=parent.key,
        issuer_certificate=parent.x509_certificate(),
        issuer_name=parent.repository_name,
        not_before=not_before,
        not_after=not_after,
        path_length=granted,
        constraints=constraints,
        actor=actor,
    )
    with transaction.atomic():
        row = record_certificate(signed, ca=parent, now=now)
        audit.record(
            action="certificate.issued",
            actor=actor,
            obj=row,
            details={
                "serial": row.serial,
                "subject": row.subject,
                "ca": parent.name,
                "is_ca": True,
                "from_request": True,
                "path_length": granted,
                "not_after": row.not_after.isoformat(),
            },
            scope=f"ca:{parent.pk}",
            now=now,
        )
    return row
