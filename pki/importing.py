"""Importing certificates a CA signed before KMI kept its records (migration from openssl ca, EJBCA…)."""

from __future__ import annotations

import datetime as dt
import hashlib

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from django.db import IntegrityError, transaction

from pki import audit
from pki.clock import resolve
from pki.exceptions import PolicyViolation
from pki.models.authority import CertificateAuthority
from pki.models.certificate import Certificate
from pki.recording import record_certificate


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
