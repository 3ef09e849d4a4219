"""CSR parsing and checks that do not depend on a profile."""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtensionOID, NameOID

from pki.exceptions import InvalidCSR, PolicyViolation, UnsupportedExtension
from pki.keys.base import key_type_of
from pki.models.key import KeyType
from pki.x509 import der
from pki.x509.names import SAN, check_subject, san_from_general_name
from pki.x509.ocsp_der import MalformedRequest, der_expect

# cryptography warns (and goes on) about an attribute longer than X.520 allows; check_subject
# refuses it with the reason. (A filter set once: catch_warnings around every CSR costs more.)
warnings.filterwarnings("ignore", message="Attribute's length must be", category=UserWarning)

# Extensions a CSR may request that KMI understands; the profile decides what is issued.
UNDERSTOOD_EXTENSIONS = {
    ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
    ExtensionOID.KEY_USAGE,
    ExtensionOID.EXTENDED_KEY_USAGE,
    ExtensionOID.BASIC_CONSTRAINTS,
    ExtensionOID.SUBJECT_KEY_IDENTIFIER,
}


def spki_der(public_key: CertificatePublicKeyTypes) -> bytes:
    """Return the DER SubjectPublicKeyInfo of ``public_key``."""
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def spki_fingerprint(public_key: CertificatePublicKeyTypes) -> str:
    """Return the SHA-256 of the SPKI as hex (KMI's key fingerprint)."""
    return hashlib.sha256(spki_der(public_key)).hexdigest()


@dataclass(frozen=True)
class CheckedCSR:
    """A CSR that parsed and whose signature verified, with what policy checks need."""

    csr: x509.CertificateSigningRequest
    public_key: CertificatePublicKeyTypes
    key_type: KeyType
    key_fingerprint: str
    subject: x509.Name
    sans: tuple[SAN, ...]

    @property
    def der(self) -> bytes:
        """The CSR as DER."""
        return self.csr.public_bytes(serialization.Encoding.DER)

    @property
    def common_name(self) -> str | None:
        """The subject's first CN, if any."""
        attrs = self.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return str(attrs[0].value) if attrs else None


def _reason(exc: Exception) -> str:
    """An exception as a short reason: its text, or its class name when it has none."""
    return str(exc) or type(exc).__name__


def load_csr(data: bytes | str, *, max_bytes: int) -> x509.CertificateSigningRequest:
    """Parse a PEM or DER CSR of at most ``max_bytes``; anything else raises ``InvalidCSR``."""
    raw = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else bytes(data)
    if len(raw) > max_bytes:
        raise InvalidCSR(f"CSR is {len(raw)} bytes; the limit is {max_bytes}")
    if not raw.strip():
        raise InvalidCSR("CSR is empty")
    try:
        if raw.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_csr(raw.strip())
        return x509.load_der_x509_csr(raw)
    # Whatever the parser raises is a CSR that does not parse: not only ValueError, but also
    # x509.InvalidVersion (a version other than v1(0), which is not a ValueError) and friends.
    except Exception as exc:  # noqa: BLE001 - any parser error means the CSR is malformed
        raise InvalidCSR(f"CSR does not parse: {_reason(exc)}") from None


def check_csr(csr: x509.CertificateSigningRequest) -> CheckedCSR:
    """Verify the CSR's signature, key, subject and extensions; return what policy checks need.

    Every error is a domain error: ``InvalidCSR`` for a CSR that is malformed or breaks
    RFC 5280 / X.520, ``UnsupportedExtension`` or ``NameNotAllowed`` for what policy refuses.
    """
    try:
        public_key = csr.public_key()
    except Exception as exc:  # noqa: BLE001 - any parser error means the CSR is malformed
        raise InvalidCSR(f"CSR public key is not usable: {_reason(exc)}") from None
    spki = _check_spki_encoding(csr, public_key)
    try:
        signature_ok = csr.is_signature_valid
    except Exception as exc:  # noqa: BLE001 - any parser error means the CSR is malformed
        raise InvalidCSR(f"CSR signature cannot be checked: {_reason(exc)}") from None
    if not signature_ok:
        raise InvalidCSR("CSR signature does not verify (proof of possession failed)")
    key_type = key_type_of(public_key)
    try:
        subject = csr.subject
        extensions = csr.extensions
    except Exception as exc:  # noqa: BLE001 - any parser error means the CSR is malformed
        raise InvalidCSR(f"CSR subject or extensions do not parse: {_reason(exc)}") from None
    try:
        check_subject(subject)
    except PolicyViolation as exc:
        raise InvalidCSR(f"CSR subject: {exc}") from None
    for ext in extensions:
        if ext.critical and ext.oid not in UNDERSTOOD_EXTENSIONS:
            raise UnsupportedExtension(f"CSR requests an unknown critical extension {ext.oid.dotted_string}")
    sans: list[SAN] = []
    try:
        san_ext = extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        pass
    else:
        if not len(san_ext.value):
            # RFC 5280 §4.2.1.6: GeneralNames is SIZE (1..MAX); an empty one is malformed.
            raise InvalidCSR("CSR has an empty subjectAltName extension (RFC 5280 §4.2.1.6)")
        for gn in san_ext.value:
            san = san_from_general_name(gn)
            if san not in sans:
                sans.append(san)
    return CheckedCSR(
        csr=csr,
        public_key=public_key,
        key_type=key_type,
        key_fingerprint=hashlib.sha256(spki).hexdigest(),
        subject=subject,
        sans=tuple(sans),
    )


def _check_spki_encoding(csr: x509.CertificateSigningRequest, public_key: CertificatePublicKeyTypes) -> bytes:
    """The CSR's SubjectPublicKeyInfo must be the key's canonical DER; return that DER.

    This refuses EC keys with explicit curve parameters (RFC 5480 §2.1.1: namedCurve only),
    RSA keys without their NULL parameters and any other non-DER key encoding, so the key KMI
    certifies is byte for byte the key KMI checked.
    """
    # CertificationRequestInfo ::= SEQUENCE { version INTEGER, subject Name, subjectPKInfo, … }:
    # the SPKI starts where the subject ends; the bytes there must be the canonical TLV itself.
    try:
        tbs = csr.tbs_certrequest_bytes
        start, end = der_expect(tbs, 0, len(tbs), der.TAG_SEQUENCE)
        _, version_end = der_expect(tbs, start, end, der.TAG_INTEGER)
        _, spki_start = der_expect(tbs, version_end, end, der.TAG_SEQUENCE)
    except (MalformedRequest, ValueError) as exc:
        raise InvalidCSR(f"CSR does not parse: {_reason(exc)}") from None
    canonical = spki_der(public_key)
    if tbs[spki_start : spki_start + len(canonical)] != canonical:
        raise InvalidCSR(
            "CSR public key is not in canonical DER (explicit EC curve parameters or another"
            " non-standard encoding); use a named curve (RFC 5480)"
        )
    return canonical
