"""KMI's models, one module per aggregate."""

from pki.models.access import ApiToken, Role, RoleGrant
from pki.models.acme import (
    AcmeAccount,
    AcmeAuthorization,
    AcmeChallenge,
    AcmeEndpoint,
    AcmeExternalAccountKey,
    AcmeNonce,
    AcmeOrder,
)
from pki.models.alert import Alert, AlertKind, AlertSeverity, AlertState, MonitorRun
from pki.models.audit import AuditCheckpoint, AuditEvent, AuditStream
from pki.models.authority import CACreation, CAGeneration, CAState, CertificateAuthority, GenerationState
from pki.models.blocklist import BlockedKey
from pki.models.certificate import Certificate, RevocationReason
from pki.models.crl import CertificateRevocationList, CRLScope, CRLStaleMark
from pki.models.delivery import KeyDelivery
from pki.models.device import EnrollmentCode, EstLabel, ScepChallenge, ScepLabel, ScepTransaction
from pki.models.health import AuditVerification, CertificateSummary, WorkerHeartbeat
from pki.models.key import Key, KeyDestruction, KeyRecovery, KeyState, KeyType, SealedKey, TwoPersonState
from pki.models.notification import (
    NotificationChannel,
    NotificationKind,
    NotificationRecord,
    NotificationState,
)
from pki.models.ocsp import OCSPResponder, OCSPResponse
from pki.models.profile import Profile
from pki.models.request import Approval, CertificateRequest, RequestState
from pki.models.signing import SigningJob, SigningJobState
from pki.models.transparency import LogEntry, MerkleNode, PendingLeaf, SignedTreeHead, TransparencyLog

__all__ = [
    "AcmeAccount",
    "AcmeAuthorization",
    "AcmeChallenge",
    "AcmeEndpoint",
    "AcmeExternalAccountKey",
    "AcmeNonce",
    "AcmeOrder",
    "Alert",
    "AlertKind",
    "AlertSeverity",
    "AlertState",
    "ApiToken",
    "Approval",
    "AuditCheckpoint",
    "AuditEvent",
    "AuditStream",
    "AuditVerification",
    "BlockedKey",
    "CACreation",
    "CAGeneration",
    "CAState",
    "CRLScope",
    "CRLStaleMark",
    "Certificate",
    "CertificateAuthority",
    "CertificateRequest",
    "CertificateRevocationList",
    "CertificateSummary",
    "EnrollmentCode",
    "EstLabel",
    "GenerationState",
    "Key",
    "KeyDelivery",
    "KeyDestruction",
    "KeyRecovery",
    "KeyState",
    "KeyType",
    "LogEntry",
    "MerkleNode",
    "MonitorRun",
    "NotificationChannel",
    "NotificationKind",
    "NotificationRecord",
    "NotificationState",
    "OCSPResponder",
    "OCSPResponse",
    "PendingLeaf",
    "Profile",
    "RequestState",
    "RevocationReason",
    "Role",
    "RoleGrant",
    "ScepChallenge",
    "ScepLabel",
    "ScepTransaction",
    "SealedKey",
    "SignedTreeHead",
    "SigningJob",
    "SigningJobState",
    "TransparencyLog",
    "TwoPersonState",
    "WorkerHeartbeat",
]
