"""Answering an OCSP request: pre-signed when it can, live when it must (and may)."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from pki.clock import resolve
from pki.conf import lifecycle_settings, ocsp_settings
from pki.keys import get_backend
from pki.models.certificate import Certificate
from pki.ocsp.caches import ISSUERS, LOCAL, MISSES, SIGNERS
from pki.ocsp.issuers import Issuer
from pki.ocsp.responses import SignedResponse, build_response, single_status
from pki.ocsp.store import PRESIGNED_HASHES, STORE
from pki.x509 import ocsp_der
from pki.x509.ocsp_der import (
    MalformedRequest,
    ParsedRequest,
    ResponseStatus,
    error_response,
)
from pki.x509.serials import serial_hex

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Answer:
    """An encoded OCSPResponse and, when it may be cached (RFC 5019 §6), its validity window."""

    der: bytes
    this_update: dt.datetime | None = None
    next_update: dt.datetime | None = None

    @property
    def cacheable(self) -> bool:
        """True for a successful response without a nonce."""
        return self.next_update is not None


MALFORMED = Answer(error_response(ResponseStatus.MALFORMED_REQUEST))
UNAUTHORIZED = Answer(error_response(ResponseStatus.UNAUTHORIZED))
TRY_LATER = Answer(error_response(ResponseStatus.TRY_LATER))
INTERNAL_ERROR = Answer(error_response(ResponseStatus.INTERNAL_ERROR))


def signs_live() -> bool:
    """True when this process may sign OCSP responses itself (no key is loaded to find out).

    Not with ``KMI_SIGNING=worker``, where web processes hold no key material, nor when the
    default backend (where responder keys are generated) says it cannot sign here: the
    ``encrypted`` backend without a KEK.
    """
    if lifecycle_settings().signs_on_worker:
        return False
    can_sign = getattr(get_backend(), "can_sign", None)
    return bool(can_sign()) if callable(can_sign) else True


def answer(request_der: bytes, *, ca_name: str, now: dt.datetime | None = None) -> Answer:
    """Answer a DER OCSPRequest sent to the URL of CA ``ca_name`` (RFC 6960 §4.2.1 statuses)."""
    try:
        parsed = ocsp_der.parse_request(request_der)
    except MalformedRequest:
        return MALFORMED
    if ISSUERS.by_name(ca_name) is None:
        return UNAUTHORIZED
    issuers = [ISSUERS.by_cert_id(cert_id) for cert_id in parsed.cert_ids]
    first = issuers[0]
    # One response is signed by one CA's responder: every CertID must name that same KMI CA.
    if first is None or any(i is not first for i in issuers):
        return UNAUTHORIZED
    return _answer(first, parsed, resolve(now))


def _answer(issuer: Issuer, parsed: ParsedRequest, now: dt.datetime) -> Answer:
    cert_id = parsed.cert_ids[0]
    presignable = len(parsed.cert_ids) == 1 and cert_id.hash_algorithm in PRESIGNED_HASHES
    # A nonce needs a live signature where one can be made; elsewhere RFC 8954 §2.1 (RFC 6960
    # §4.4.1) lets the responder leave it out: the client then judges freshness by thisUpdate
    # (openssl warns "no nonce in response" and verifies).
    if presignable and (parsed.nonce is None or not signs_live()):
        hit = _presigned(issuer, cert_id, now)
        if hit is not None:
            return Answer(hit.der, hit.this_update, hit.next_update)
    if signs_live():
        return _sign_live(issuer, parsed, now)
    if not presignable:
        # One signature covers every SingleResponse of a response, and only SHA-1 and SHA-256
        # CertIDs are pre-signed: without a key this cannot be answered now (RFC 6960 §2.3).
        return TRY_LATER
    return _ask_for_presigning(issuer, cert_id, now)


def _ask_for_presigning(issuer: Issuer, cert_id: ocsp_der.CertID, now: dt.datetime) -> Answer:
    """A miss in a process that cannot sign: ``tryLater`` while the signing queue pre-signs it.

    A serial the CA never issued, or an expired certificate, is never pre-signed (there is no
    end to the serials anyone can ask about): that is ``unauthorized``, the status for a
    responder that cannot answer authoritatively (RFC 6960 §2.3, RFC 5019 §2.2.3).
    """
    found = (
        Certificate.objects.filter(
            ca_id=issuer.ca_id,
            issuer_generation=issuer.generation,
            serial=serial_hex(cert_id.serial_number),
            not_after__gt=now,
        )
        .values_list("pk", flat=True)
        .first()
        if cert_id.serial_number > 0
        else None
    )
    if found is None:
        return UNAUTHORIZED
    if MISSES.ask(ca_id=issuer.ca_id, certificate_id=found):
        log.info("OCSP: no pre-signed response for certificate %s of CA %s yet", found, issuer.name)
    return TRY_LATER


def _presigned(issuer: Issuer, cert_id: ocsp_der.CertID, now: dt.datetime) -> SignedResponse | None:
    """The pre-signed response: local micro-cache, then Redis, then the database."""
    if cert_id.serial_number <= 0:
        return None
    key = (issuer.ca_id, serial_hex(cert_id.serial_number), cert_id.hash_algorithm)
    hit = LOCAL.get(key)
    if hit is None or hit.next_update <= now:
        hit = STORE.get_cached(*key)
        if hit is None:
            hit = STORE.get_stored(*key, now)
        if hit is None or hit.next_update <= now:
            return None
        seconds = ocsp_settings().local_cache_seconds
        if seconds > 0:
            LOCAL.put(key, hit, seconds)
    # Serials are unique per CA, not per generation (CA key): a response pre-signed for this
    # serial under another generation's key names another CertID and does not answer this one.
    return hit if cert_id.issuer_key_hash in hit.der else None


def _sign_live(issuer: Issuer, parsed: ParsedRequest, now: dt.datetime) -> Answer:
    signer = SIGNERS.get(issuer.ca_id, now, issuer.generation)
    if signer is None:
        log.warning("OCSP: CA %s has no current responder yet; answering tryLater", issuer.name)
        return TRY_LATER
    serials = {serial_hex(c.serial_number) for c in parsed.cert_ids if c.serial_number > 0}
    found = {
        serial: (revoked_at, reason)
        for serial, revoked_at, reason in Certificate.objects.filter(
            ca_id=issuer.ca_id, issuer_generation=issuer.generation, serial__in=serials
        ).values_list("serial", "revoked_at", "revocation_reason")
    }
    singles = []
    for c in parsed.cert_ids:
        serial = serial_hex(c.serial_number) if c.serial_number > 0 else ""
        revoked_at, reason = found.get(serial, (None, None))
        singles.append(single_status(c.der, revoked_at, reason, known=serial in found))
    signed = build_response(signer=signer, singles=singles, now=now, nonce=parsed.nonce)
    if parsed.nonce is not None:
        return Answer(signed.der)
    return Answer(signed.der, signed.this_update, signed.next_update)
