"""SCEP operations (RFC 8894 §3.3, §4): GetCACaps, GetCACert and PKIOperation.

Enrollment goes through the same use cases as the REST API: ``pki.enrollment.enroll`` for
PKCSReq (profile policy, approval, audit, signing path) and ``pki.renewal.renew``
for RenewalReq. The audit actor names the protocol, the label and the device:
``scep:<label>/challenge:<id>``, ``scep:<label>/static`` or ``scep:<label>/cert:<SHA-256 prefix>``.
Every refusal is a CertRep FAILURE with a failInfo; only a body that is no pkiMessage at all
raises ``Unreadable``.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import AttributeOID
from django.db import IntegrityError, transaction

from pki import exceptions as errors
from pki.blocklist import ensure_not_blocked
from pki.clock import resolve
from pki.enrollment import Enrollment, enroll, issue_approved
from pki.issuance import parse_csr, submit_request
from pki.keys import get_backend
from pki.models.authority import CertificateAuthority
from pki.models.certificate import Certificate
from pki.models.crl import CertificateRevocationList
from pki.models.device import ScepLabel, ScepTransaction
from pki.models.request import RequestState
from pki.renewal import Renewal, renew
from pki.signing import run_signing, signs_here
from pki.x509.csr import spki_fingerprint

from . import messages as m
from .labels import use_challenge

log = logging.getLogger(__name__)

# RFC 8894 §3.5.2; SCEPStandard says AES, POSTPKIOperation and SHA-256 together.
CA_CAPS = ("AES", "DES3", "POSTPKIOperation", "Renewal", "SHA-256", "SHA-512", "SCEPStandard")
MAX_CLOCK_SKEW = dt.timedelta(hours=24)  # signingTime further off than this: badTime
CERT_ID_CHARS = 16


def ca_caps() -> str:
    """The GetCACaps answer: one capability a line."""
    return "\n".join(CA_CAPS) + "\n"


def ca_certificates(label: ScepLabel) -> bytes:
    """The GetCACert answer (RFC 8894 §4.2.1.2): a certs-only bundle of the issuing CA, the RA
    certificate requests are encrypted to, and the CA's chain up to its root."""
    chain: list[x509.Certificate] = [label.ca.x509_certificate(), label.ra_certificate.x509()]
    ca: CertificateAuthority | None = label.ca.parent
    while ca is not None and len(chain) < 16:
        chain.append(ca.x509_certificate())
        ca = ca.parent
    return m.degenerate(chain)


@dataclass(frozen=True)
class _Outcome:
    status: m.PkiStatus
    content: bytes = b""  # a degenerate SignedData for SUCCESS
    fail_info: m.FailInfo | None = None


def _key_id(cert: x509.Certificate) -> str:
    return spki_fingerprint(cert.public_key())


