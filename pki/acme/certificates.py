"""ACME certificates: RFC 9773 certificate identifiers and renewal windows, revokeCert
(RFC 8555 §7.6) and the issued chains (§7.4.2, §9.1)."""

from __future__ import annotations

import datetime as dt
import hmac
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from pki.clock import resolve
from pki.exceptions import InvalidState
from pki.models.acme import AcmeAccount, AcmeEndpoint, AcmeOrder
from pki.models.certificate import Certificate, RevocationReason
from pki.revocation import revoke_certificate

from . import jws as jose
from .exceptions import AlreadyRevoked, BadRevocationReason, Malformed, NotFoundAcme, Unauthorized

# RFC 5280 §5.3.1 reason codes a subscriber may give (RFC 8555 §7.6).
REASON_CODES = {
    0: RevocationReason.UNSPECIFIED,
    1: RevocationReason.KEY_COMPROMISE,
    3: RevocationReason.AFFILIATION_CHANGED,
    4: RevocationReason.SUPERSEDED,
    5: RevocationReason.CESSATION_OF_OPERATION,
}


def cert_id(cert: x509.Certificate) -> str:
    """RFC 9773 §4.1: base64url(AKI keyIdentifier) '.' base64url(serial DER content octets)."""
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    serial = cert.serial_number.to_bytes(cert.serial_number.bit_length() // 8 + 1, "big")
    return f"{jose.b64u_encode(aki or b'')}.{jose.b64u_encode(serial)}"


def certificate_for_id(endpoint: AcmeEndpoint, value: object) -> Certificate:
    """Find the certificate of ``endpoint``'s CA named by an RFC 9773 certID."""
    if not isinstance(value, str) or value.count(".") != 1:
        raise Malformed("a certID is base64url(AKI).base64url(serial)")
    aki_b64, serial_b64 = value.split(".")
    aki = jose.b64u_decode(aki_b64, what="certID key identifier")
    serial = jose.b64u_decode(serial_b64, what="certID serial")
    if not serial or serial[0] & 0x80:
        raise Malformed("certID serial must be a positive DER INTEGER")
    ca_cert = endpoint.ca.x509_certificate()
    try:
        ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        ski = x509.SubjectKeyIdentifier.from_public_key(ca_cert.public_key()).digest
    if not hmac.compare_digest(aki, ski):
        raise NotFoundAcme("certID names a certificate of another issuer")
    row = Certificate.objects.filter(
        ca=endpoint.ca, serial=format(int.from_bytes(serial, "big"), "x")
    ).first()
    if row is None:
        raise NotFoundAcme("no certificate with this certID")
    return row


@dataclass(frozen=True)
class RenewalWindow:
    """RFC 9773 suggested renewal window."""

    start: dt.datetime
    end: dt.datetime


def renewal_window(certificate: Certificate, *, now: dt.datetime | None = None) -> RenewalWindow:
    """The window in which to renew: the last third of the lifetime, or at once when revoked."""
    now = resolve(now)
    if certificate.revoked_at is not None:
        # RFC 9773 §4.2: a window in the past asks the client to renew immediately.
        end = min(certificate.revoked_at, now)
        return RenewalWindow(end - dt.timedelta(hours=1), end)
    lifetime = certificate.not_after - certificate.not_before
    start = certificate.not_before + lifetime * 2 / 3
    return RenewalWindow(start, start + lifetime / 9)


def revoke(
    *,
    endpoint: AcmeEndpoint,
    account: AcmeAccount | None,
    signer_key: jose.AccountPublicKey,
    payload: dict[str, Any],
    actor: str,
    now: dt.datetime | None = None,
) -> Certificate:
    """revokeCert (RFC 8555 §7.6): by the account that ordered it, or signed by the certificate's key."""
    der = jose.b64u_decode(payload.get("certificate"), what="certificate")
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        raise Malformed("certificate is not a DER certificate") from None
    reason_code = payload.get("reason", 0)
    if not isinstance(reason_code, int) or isinstance(reason_code, bool) or reason_code not in REASON_CODES:
        raise BadRevocationReason(f"reason {reason_code!r} is not allowed (use 0, 1, 3, 4 or 5)")
    import hashlib

    row = (
        Certificate.objects.filter(ca=endpoint.ca, fingerprint_sha256=hashlib.sha256(der).hexdigest())
        .select_related("acme_order__account")
        .first()
    )
    if row is None:
        raise NotFoundAcme("this endpoint's CA did not issue that certificate")
    if account is not None:
        order = getattr(row, "acme_order", None)
        if order is None or order.account_id != account.pk:
            raise Unauthorized("this account did not order that certificate")
    else:
        cert_key = jose.jwk_thumbprint(jose.jwk_of(cert.public_key()))
        if cert_key != jose.jwk_thumbprint(jose.jwk_of(signer_key)):
            raise Unauthorized("the request is not signed by the certificate's key")
    if row.revoked_at is not None:
        raise AlreadyRevoked(f"certificate {row.serial} is already revoked")
    try:
        return revoke_certificate(certificate=row, reason=REASON_CODES[reason_code], actor=actor, now=now)
    except InvalidState as exc:
        raise Unauthorized(str(exc)) from None


def certificate_pem_chains(order: AcmeOrder) -> list[bytes]:
    """Every chain of the issued certificate as application/pem-certificate-chain (RFC 8555 §9.1):
    the usual one first, then the ones through a root rollover's link certificates (§7.4.2)."""
    from pki.generations import cross_chains
    from pki.issuance import chain_for

    if order.certificate is None:
        raise NotFoundAcme("the order has no certificate yet")
    chains = [chain_for(order.certificate), *cross_chains(order.certificate)]
    return [b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain) for chain in chains]


def certificate_pem_chain(order: AcmeOrder) -> bytes:
    """The issued certificate and its usual chain as application/pem-certificate-chain."""
    return certificate_pem_chains(order)[0]
