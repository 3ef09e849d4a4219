"""CSR parsing and checks that do not depend on a profile."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtensionOID, NameOID

from pki.exceptions import InvalidCSR, UnsupportedExtension
from pki.keys.base import key_type_of
from pki.models.key import KeyType
from pki.x509.names import SAN, san_from_general_name

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


def load_csr(data: bytes | str, *, max_bytes: int) -> x509.CertificateSigningRequest:
    """Parse a PEM or DER CSR of at most ``max_bytes``."""
    raw = data.encode() if isinstance(data, str) else bytes(data)
    if len(raw) > max_bytes:
        raise InvalidCSR(f"CSR is {len(raw)} bytes; the limit is {max_bytes}")
    if not raw.strip():
        raise InvalidCSR("CSR is empty")
    try:
        if raw.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_csr(raw.strip())
        return x509.load_der_x509_csr(raw)
    except ValueError as exc:
        raise InvalidCSR(f"CSR does not parse: {exc}") from None


def check_csr(csr: x509.CertificateSigningRequest) -> CheckedCSR:
    """Verify the CSR's signature, key and extensions; return what the policy checks need."""
    try:
        public_key = csr.public_key()
    except (ValueError, TypeError) as exc:
        raise InvalidCSR(f"CSR public key is not usable: {exc}") from None
    try:
        signature_ok = csr.is_signature_valid
    except (ValueError, TypeError) as exc:
        raise InvalidCSR(f"CSR signature cannot be checked: {exc}") from None
    if not signature_ok:
        raise InvalidCSR("CSR signature does not verify (proof of possession failed)")
    key_type = key_type_of(public_key)
    try:
        extensions = csr.extensions
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as exc:
        raise InvalidCSR(f"CSR extensions do not parse: {exc}") from None
    for ext in extensions:
        if ext.critical and ext.oid not in UNDERSTOOD_EXTENSIONS:
            raise UnsupportedExtension(f"CSR requests an unknown critical extension {ext.oid.dotted_string}")
    sans: list[SAN] = []
    try:
        san_ext = extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        pass
    else:
        for gn in san_ext.value:
            san = san_from_general_name(gn)
            if san not in sans:
                sans.append(san)
    return CheckedCSR(
        csr=csr,
        public_key=public_key,
        key_type=key_type,
        key_fingerprint=spki_fingerprint(public_key),
        subject=csr.subject,
        sans=tuple(sans),
    )
