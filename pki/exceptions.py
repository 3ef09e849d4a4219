"""Domain errors. They carry no HTTP codes: each adapter maps them once (API, ACME, OCSP, CLI)."""

from __future__ import annotations


class PKIError(Exception):
    """Base class of every error the domain raises on purpose."""

    code = "pki_error"


class ConfigurationError(PKIError):
    """The PKI settings are missing or invalid (for example no key-encryption key)."""

    code = "configuration"


class NotFound(PKIError):
    """A named CA, profile, request, certificate or key does not exist."""

    code = "not_found"


class InvalidCSR(PKIError):
    """The CSR does not parse, is too large, or its signature does not verify."""

    code = "bad_csr"


class PolicyViolation(PKIError):
    """The request breaks the profile's or the CA's policy (key type, names, validity)."""

    code = "policy_violation"


class WeakKey(PolicyViolation):
    """The public key is of a type or size the profile does not allow."""

    code = "weak_key"


class NameNotAllowed(PolicyViolation):
    """A subject or SAN name is not allowed by the profile or the CA's name constraints."""

    code = "name_not_allowed"


class KeyBlocked(PolicyViolation):
    """The public key is on the compromised-key blocklist: KMI never certifies it again."""

    code = "key_blocked"


class ApprovalRequired(PolicyViolation):
    """The profile needs an operator's approval: the use case that signs at once refuses it
    (renewals of such certificates are submitted for review with ``pki.renewal.renew``)."""

    code = "approval_required"


class NotAuthorized(PKIError):
    """The person acting holds no current grant for this (their role was revoked or never given)."""

    code = "not_authorized"


class SeparationOfDuties(NotAuthorized):
    """The person acting asked for this change: a different person must approve it."""

    code = "separation_of_duties"


class UnsupportedExtension(PolicyViolation):
    """The CSR asks for a critical extension KMI does not understand."""

    code = "unsupported_extension"


class InvalidState(PKIError):
    """The object is not in a state that allows the operation (e.g. approving an issued request)."""

    code = "invalid_state"


class CAUnavailable(InvalidState):
    """The CA cannot sign: it is disabled, expired, or its key is not active."""

    code = "ca_unavailable"


class KeyBackendError(PKIError):
    """The key backend failed (unknown KEK, tampered ciphertext, HSM error)."""

    code = "key_backend"


class AuditChainBroken(PKIError):
    """The audit hash chain does not verify."""

    code = "audit_broken"


class SigningUnavailable(PKIError):
    """No signing worker could take the job: the queue is unreachable or no worker answered in time.

    The work that was acknowledged before (a stored request) is kept; retrying later finishes it.
    Adapters map this to "service unavailable" (HTTP 503). ``request_id`` names the stored
    request that waits for its certificate, when there is one.
    """

    code = "signing_unavailable"
    request_id: int | None = None


class SigningFailed(PKIError):
    """The signing worker failed with an unexpected error (not a domain error); see its log."""

    code = "signing_failed"


class NotificationFailed(PKIError):
    """A notice could not be delivered (SMTP or webhook error); it is retried later."""

    code = "notification_failed"


class AlreadyDelivered(InvalidState):
    """A one-time delivery (a server-generated key's PKCS#12) was already taken."""

    code = "already_delivered"


class AlreadyExists(InvalidState):
    """An object with that name exists already (a duplicate ACME endpoint name, …)."""

    code = "already_exists"


class NotAuthenticated(PKIError):
    """A device's credential (enrollment code, challenge password, client certificate) is
    missing, wrong, expired or used up."""

    code = "not_authenticated"


class SigningRefused(PKIError):
    """A signing worker refused a job: no committed job, a bad MAC, or the authority behind it is gone."""

    code = "signing_refused"
