"""KMI's models, one module per aggregate."""

from pki.models.acme import (
    AcmeAccount,
    AcmeAuthorization,
    AcmeChallenge,
    AcmeEndpoint,
    AcmeExternalAccountKey,
    AcmeNonce,
    AcmeOrder,
)
from pki.models.audit import AuditEvent, AuditStream
from pki.models.authority import CertificateAuthority
from pki.models.certificate import Certificate, RevocationReason
from pki.models.crl import CertificateRevocationList, CRLScope, CRLStaleMark
from pki.models.key import Key, KeyState, KeyType, SealedKey
from pki.models.profile import Profile
from pki.models.request import CertificateRequest, RequestState

__all__ = [
    "AcmeAccount",
    "AcmeAuthorization",
    "AcmeChallenge",
    "AcmeEndpoint",
    "AcmeExternalAccountKey",
    "AcmeNonce",
    "AcmeOrder",
    "AuditEvent",
    "AuditStream",
    "CRLScope",
    "CRLStaleMark",
    "Certificate",
    "CertificateAuthority",
    "CertificateRequest",
    "CertificateRevocationList",
    "Key",
    "KeyState",
    "KeyType",
    "Profile",
    "RequestState",
    "RevocationReason",
    "SealedKey",
]