def _cert_id(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


def answer_pki_operation(*, label: ScepLabel, body: bytes) -> bytes:
    """Answer one pkiMessage where the RA and CA keys are: here, or on the signer when
    ``KMI_SIGNING=worker`` (the web process holds no KEK to open the envelope or sign the CertRep).

    The message authenticates itself (challenge password or the renewed certificate's signature,
    inside the envelope only the RA key opens), so the signer runs every check of
    ``pki_operation`` itself; the signing channel carries the label's id and the bytes.
    """
    if signs_here():
        return pki_operation(label=label, body=body)
    result = run_signing(
        "scep_operation",
        label_id=label.pk,
        body=base64.b64encode(body).decode(),
        actor=f"scep:{label.name}",
    )
    if result.get("unreadable"):
        raise m.Unreadable(str(result["unreadable"]))
    return base64.b64decode(result["reply"])


def pki_operation(*, label: ScepLabel, body: bytes, now: dt.datetime | None = None) -> bytes:
    """Answer one pkiMessage with a CertRep signed by the label's RA key (``Unreadable`` only when
    the body is not a pkiMessage at all)."""
    now = resolve(now)
    backend, handle = get_backend(label.ra_key.backend), label.ra_key.handle
    ra_certificate = label.ra_certificate.x509()
    try:
        message = m.parse_pki_message(body)
    except m.RefusedMessage as exc:
        log.info("SCEP %s: refused message %s: %s", label.name, exc.partial.transaction_id, exc)
        return m.cert_rep(
            transaction_id=exc.partial.transaction_id,
            recipient_nonce=exc.partial.sender_nonce,
            status=m.PkiStatus.FAILURE,
            fail_info=exc.fail_info,
            signer=ra_certificate,
            backend=backend,
            handle=handle,
        )
    try:
        outcome = _dispatch(label=label, message=message, ra_certificate=ra_certificate, now=now)
        envelope = (
            m.envelope_for(outcome.content, message.signer, cipher=message.cipher)
            if outcome.status == m.PkiStatus.SUCCESS
            else b""
        )
    except m.Refused as exc:
        log.info("SCEP %s: transaction %s refused: %s", label.name, message.transaction_id, exc)
        outcome, envelope = _Outcome(m.PkiStatus.FAILURE, fail_info=exc.fail_info), b""
    return m.cert_rep(
        transaction_id=message.transaction_id,
        recipient_nonce=message.sender_nonce,
        status=outcome.status,
        fail_info=outcome.fail_info,
        signer=ra_certificate,
        backend=backend,
        handle=handle,
        envelope=envelope,
    )


def _dispatch(
    *, label: ScepLabel, message: m.PkiMessage, ra_certificate: x509.Certificate, now: dt.datetime
) -> _Outcome:
    if message.signing_time is not None and abs(message.signing_time - now) > MAX_CLOCK_SKEW:
        raise m.Refused(m.FailInfo.BAD_TIME, f"signingTime {message.signing_time.isoformat()} is too far off")
    if not message.envelope:
        raise m.Refused(m.FailInfo.BAD_REQUEST, "the pkiMessage carries no pkcsPKIEnvelope")
    if not isinstance(message.signer.public_key(), rsa.RSAPublicKey):
        # The reply is encrypted to the signer's key: RSA key transport only (RFC 8894 §2.1).
        raise m.Refused(m.FailInfo.BAD_ALG, "the signer's key must be RSA: the reply is encrypted to it")
    key = label.ra_key
    content = m.decrypt_envelope(
        message.envelope, backend=get_backend(key.backend), handle=key.handle, recipient=ra_certificate
    )
    try:
        if message.message_type in (m.MessageType.PKCS_REQ, m.MessageType.RENEWAL_REQ):
            return _enrollment(label=label, message=message, content=content, now=now)
        if message.message_type == m.MessageType.CERT_POLL:
            m.issuer_and_subject(content)
            return _poll(label=label, message=message)
        if message.message_type == m.MessageType.GET_CERT:
            return _get_cert(label=label, content=content)
        if message.message_type == m.MessageType.GET_CRL:
            return _get_crl(label=label)
    except errors.NotFound as exc:
        raise m.Refused(m.FailInfo.BAD_CERT_ID, str(exc)) from None
    except errors.SigningUnavailable:
        # The request is stored and approved: the client polls until a signer issues it.
        return _Outcome(m.PkiStatus.PENDING)
    except (errors.CAUnavailable, errors.KeyBackendError, errors.ConfigurationError):
        raise  # an outage, not the client's fault: the adapter answers 503
    except errors.PKIError as exc:
        raise m.Refused(m.FailInfo.BAD_REQUEST, str(exc)) from None
    raise m.Refused(m.FailInfo.BAD_REQUEST, f"messageType {message.message_type} is not a request")


def _outcome(tx: ScepTransaction, actor: str) -> _Outcome:
    certificate = tx.certificate
    if certificate is None and tx.request is not None:
        request = tx.request
        request.refresh_from_db(fields=["state"])
        if request.state not in (RequestState.PENDING, RequestState.APPROVED, RequestState.ISSUED):
            return _Outcome(m.PkiStatus.FAILURE, fail_info=m.FailInfo.BAD_REQUEST)
        # Issued, or approved and issued now by a signing worker; else it still waits.
        certificate = issue_approved(request, actor=actor)
        if certificate is None:
            return _Outcome(m.PkiStatus.PENDING)
    if certificate is None:
        return _Outcome(m.PkiStatus.FAILURE, fail_info=m.FailInfo.BAD_REQUEST)
    return _Outcome(m.PkiStatus.SUCCESS, m.degenerate([certificate.x509()]))


def _transaction(label: ScepLabel, message: m.PkiMessage) -> ScepTransaction | None:
    return (
        ScepTransaction.objects.filter(
            label=label, transaction_id=message.transaction_id, signer_sha256=_cert_id(message.signer)
        )
        .select_related("request", "certificate")
        .first()
    )


def _actor(label: ScepLabel, message: m.PkiMessage, device: str = "") -> str:
    """The audit actor: the challenge (or static secret) of a PKCSReq, the signer of the rest."""
    if device:
        return f"scep:{label.name}/{device}"
    return f"scep:{label.name}/cert:{_cert_id(message.signer)[:CERT_ID_CHARS]}"


def _enrollment(*, label: ScepLabel, message: m.PkiMessage, content: bytes, now: dt.datetime) -> _Outcome:
    existing = _transaction(label, message)
    if existing is not None:
        return _outcome(existing, _actor(label, message))  # a retransmission (RFC 8894 §3.3.1)
    checked = parse_csr(content)
    if message.message_type == m.MessageType.PKCS_REQ and checked.key_fingerprint != _key_id(message.signer):
        # RFC 8894 §2.3: the request is signed by the key it asks a certificate for.
        raise m.Refused(m.FailInfo.BAD_MESSAGE_CHECK, "the CSR's key is not the key that signed the message")
    renewal: Renewal | None = None
    actor = _actor(label, message)
    old = (
        _renewable(label, message.signer, now) if message.message_type == m.MessageType.RENEWAL_REQ else None
    )
    # Before the transaction, so that a refusal's audit event is kept (and no challenge is used).
    ensure_not_blocked(
        public_key=checked.public_key, spki_sha256=checked.key_fingerprint, actor=actor, path="scep", now=now
    )
    if old is not None and not signs_here():
        # A signing worker sees only what is committed: it renews outside our transaction.
        renewal = renew(certificate=old, csr=checked.csr, actor=actor, now=now)
    try:
        with transaction.atomic():
            if old is not None and renewal is None:
                # The REST API's renewal: issued at once, or pending when the profile needs approval.
                renewal = renew(certificate=old, csr=checked.csr, actor=actor, now=now)
            elif renewal is None:
                device = use_challenge(label=label, password=_challenge_password(checked.csr), now=now)
                actor = _actor(label, message, device)
                # Signing in process: stored and issued together. On a signing worker: the request
                # is committed with its transaction first, then issued below.
                done = (
                    enroll(ca=label.ca, profile=label.profile, csr=checked, actor=actor, now=now)
                    if signs_here()
                    else Enrollment(
                        request=submit_request(
                            ca=label.ca, profile=label.profile, csr=checked, actor=actor, now=now
                        ),
                        certificate=None,
                    )
                )
                renewal = Renewal(certificate=done.certificate, request=done.request)
            tx = ScepTransaction.objects.create(
                label=label,
                transaction_id=message.transaction_id,
                signer_sha256=_cert_id(message.signer),
                request=renewal.request,
                certificate=renewal.certificate,
                created_at=now,
            )
    except IntegrityError:
        # The same transaction arrived twice at once: the other one stored it; answer as it did.
        existing = _transaction(label, message)
        if existing is None:
            raise
        return _outcome(existing, actor)
    return _outcome(tx, actor)


def _challenge_password(csr: x509.CertificateSigningRequest) -> str:
    try:
        value = csr.attributes.get_attribute_for_oid(AttributeOID.CHALLENGE_PASSWORD).value
    except x509.AttributeNotFound:
        return ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _renewable(label: ScepLabel, signer: x509.Certificate, now: dt.datetime) -> Certificate:
    """RenewalReq is signed with the certificate being renewed (RFC 8894 §3.3.1.2)."""
    fingerprint = signer.fingerprint(hashes.SHA256()).hex()
    old = (
        Certificate.objects.filter(fingerprint_sha256=fingerprint, ca=label.ca)
        .select_related("ca", "profile")
        .first()
    )
    if old is None:
        raise m.Refused(m.FailInfo.BAD_CERT_ID, "RenewalReq must be signed with a certificate of this CA")
    if old.revoked_at is not None or not old.not_before <= now < old.not_after:
        raise m.Refused(m.FailInfo.BAD_CERT_ID, f"certificate {old.serial} is revoked or not valid now")
    return old


def _poll(*, label: ScepLabel, message: m.PkiMessage) -> _Outcome:
    tx = _transaction(label, message)
    if tx is None:
        raise m.Refused(m.FailInfo.BAD_CERT_ID, f"no transaction {message.transaction_id}")
    return _outcome(tx, _actor(label, message))


def _get_cert(*, label: ScepLabel, content: bytes) -> _Outcome:
    wanted = m.issuer_and_serial(content)
    ca_cert = label.ca.x509_certificate()
    if wanted.issuer != ca_cert.subject.public_bytes():
        raise m.Refused(m.FailInfo.BAD_CERT_ID, "the issuer is not this label's CA")
    row = Certificate.objects.filter(ca=label.ca, serial=format(wanted.serial, "x")).first()
    if row is None:
        raise m.Refused(m.FailInfo.BAD_CERT_ID, "no certificate with that serial number")
    return _Outcome(m.PkiStatus.SUCCESS, m.degenerate([row.x509()]))


def _get_crl(*, label: ScepLabel) -> _Outcome:
    crl = CertificateRevocationList.objects.latest_for(label.ca_id, shard=0, generation=label.ca.generation)
    if crl is None:
        raise m.Refused(m.FailInfo.BAD_CERT_ID, f"CA {label.ca.name} has published no CRL")
    return _Outcome(m.PkiStatus.SUCCESS, m.degenerate(crls=[bytes(crl.der)]))
