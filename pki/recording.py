"""Turning a signed ``x509.Certificate`` into its database row."""

from __future__ import annotations

import datetime as dt
import hashlib

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from pki.models.authority import CertificateAuthority
from pki.models.certificate import Certificate
from pki.models.key import Key
from pki.models.profile import Profile
from pki.models.request import CertificateRequest
from pki.x509.csr import spki_fingerprint
from pki.x509.names import san_from_general_name
from pki.x509.serials import serial_hex


def san_lines(cert: x509.Certificate) -> str:
    """Return the certificate's SANs as ``kind:value`` lines (the searchable column)."""
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ""
    return "\n".join(str(san_from_general_name(gn)) for gn in ext)


def is_ca_certificate(cert: x509.Certificate) -> bool:
    """True when basicConstraints says cA."""
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def record_certificate(
    cert: x509.Certificate,
    *,
    ca: CertificateAuthority,
    now: dt.datetime,
    key: Key | None = None,
    profile: Profile | None = None,
    request: CertificateRequest | None = None,
    renewed_from: Certificate | None = None,
    auto_renew: bool = False,
    der: bytes | None = None,
    owner_id: int | None = None,
) -> Certificate:
    """Insert the row for a certificate ``ca`` signed (in the caller's transaction)."""
    der = der if der is not None else cert.public_bytes(serialization.Encoding.DER)
    return Certificate.objects.create(
        ca=ca,
        serial=serial_hex(cert.serial_number),
        der=der,
        subject=cert.subject.rfc4514_string(),
        san_text=san_lines(cert),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        fingerprint_sha256=hashlib.sha256(der).hexdigest(),
        key_fingerprint=spki_fingerprint(cert.public_key()),
        key=key,
        is_ca=is_ca_certificate(cert),
        profile=profile,
        request=request,
        renewed_from=renewed_from,
        auto_renew=auto_renew,
        owner_id=owner_id,
        created_at=now,
    )
