"""Helpers for OCSP tests: requests built with ``cryptography``, pkilint in-process."""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from pkilint import loader, pkix
from pkilint.pkix import certificate, extension, name
from pkilint.pkix import ocsp as pkilint_ocsp
from pkilint.validation import ValidationFindingSeverity

from pki.x509.der import TAG_OCTET_STRING as OCTET_STRING
from pki.x509.der import TAG_SEQUENCE as SEQUENCE
from pki.x509.der import tlv

_SEVERE = {
    ValidationFindingSeverity.WARNING,
    ValidationFindingSeverity.ERROR,
    ValidationFindingSeverity.FATAL,
}


def request_der(
    cert: x509.Certificate,
    issuer: x509.Certificate,
    *,
    algorithm: hashes.HashAlgorithm | None = None,
    nonce: bytes | None = None,
) -> bytes:
    """A one-certificate OCSP request (SHA-1 CertID unless told), optionally with a nonce."""
    builder = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, algorithm or hashes.SHA1())
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER)


def multi_request_der(cert_ids: list[bytes], *, nonce: bytes | None = None) -> bytes:
    """An OCSP request for several CertIDs (``cryptography`` builds only one)."""
    from pki.x509.der import oid as encode_oid

    request_list = tlv(SEQUENCE, b"".join(tlv(SEQUENCE, cid) for cid in cert_ids))
    extensions = b""
    if nonce is not None:
        ext = tlv(SEQUENCE, encode_oid("1.3.6.1.5.5.7.48.1.2") + tlv(OCTET_STRING, tlv(OCTET_STRING, nonce)))
        extensions = tlv(0xA2, tlv(SEQUENCE, ext))
    return tlv(SEQUENCE, tlv(SEQUENCE, request_list + extensions))


def _findings(results: list) -> list[str]:  # type: ignore[type-arg]
    return [
        f"{fd.finding.code} ({fd.finding.severity}) {fd.message or ''}"
        for r in results
        for fd in r.finding_descriptions
        if fd.finding.severity in _SEVERE
    ]


def lint_ocsp_response(der: bytes) -> list[str]:
    """pkilint's lint_ocsp_response in-process; WARNING and worse findings."""
    validator = pkilint_ocsp.create_pkix_ocsp_response_validator_container(
        [
            pkilint_ocsp.create_response_decoder(),
            pkix.create_attribute_decoder(name.ATTRIBUTE_TYPE_MAPPINGS),
            pkix.create_extension_decoder(extension.EXTENSION_MAPPINGS),
        ],
        [],
    )
    doc = loader.RFC6960OCSPResponseDocumentLoader().load_der_document(der, "response")
    return _findings(validator.validate(doc.root))


def lint_pkix_cert(der: bytes) -> list[str]:
    """pkilint's lint_pkix_cert in-process (see /work/shared/TOOLS.md); WARNING and worse findings."""
    validator = certificate.create_pkix_certificate_validator_container(
        certificate.create_decoding_validators(name.ATTRIBUTE_TYPE_MAPPINGS, extension.EXTENSION_MAPPINGS),
        [
            certificate.create_issuer_validator_container([]),
            certificate.create_validity_validator_container(),
            certificate.create_subject_validator_container([]),
            certificate.create_extensions_validator_container([]),
            certificate.create_spki_validator_container([]),
        ],
    )
    doc = loader.RFC5280CertificateDocumentLoader().load_der_document(der, "cert")
    return _findings(validator.validate(doc.root))
