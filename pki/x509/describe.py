"""Certificates and CSRs decoded into words for people (the console's detail pages).

Pure functions over ``cryptography`` objects: every extension KMI writes or accepts is spelled
out with the RFC's names; anything else shows its OID and DER in hex, never raw bytes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID

_EKU_NAMES = {
    ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth (TLS server)",
    ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth (TLS client)",
    ExtendedKeyUsageOID.CODE_SIGNING: "codeSigning",
    ExtendedKeyUsageOID.EMAIL_PROTECTION: "emailProtection",
    ExtendedKeyUsageOID.TIME_STAMPING: "timeStamping",
    ExtendedKeyUsageOID.OCSP_SIGNING: "OCSPSigning",
    ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE: "anyExtendedKeyUsage",
}
# cryptography's attribute -> RFC 5280's name (encipherOnly/decipherOnly only mean something,
# and can only be read, with keyAgreement).
_KEY_USAGE_NAMES = {
    "digital_signature": "digitalSignature",
    "content_commitment": "nonRepudiation",
    "key_encipherment": "keyEncipherment",
    "data_encipherment": "dataEncipherment",
    "key_agreement": "keyAgreement",
    "key_cert_sign": "keyCertSign",
    "crl_sign": "cRLSign",
}


@dataclass(frozen=True)
class Extension:
    """One extension: its name, criticality and the lines that say what it holds."""

    name: str
    oid: str
    critical: bool
    lines: tuple[str, ...]


def colon_hex(data: bytes) -> str:
    """``0A:1B:…`` (how fingerprints and key identifiers are usually written)."""
    return ":".join(f"{b:02X}" for b in data)


def public_key_text(key: PublicKeyTypes) -> str:
    """``RSA 2048``, ``ECDSA P-256``, ``Ed25519``, ``ML-DSA-65``…"""
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA {key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey):
        curve = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}.get(key.curve.name)
        return f"ECDSA {curve or key.curve.name}"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519"
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448"
    if isinstance(key, dsa.DSAPublicKey):
        return f"DSA {key.key_size}"
    name = type(key).__name__.removesuffix("PublicKey")
    return name.replace("MLDSA", "ML-DSA-") if name.startswith("MLDSA") else name


def _general_name(gn: x509.GeneralName) -> str:  # noqa: PLR0911 - one return per name type
    if isinstance(gn, x509.DNSName):
        return f"DNS: {gn.value}"
    if isinstance(gn, x509.IPAddress):
        return f"IP: {gn.value}"
    if isinstance(gn, x509.RFC822Name):
        return f"email: {gn.value}"
    if isinstance(gn, x509.UniformResourceIdentifier):
        return f"URI: {gn.value}"
    if isinstance(gn, x509.DirectoryName):
        return f"directory: {gn.value.rfc4514_string()}"
    if isinstance(gn, x509.RegisteredID):
        return f"registered ID: {gn.value.dotted_string}"
    if isinstance(gn, x509.OtherName):
        return f"other name {gn.type_id.dotted_string}: {gn.value.hex()}"
    return str(gn)


def _lines(value: x509.ExtensionType) -> list[str]:  # noqa: PLR0911, PLR0912 - one branch per type
    if isinstance(value, x509.SubjectAlternativeName | x509.IssuerAlternativeName):
        return [_general_name(gn) for gn in value]
    if isinstance(value, x509.BasicConstraints):
        text = "CA: yes" if value.ca else "CA: no"
        if value.path_length is not None:
            text += f", path length {value.path_length}"
        return [text]
    if isinstance(value, x509.KeyUsage):
        out = [rfc for name, rfc in _KEY_USAGE_NAMES.items() if getattr(value, name)]
        if value.key_agreement:
            out += [
                n
                for n, on in (("encipherOnly", value.encipher_only), ("decipherOnly", value.decipher_only))
                if on
            ]
        return out
    if isinstance(value, x509.ExtendedKeyUsage):
        return [_EKU_NAMES.get(oid, oid.dotted_string) for oid in value]
    if isinstance(value, x509.SubjectKeyIdentifier):
        return [colon_hex(value.digest)]
    if isinstance(value, x509.AuthorityKeyIdentifier):
        return (
            [f"key id {colon_hex(value.key_identifier)}"] if value.key_identifier else ["(issuer and serial)"]
        )
    if isinstance(value, x509.CRLDistributionPoints):
        return [_general_name(n) for dp in value for n in (dp.full_name or [])]
    if isinstance(value, x509.AuthorityInformationAccess):
        method = {
            AuthorityInformationAccessOID.OCSP: "OCSP",
            AuthorityInformationAccessOID.CA_ISSUERS: "CA issuers",
        }
        return [
            f"{method.get(d.access_method, d.access_method.dotted_string)}: "
            f"{_general_name(d.access_location)}"
            for d in value
        ]
    if isinstance(value, x509.NameConstraints):
        permitted = [f"permitted {_general_name(n)}" for n in value.permitted_subtrees or []]
        return permitted + [f"excluded {_general_name(n)}" for n in value.excluded_subtrees or []]
    if isinstance(value, x509.CertificatePolicies):
        return [p.policy_identifier.dotted_string for p in value]
    if isinstance(value, x509.OCSPNoCheck):
        return ["present (responses of this responder are not checked for revocation)"]
    if isinstance(value, x509.IssuingDistributionPoint):
        return [_general_name(n) for n in value.full_name or []] or ["(no name)"]
    if isinstance(value, x509.UnrecognizedExtension):
        return [f"DER {value.value.hex()}"]
    return [str(value)]


def _extension_name(ext: x509.Extension[x509.ExtensionType]) -> str:
    name = getattr(ext.oid, "_name", "") or ext.oid.dotted_string
    return name if name != "Unknown OID" else ext.oid.dotted_string


def extensions(exts: x509.Extensions) -> list[Extension]:
    """Every extension of a certificate or CSR, decoded."""
    return [
        Extension(
            name=_extension_name(e),
            oid=e.oid.dotted_string,
            critical=e.critical,
            lines=tuple(_lines(e.value)),
        )
        for e in exts
    ]


def describe_certificate(cert: x509.Certificate, der: bytes) -> dict[str, Any]:
    """What a certificate says, in words: names, validity, key, fingerprints, extensions."""
    return {
        "version": cert.version.name,
        "serial": colon_hex(cert.serial_number.to_bytes((cert.serial_number.bit_length() + 8) // 8, "big")),
        "subject": cert.subject.rfc4514_string() or "(empty)",
        "issuer": cert.issuer.rfc4514_string(),
        "not_before": cert.not_valid_before_utc,
        "not_after": cert.not_valid_after_utc,
        "public_key": public_key_text(cert.public_key()),
        "signature_algorithm": getattr(
            cert.signature_algorithm_oid, "_name", cert.signature_algorithm_oid.dotted_string
        ),
        "sha256": colon_hex(hashlib.sha256(der).digest()),
        "sha1": colon_hex(hashlib.sha1(der).digest()),  # noqa: S324 - a display fingerprint only
        "spki_sha256": hashlib.sha256(
            cert.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        ).hexdigest(),
        "extensions": extensions(cert.extensions),
        "pem": cert.public_bytes(serialization.Encoding.PEM).decode(),
    }


def describe_csr(csr: x509.CertificateSigningRequest) -> dict[str, Any]:
    """What a CSR asks for: subject, SANs, key, requested extensions, whether its signature verifies."""
    try:
        sans = [
            _general_name(gn)
            for gn in csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        ]
    except x509.ExtensionNotFound:
        sans = []
    return {
        "subject": csr.subject.rfc4514_string() or "(empty)",
        "sans": sans,
        "public_key": public_key_text(csr.public_key()),
        "signature_valid": csr.is_signature_valid,
        "extensions": extensions(csr.extensions),
        "pem": csr.public_bytes(serialization.Encoding.PEM).decode(),
    }
