"""CAs as OCSP requests name them: a CA generation by the hashes of its subject and key
(RFC 6960 §4.1.1 CertID)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization

from pki.generations import current_generation
from pki.models.authority import CAGeneration, CertificateAuthority
from pki.x509 import ocsp_der
from pki.x509.ocsp_der import (
    INTEGER,
    OCTET_STRING,
    SEQUENCE,
    tlv,
)

HASHES = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha384": hashlib.sha384, "sha512": hashlib.sha512}
_HASH_OIDS = {name: oid for oid, name in ocsp_der.HASH_OIDS.items()}


@dataclass(frozen=True)
class Issuer:
    """A CA generation as OCSP requests name it: by the hashes of its subject and public key.

    ``name`` is the generation's repository name (the last segment of its OCSP URL).
    """

    ca_id: int
    generation: int
    name: str
    name_hashes: dict[str, bytes]
    key_hashes: dict[str, bytes]

    @classmethod
    def of(cls, ca: CertificateAuthority | CAGeneration) -> Issuer:
        """Compute every supported CertID hash of a CA's current generation (or of ``generation``)."""
        generation = current_generation(ca) if isinstance(ca, CertificateAuthority) else ca
        cert = generation.x509_certificate()
        name_der = cert.subject.public_bytes()
        key_bits = ocsp_der.bit_string_content(
            cert.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        return cls(
            ca_id=generation.ca_id,
            generation=generation.number,
            name=generation.repository_name,
            name_hashes={h: f(name_der).digest() for h, f in HASHES.items()},
            key_hashes={h: f(key_bits).digest() for h, f in HASHES.items()},
        )

    def cert_id(self, serial: int, algorithm: str) -> bytes:
        """The DER CertID of ``serial`` under this issuer (hash AlgorithmIdentifier with NULL)."""
        return tlv(
            SEQUENCE,
            ocsp_der.algorithm_identifier(_HASH_OIDS[algorithm], null_parameters=True)
            + tlv(OCTET_STRING, self.name_hashes[algorithm])
            + tlv(OCTET_STRING, self.key_hashes[algorithm])
            + tlv(INTEGER, serial.to_bytes(serial.bit_length() // 8 + 1, "big", signed=True)),
        )
