"""In-process pkilint (the same validators as ``lint_pkix_cert``), about 5 ms a certificate."""

from __future__ import annotations

import functools
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pkilint import loader
from pkilint.pkix import certificate, extension, name
from pkilint.validation import ValidationFindingSeverity


@functools.cache
def _validator() -> Any:
    return certificate.create_pkix_certificate_validator_container(
        certificate.create_decoding_validators(name.ATTRIBUTE_TYPE_MAPPINGS, extension.EXTENSION_MAPPINGS),
        [
            certificate.create_issuer_validator_container([]),
            certificate.create_validity_validator_container(),
            certificate.create_subject_validator_container([]),
            certificate.create_extensions_validator_container([]),
            certificate.create_spki_validator_container([]),
        ],
    )


def pkix_findings(cert: x509.Certificate, *, at_least: str = "WARNING") -> list[str]:
    """Return ``code (SEVERITY): message`` for every finding at or above ``at_least``."""
    threshold = ValidationFindingSeverity[at_least]
    doc = loader.RFC5280CertificateDocumentLoader().load_der_document(
        cert.public_bytes(serialization.Encoding.DER), "cert"
    )
    return [
        repr(fd)
        for result in _validator().validate(doc.root)
        for fd in result.finding_descriptions
        if fd.finding.severity <= threshold
    ]
