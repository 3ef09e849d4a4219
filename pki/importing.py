"""Bringing an existing CA into KMI (migration from openssl ca, EJBCA, AD CS…): the CA itself with
its key (sealed on import) or a key in an HSM, or its certificate only; the certificates it
signed before; and its revocations and CRL numbering from its last CRL."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from django.db import IntegrityError, transaction

from pki import audit
from pki.authorities import check_ca_name
from pki.clock import resolve
from pki.conf import pki_settings
from pki.exceptions import InvalidState, PolicyViolation
from pki.keys.base import issuer_public_key, key_type_of
from pki.models.authority import CAGeneration, CertificateAuthority
from pki.models.certificate import Certificate, RevocationReason
from pki.models.key import Key, KeyPurpose, KeyState
from pki.recording import record_certificate
from pki.x509.constraints import NameConstraints
from pki.x509.csr import spki_der, spki_fingerprint
from pki.x509.serials import serial_hex


def import_certificate(
    *,
    ca: CertificateAuthority,
    certificate: x509.Certificate,
    actor: str,
    owner_email: str = "",
    now: dt.datetime | None = None,
) -> tuple[Certificate, bool]:
    """Record a certificate ``ca`` signed outside KMI; return (row, created). Idempotent.

    The certificate must name ``ca`` as its issuer and carry a valid signature of ``ca``'s key;
    anything else is refused, so the import cannot plant a foreign certificate in a CA's records.
    """
    now = resolve(now)
    der = certificate.public_bytes(serialization.Encoding.DER)
    existing = Certificate.objects.filter(fingerprint_sha256=hashlib.sha256(der).hexdigest()).first()
    if existing is not None and existing.ca_id == ca.pk:
        return existing, False
    issuer = ca.x509_certificate()
    if existing is not None or certificate.issuer != issuer.subject:
        raise PolicyViolation(
            f"certificate {certificate.subject.rfc4514_string()!r} was issued by "
            f"{certificate.issuer.rfc4514_string()!r}, not by CA {ca.name}"
        )
    try:
        certificate.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError) as exc:
        raise PolicyViolation(
            f"certificate serial {certificate.serial_number:x} is not signed by CA {ca.name}: {exc}"
        ) from None
    try:
        with transaction.atomic():
            row = record_certificate(certificate, ca=ca, now=now, der=der)
            if owner_email:
                row.owner_email = owner_email
                row.save(update_fields=["owner_email"])
            audit.record(
                action="certificate.imported",
                actor=actor,
                obj=row,
                details={"serial": row.serial, "subject": row.subject, "ca": ca.name},
                scope=f"ca:{ca.pk}",
                now=now,
            )
    except IntegrityError:
        # RFC 5280 §4.1.2.2: a serial is unique per CA; another certificate with it is a conflict.
        raise PolicyViolation(
            f"CA {ca.name} already has another certificate with serial {certificate.serial_number:x}"
        ) from None
    return row, True


# --- an existing CA brought into KMI ---------------------------------------------------------------


def _imported_key(
    *,
    certificate: x509.Certificate,
    private_key: CertificateIssuerPrivateKeyTypes | None,
    hsm_label: str | None,
    hsm_id: str | None,
    backend: str | None,
    now: dt.datetime,
) -> Key:
    """Seal ``private_key`` (or find the HSM key), record it, and prove it matches the certificate."""
    from pki.keys import get_backend, signature_hash
    from pki.keys.base import signature_verifies
    from pki.keys.encrypted import EncryptedKeyBackend

    public_key = issuer_public_key(certificate.public_key())
    fingerprint = spki_fingerprint(public_key)
    if Key.objects.filter(spki_sha256=fingerprint, purpose=KeyPurpose.CA).exists():
        raise InvalidState("KMI holds this CA key already")
    key_id = uuid.uuid4()
    if private_key is not None:
        if spki_fingerprint(issuer_public_key(private_key.public_key())) != fingerprint:
            raise PolicyViolation("the private key does not match the certificate")
        sealing = get_backend(backend or "encrypted")
        if not isinstance(sealing, EncryptedKeyBackend):
            raise PolicyViolation(
                f"backend {sealing.alias!r} cannot take a private key; to use a key already in an "
                "HSM, name it by its label or id"
            )
        handle, alias = sealing.store(key_id=key_id, private_key=private_key), sealing.alias
    else:
        hsm = get_backend(backend or "pkcs11")
        finder = getattr(hsm, "find", None)
        if finder is None:
            raise PolicyViolation(f"backend {hsm.alias!r} holds no keys made outside KMI")
        handle, token_public = finder(label=hsm_label, key_id=hsm_id)
        if spki_fingerprint(issuer_public_key(token_public)) != fingerprint:
            raise PolicyViolation("the HSM key does not match the certificate")
        alias = hsm.alias
    key = Key.objects.create(
        id=key_id,
        key_type=key_type_of(public_key),
        purpose=KeyPurpose.CA,
        backend=alias,
        handle=handle,
        public_key_der=spki_der(public_key),
        spki_sha256=fingerprint,
        state=KeyState.ACTIVE,
        created_at=now,
        activated_at=now,
    )
    # A probe signature through the backend: the key is usable and really is the certificate's.
    algorithm = signature_hash(key.key_type)
    probe = b"KMI import probe " + str(key.pk).encode()
    signature = get_backend(alias).sign_data(handle, probe, algorithm)
    if not signature_verifies(public_key, signature, probe, algorithm):
        raise PolicyViolation("the key does not sign for the certificate's public key (probe failed)")
    return key


def import_ca(
    *,
    name: str,
    certificate: x509.Certificate,
    actor: str,
    private_key: CertificateIssuerPrivateKeyTypes | None = None,
    hsm_label: str | None = None,
    hsm_id: str | None = None,
    backend: str | None = None,
    chain: Sequence[x509.Certificate] = (),
    now: dt.datetime | None = None,
) -> CertificateAuthority:
    """Bring an existing CA into KMI; it issues, publishes CRLs and answers OCSP from then on.

    With ``private_key`` the key is sealed by the ``encrypted`` backend at once (the plaintext
    is never written anywhere); with ``hsm_label``/``hsm_id`` KMI uses a key already in the HSM
    of ``backend`` (default ``pkcs11``); with neither the CA is recorded as a certificate only
    (``pki.offline.record_external_ca``). The certificate's issuer must be the CA itself (a
    root), a CA KMI knows, or come in ``chain`` (issuer first). The path length and name
    constraints KMI enforces from then on are the certificate's. Audited (``ca.imported``).
    """
    from pki.offline import (
        check_ca_certificate,
        issued_by,
        parent_for,
        record_external_ca,
        record_imported_ca,
    )

    now = resolve(now)
    if private_key is None and hsm_label is None and hsm_id is None:
        with transaction.atomic():
            parent = None
            for issuer in reversed(chain):
                parent = record_external_ca(certificate=issuer, actor=actor, parent=parent, now=now)
            return record_external_ca(certificate=certificate, actor=actor, name=name, parent=parent, now=now)
    if private_key is not None and (hsm_label is not None or hsm_id is not None):
        raise PolicyViolation("a CA's key is a private key to seal or a key already in an HSM, not both")
    check_ca_name(name)
    check_ca_certificate(certificate, now=now)
    self_signed = certificate.issuer == certificate.subject and issued_by(certificate, certificate)
    with transaction.atomic():
        parent, issuer_generation = (None, 1) if self_signed else parent_for(certificate, chain, actor, now)
        key = _imported_key(
            certificate=certificate,
            private_key=private_key,
            hsm_label=hsm_label,
            hsm_id=hsm_id,
            backend=backend,
            now=now,
        )
        basic = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
        ca = CertificateAuthority.objects.create(
            name=name,
            parent=parent,
            key=key,
            path_length=basic.path_length,
            name_constraints=NameConstraints.of_certificate(certificate).to_json(),
            created_at=now,
        )
        where = "sealed" if private_key is not None else f"in the HSM ({hsm_label or hsm_id})"
        record_imported_ca(
            ca=ca,
            certificate=certificate,
            issuer=parent or ca,
            issuer_generation=issuer_generation,
            key_note=where,
            actor=actor,
            now=now,
        )
    return ca


@dataclass(frozen=True)
class ImportedCRL:
    """What ``import_crl`` did."""

    crl_number: int
    generation: int
    revoked: int  # certificates newly marked revoked from the CRL's entries
    stored: bool  # the CRL itself is served by KMI's repository (certificate-only CAs)


_REASONS = {RevocationReason(value).x509(): value for value in RevocationReason.values}


def _crl_signer(ca: CertificateAuthority, crl: x509.CertificateRevocationList) -> CAGeneration:
    for generation in CAGeneration.objects.filter(ca=ca, certificate__isnull=False).select_related(
        "certificate"
    ):
        issuer = generation.x509_certificate()
        if crl.issuer == issuer.subject and crl.is_signature_valid(issuer.public_key()):  # type: ignore[arg-type]
            return generation
    raise PolicyViolation(f"the CRL is not signed by CA {ca.name}")


def _crl_number(crl: x509.CertificateRevocationList, now: dt.datetime) -> int:
    try:
        number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        raise PolicyViolation("the CRL has no CRL number (RFC 5280 §5.2.3)") from None
    try:
        crl.extensions.get_extension_for_class(x509.DeltaCRLIndicator)
    except x509.ExtensionNotFound:
        pass
    else:
        raise PolicyViolation("a delta CRL cannot be imported: give the complete CRL")
    if crl.next_update_utc is not None and crl.next_update_utc <= now:
        raise PolicyViolation(
            f"the CRL expired at {crl.next_update_utc:%Y-%m-%d %H:%M:%S}Z: import a current one"
        )
    return number


def _entry_revocation(entry: x509.RevokedCertificate) -> tuple[str, dt.datetime | None]:
    try:
        reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    except x509.ExtensionNotFound:
        reason = x509.ReasonFlags.unspecified
    try:
        invalidity: dt.datetime | None = entry.extensions.get_extension_for_class(
            x509.InvalidityDate
        ).value.invalidity_date_utc
    except x509.ExtensionNotFound:
        invalidity = None
    return _REASONS[reason], invalidity


def _revoke_from_entries(
    *,
    ca: CertificateAuthority,
    generation: int,
    entries: list[x509.RevokedCertificate],
    number: int,
    actor: str,
    now: dt.datetime,
    require_all: bool,
) -> int:
    """Mark the listed certificates revoked as the CRL says (each audited); return how many changed.

    ``require_all``: every entry must name a certificate KMI recorded (a CA KMI now signs for,
    whose CRL KMI continues); otherwise entries KMI has no certificate for are passed over (a
    certificate-only CA, which issued much KMI never saw).
    """
    from pki.signals import certificate_status_changed

    wanted = {serial_hex(e.serial_number): e for e in entries}
    rows = {
        c.serial: c
        for c in Certificate.objects.select_for_update().filter(
            ca=ca, issuer_generation=generation, serial__in=list(wanted)
        )
    }
    unknown = sorted(set(wanted) - set(rows))
    if unknown and require_all:
        shown = ", ".join(unknown[:5]) + (", …" if len(unknown) > 5 else "")
        raise PolicyViolation(
            f"the CRL lists {len(unknown)} serial(s) KMI has no certificate for ({shown}): import those "
            "certificates first (import_ca --issued or import_certs), then the CRL"
        )
    changed: list[int] = []
    for serial, entry in wanted.items():
        cert = rows[serial]
        if cert.revoked_at is not None:
            continue  # KMI's record already says revoked (perhaps with more)
        cert.revocation_reason, cert.invalidity_date = _entry_revocation(entry)
        cert.revoked_at = entry.revocation_date_utc
        cert.save(update_fields=["revoked_at", "revocation_reason", "invalidity_date"])
        audit.record(
            action="certificate.revoked",
            actor=actor,
            obj=cert,
            details={
                "serial": cert.serial,
                "reason": cert.revocation_reason,
                "previous_reason": None,
                "invalidity_date": cert.invalidity_date.isoformat() if cert.invalidity_date else None,
                "imported_from_crl": number,
            },
            scope=f"ca:{ca.pk}",
            now=now,
        )
        changed.append(cert.pk)
    if changed:
        ca_ids = [ca.pk]
        transaction.on_commit(
            lambda: certificate_status_changed.send(
                sender=Certificate, certificate_ids=changed, ca_ids=ca_ids
            )
        )
    return len(changed)


def import_crl(
    *,
    ca: CertificateAuthority,
    crl: x509.CertificateRevocationList,
    actor: str,
    now: dt.datetime | None = None,
) -> ImportedCRL:
    """Take in a CRL a CA signed outside KMI: its revocations, and its number, so KMI's next CRL
    of the CA continues the numbering (RFC 5280 §5.2.3: monotonic per issuer and scope).

    Entries naming certificates KMI has recorded that are not revoked yet are marked revoked with
    the CRL's date, reason and invalidity date, and audited. For a CA KMI signs for, every entry
    must name a certificate KMI has recorded (import the certificates first). For a
    certificate-only CA (an offline root) KMI also stores the CRL and serves it at the CA's CRL
    URL until a newer one is imported; a revoked KMI CA under it (its own certificate on the
    CRL) stops issuing. Delta CRLs and CRLs
    whose nextUpdate has passed are refused.
    """
    from pki.crl import write_crl_file
    from pki.models.crl import CertificateRevocationList, CRLScope

    now = resolve(now)
    generation = _crl_signer(ca, crl)
    number = _crl_number(crl, now)
    entries = list(crl)
    revoked = 0
    with transaction.atomic():
        CRLScope.objects.bulk_create(
            [CRLScope(ca=ca, generation=generation.number, shard=0)], ignore_conflicts=True
        )
        scope = CRLScope.objects.select_for_update().get(ca=ca, generation=generation.number, shard=0)
        if number <= scope.last_crl_number:
            raise InvalidState(
                f"CA {ca.name} is at CRL number {scope.last_crl_number} already; this CRL is {number}"
            )
        revoked = _revoke_from_entries(
            ca=ca,
            generation=generation.number,
            entries=entries,
            number=number,
            actor=actor,
            now=now,
            require_all=ca.holds_key,
        )
        if not ca.holds_key:
            data = crl.public_bytes(serialization.Encoding.DER)
            CertificateRevocationList.objects.create(
                ca=ca,
                generation=generation.number,
                shard=0,
                crl_number=number,
                this_update=crl.last_update_utc,
                next_update=crl.next_update_utc or crl.last_update_utc,
                der=data,
                sha256=hashlib.sha256(data).hexdigest(),
                entry_count=len(entries),
                published_by=actor,
                created_at=now,
            )
            CertificateRevocationList.objects.filter(
                ca=ca,
                generation=generation.number,
                shard=0,
                crl_number__lte=number - pki_settings().crl_history,
            ).delete()  # the history publish_crl keeps (KMI_CRL_HISTORY)
            name = generation.repository_name
            transaction.on_commit(lambda: write_crl_file(name, 0, data))
        scope.last_crl_number = number
        scope.save(update_fields=["last_crl_number"])
        audit.record(
            action="crl.imported",
            actor=actor,
            obj=ca,
            details={
                "crl_number": number,
                "generation": generation.number,
                "entries": len(entries),
                "revoked": revoked,
                "served": not ca.holds_key,
                "this_update": crl.last_update_utc.isoformat(),
            },
            scope=f"ca:{ca.pk}",
            now=now,
        )
    return ImportedCRL(
        crl_number=number, generation=generation.number, revoked=revoked, stored=not ca.holds_key
    )
