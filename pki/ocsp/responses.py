"""Signing OCSP responses (RFC 6960 §4.2.1) with a responder key: what signing needs
(``Signer``), one certificate's status, and the signed response."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes

from pki.conf import ocsp_settings
from pki.keys import get_backend, signature_hash
from pki.models.certificate import RevocationReason
from pki.models.key import KeyType
from pki.models.ocsp import OCSPResponder
from pki.x509 import ocsp_der
from pki.x509.ocsp_der import (
    SingleStatus,
)

_REASON_CODES = {
    RevocationReason.UNSPECIFIED: 0,
    RevocationReason.KEY_COMPROMISE: 1,
    RevocationReason.CA_COMPROMISE: 2,
    RevocationReason.AFFILIATION_CHANGED: 3,
    RevocationReason.SUPERSEDED: 4,
    RevocationReason.CESSATION_OF_OPERATION: 5,
    RevocationReason.CERTIFICATE_HOLD: 6,
    RevocationReason.PRIVILEGE_WITHDRAWN: 9,
    RevocationReason.AA_COMPROMISE: 10,
}
# Signature AlgorithmIdentifiers by responder key family and hash (RFC 5758, RFC 4055, RFC 8410).
_SIGNATURE_OIDS = {
    ("ec", "sha256"): "1.2.840.10045.4.3.2",
    ("ec", "sha384"): "1.2.840.10045.4.3.3",
    ("ec", "sha512"): "1.2.840.10045.4.3.4",
    ("rsa", "sha256"): "1.2.840.113549.1.1.11",
    ("rsa", "sha384"): "1.2.840.113549.1.1.12",
    ("rsa", "sha512"): "1.2.840.113549.1.1.13",
    ("ed25519", None): "1.3.101.112",
    ("ed448", None): "1.3.101.113",
}


@dataclass(frozen=True)
class Signer:
    """What signing with a responder needs, loaded once (no private key material here)."""

    ca_id: int
    generation: int
    backend: str
    handle: str
    hash_algorithm: hashes.HashAlgorithm | None
    signature_algorithm: bytes  # AlgorithmIdentifier DER
    key_hash: bytes  # RFC 6960 §4.2.1 KeyHash: SHA-1 of the responder's public key bits
    certificate_der: bytes
    not_after: dt.datetime

    @classmethod
    def of(cls, responder: OCSPResponder) -> Signer:
        """Describe how to sign with ``responder``."""
        key = responder.key
        algorithm = signature_hash(key.key_type)
        kt = KeyType(key.key_type)
        family = "ec" if kt.startswith("ec-") else "rsa" if kt.startswith("rsa-") else kt.value
        oid = _SIGNATURE_OIDS[(family, algorithm.name if algorithm is not None else None)]
        return cls(
            ca_id=responder.ca_id,
            generation=responder.generation,
            backend=key.backend,
            handle=key.handle,
            hash_algorithm=algorithm,
            signature_algorithm=ocsp_der.algorithm_identifier(oid, null_parameters=family == "rsa"),
            key_hash=hashlib.sha1(ocsp_der.bit_string_content(bytes(key.public_key_der))).digest(),  # noqa: S324
            certificate_der=bytes(responder.certificate.der),
            not_after=responder.certificate.not_after,
        )


@dataclass(frozen=True)
class SignedResponse:
    """A signed OCSPResponse and the validity window its caching headers come from."""

    der: bytes
    this_update: dt.datetime
    next_update: dt.datetime


def build_response(
    *,
    signer: Signer,
    singles: Sequence[SingleStatus],
    now: dt.datetime,
    nonce: bytes | None = None,
    validity: dt.timedelta | None = None,
) -> SignedResponse:
    """Sign a successful OCSPResponse for ``singles`` with the responder behind ``signer``."""
    if not singles:
        raise ValueError("an OCSP response answers at least one CertID")
    this_update = now.replace(microsecond=0)
    next_update = this_update + (
        validity if validity is not None else dt.timedelta(seconds=ocsp_settings().response_validity_seconds)
    )
    # cryptography accepts nextUpdate before thisUpdate; RFC 6960 §4.2.2.1 does not.
    if next_update <= this_update:
        raise ValueError("nextUpdate must be later than thisUpdate")
    encoded = [ocsp_der.single_response(s, this_update=this_update, next_update=next_update) for s in singles]
    tbs = ocsp_der.response_data(
        responder_key_hash=signer.key_hash, produced_at=this_update, singles=encoded, nonce=nonce
    )
    signature = get_backend(signer.backend).sign_data(signer.handle, tbs, signer.hash_algorithm)
    der = ocsp_der.ocsp_response(
        tbs_response_data=tbs,
        signature_algorithm=signer.signature_algorithm,
        signature=signature,
        certificates=[signer.certificate_der],
    )
    return SignedResponse(der=der, this_update=this_update, next_update=next_update)


def single_status(
    cert_id_der: bytes, revoked_at: dt.datetime | None, reason: str | None, *, known: bool = True
) -> SingleStatus:
    """The status of one certificate (``known`` False: KMI never issued this serial)."""
    if not known:
        return SingleStatus(cert_id_der=cert_id_der, status="unknown")
    if revoked_at is None:
        return SingleStatus(cert_id_der=cert_id_der, status="good")
    code = _REASON_CODES.get(RevocationReason(reason), 0) if reason else 0
    # RFC 5280 §5.3.1: the reason code unspecified SHOULD be absent.
    return SingleStatus(
        cert_id_der=cert_id_der,
        status="revoked",
        revocation_time=revoked_at,
        reason_code=code or None,
    )
