"""ACME domain errors, named by their RFC 8555 §6.7 error types (``code``); no HTTP codes here.

The web adapter maps each ``code`` once to a problem document (RFC 7807) and a status.
"""

from __future__ import annotations

from typing import Any

from pki.exceptions import PKIError

# RFC 8555 §6.7: an error type is this URN followed by the ``code``.
ERROR_NAMESPACE = "urn:ietf:params:acme:error:"


class AcmeError(PKIError):
    """An ACME request failed; ``code`` is the RFC 8555 error type without its URN prefix."""

    code = "serverInternal"

    def __init__(self, detail: str, *, subproblems: list[dict[str, Any]] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.subproblems = subproblems or []


class Malformed(AcmeError):
    """The request message was malformed."""

    code = "malformed"


class NotFoundAcme(Malformed):
    """The URL names no resource of this endpoint."""

    code = "malformed"


class PayloadTooLarge(Malformed):
    """The request body exceeds the endpoint's limit."""


class BadNonce(AcmeError):
    """The client sent an unacceptable anti-replay nonce."""

    code = "badNonce"


class BadSignatureAlgorithm(AcmeError):
    """The JWS was signed with an algorithm the server does not support."""

    code = "badSignatureAlgorithm"


class BadPublicKey(AcmeError):
    """The JWS was signed by a public key the server does not support."""

    code = "badPublicKey"


class Unauthorized(AcmeError):
    """The client lacks sufficient authorization."""

    code = "unauthorized"


class AccountNotValid(Unauthorized):
    """RFC 8555 §7.3.6: the request is signed by a deactivated (or revoked) account."""


class AccountDoesNotExist(AcmeError):
    """The request named an account that does not exist."""

    code = "accountDoesNotExist"


class ExternalAccountRequired(AcmeError):
    """The endpoint requires external account binding."""

    code = "externalAccountRequired"


class RejectedIdentifier(AcmeError):
    """The server will not issue certificates for the identifier."""

    code = "rejectedIdentifier"


class UnsupportedIdentifier(AcmeError):
    """An identifier is of an unsupported type."""

    code = "unsupportedIdentifier"


class OrderNotReady(AcmeError):
    """The request attempted to finalize an order that is not ready to be finalized."""

    code = "orderNotReady"


class BadCSR(AcmeError):
    """The CSR is unacceptable (names, key, signature, profile)."""

    code = "badCSR"


class BadRevocationReason(AcmeError):
    """The revocation reason provided is not allowed by the server."""

    code = "badRevocationReason"


class AlreadyRevoked(AcmeError):
    """The certificate is already revoked."""

    code = "alreadyRevoked"


class AlreadyReplaced(AcmeError):
    """RFC 9773: the certificate named by ``replaces`` has already been replaced."""

    code = "alreadyReplaced"


class Conflict(AcmeError):
    """The new key of a key change already belongs to another account (RFC 8555 §7.3.5)."""

    code = "conflict"

    def __init__(self, detail: str, *, location: str) -> None:
        super().__init__(detail)
        self.location = location
