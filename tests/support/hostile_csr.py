"""Hostile CSRs for the bad-input tests: each is well signed by a committed key, so only the
defect under test can be the reason KMI refuses it.

``cryptography`` refuses to write most of these (a version other than v1, an over-long CN), so
they are assembled with pyasn1 from a good CSR and signed again with the committed key.
"""

from __future__ import annotations

import base64
import warnings
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID
from pyasn1.codec.der import decoder, encoder
from pyasn1.type import univ
from pyasn1_alt_modules import rfc2986

from tests.conftest import load_key

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
WWW = [x509.DNSName("www.example.test")]


def _sign_info(info: rfc2986.CertificationRequestInfo, template: bytes) -> bytes:
    """Sign ``info`` with the committed EC P-256 key, keeping the template's algorithm."""
    req, _ = decoder.decode(template, asn1Spec=rfc2986.CertificationRequest())
    req["certificationRequestInfo"] = info
    tbs = encoder.encode(info)
    key = load_key("ec-p256")
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    req["signature"] = univ.BitString.fromOctetString(key.sign(tbs, ec.ECDSA(hashes.SHA256())))
    return bytes(encoder.encode(req))


def good_der(
    attributes: list[x509.NameAttribute] | None = None, sans: list[x509.GeneralName] | None = None
) -> bytes:
    """A DER CSR of the committed EC P-256 key with ``attributes`` (unchecked) and ``sans``."""
    attrs = (
        attributes
        if attributes is not None
        else [x509.NameAttribute(NameOID.COMMON_NAME, "www.example.test")]
    )
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attrs))
    if sans is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    key = load_key("ec-p256")
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def with_version(version: int) -> bytes:
    """A CSR whose CertificationRequestInfo version is ``version`` (only 0, v1, is valid)."""
    template = good_der(sans=WWW)
    req, _ = decoder.decode(template, asn1Spec=rfc2986.CertificationRequest())
    info = req["certificationRequestInfo"]
    info["version"] = version
    return _sign_info(info, template)


def attribute(
    oid: x509.ObjectIdentifier, value: str, string_type: _ASN1Type | None = None
) -> x509.NameAttribute:
    """A name attribute cryptography would warn about or refuse (built without its checks)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if string_type is None:
            return x509.NameAttribute(oid, value, _validate=False)
        return x509.NameAttribute(oid, value, string_type, _validate=False)


def with_subject(*attrs: x509.NameAttribute) -> bytes:
    """A CSR for www.example.test whose subject is ``attrs``."""
    return good_der(list(attrs), sans=WWW)


def pem(data: bytes) -> str:
    """``data`` as PEM text (unchanged when it is PEM already), for paths that take text."""
    if data.lstrip().startswith(b"-----BEGIN"):
        return data.decode()
    body = base64.b64encode(data).decode()
    lines = "\n".join(body[i : i + 64] for i in range(0, len(body), 64))
    return f"-----BEGIN CERTIFICATE REQUEST-----\n{lines}\n-----END CERTIFICATE REQUEST-----\n"


def der(data: bytes) -> bytes:
    """``data`` as DER (converted when it is PEM), for ACME's finalize."""
    if data.lstrip().startswith(b"-----BEGIN"):
        return x509.load_pem_x509_csr(data).public_bytes(serialization.Encoding.DER)
    return data


def explicit_ec_parameters() -> bytes:
    """The committed CSR whose EC key carries explicit curve parameters (made by openssl)."""
    return (FIXTURES / "csrs" / "ec-p256-explicit-params.pem").read_bytes()


# name -> (builder, words the refusal must contain). Every entry must be refused on every path.
CORPUS: dict[str, tuple[Callable[[], bytes], str]] = {
    "version-1": (lambda: with_version(1), "version"),
    "version-2": (lambda: with_version(2), "version"),
    "version-3": (lambda: with_version(3), "version"),
    "cn-10000-chars": (
        lambda: with_subject(attribute(NameOID.COMMON_NAME, "a" * 10_000)),
        "CN is 10000 characters",
    ),
    "cn-65-chars": (lambda: with_subject(attribute(NameOID.COMMON_NAME, "a" * 65)), "CN is 65 characters"),
    "cn-with-nul": (
        lambda: with_subject(attribute(NameOID.COMMON_NAME, "www.example.test\x00.evil.test")),
        "control character U+0000",
    ),
    "cn-empty": (lambda: with_subject(attribute(NameOID.COMMON_NAME, "")), "CN is 0 characters"),
    "o-65-chars": (
        lambda: with_subject(
            attribute(NameOID.COMMON_NAME, "www.example.test"), attribute(NameOID.ORGANIZATION_NAME, "o" * 65)
        ),
        "O is 65 characters",
    ),
    "country-3-letters": (
        lambda: with_subject(
            attribute(NameOID.COMMON_NAME, "www.example.test"), attribute(NameOID.COUNTRY_NAME, "DEU")
        ),
        "C is 3 characters",
    ),
    "cn-bmpstring": (
        lambda: with_subject(attribute(NameOID.COMMON_NAME, "www.example.test", _ASN1Type.BMPString)),
        "BMPString",
    ),
    "cn-teletex": (
        lambda: with_subject(attribute(NameOID.COMMON_NAME, "www.example.test", _ASN1Type.T61String)),
        "T61String",
    ),
    "unknown-attribute": (
        lambda: with_subject(
            attribute(NameOID.COMMON_NAME, "www.example.test"),
            attribute(x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"), "x"),
        ),
        "1.3.6.1.4.1.99999.1 is not one KMI issues",
    ),
    "empty-subject-alt-name": (lambda: good_der(sans=[]), "empty subjectAltName"),
    "explicit-ec-parameters": (explicit_ec_parameters, "explicit EC curve parameters"),
}
