"""ACME order use cases: newOrder, challenges and their validation, finalize, revokeCert,
renewal information (RFC 8555 §7.4 to §7.6, RFC 8737, RFC 8738, RFC 9773)."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from django.db import transaction

from pki import audit
from pki.blocklist import ensure_not_blocked
from pki.clock import resolve
from pki.exceptions import InvalidCSR, InvalidState, KeyBlocked, PolicyViolation
from pki.issuance import issue_certificate, parse_csr
from pki.lifecycle_conf import lifecycle_settings
from pki.models.acme import (
    AcmeAccount,
    AcmeAuthorization,
    AcmeChallenge,
    AcmeEndpoint,
    AcmeOrder,
    AuthorizationStatus,
    ChallengeStatus,
    ChallengeType,
    OrderStatus,
)
from pki.models.certificate import Certificate, RevocationReason
from pki.profiles import check_public_key
from pki.revocation import revoke_certificate
from pki.x509.csr import CheckedCSR
from pki.x509.names import SAN

from . import jws as jose
from .conf import acme_settings
from .endpoints import check_identifier_allowed, parse_identifier
from .exceptions import (
    AcmeError,
    AlreadyReplaced,
    AlreadyRevoked,
    BadCSR,
    BadPublicKey,
    BadRevocationReason,
    Malformed,
    NotFoundAcme,
    OrderNotReady,
    RejectedIdentifier,
    Unauthorized,
)
from .validation import ValidationFailed, check_dns01, check_http01, check_tls_alpn01

log = logging.getLogger(__name__)

MAX_IDENTIFIERS = 100
ACME_ERROR = "urn:ietf:params:acme:error:"

# RFC 5280 §5.3.1 reason codes a subscriber may give (RFC 8555 §7.6).
REASON_CODES = {
    0: RevocationReason.UNSPECIFIED,
    1: RevocationReason.KEY_COMPROMISE,
    3: RevocationReason.AFFILIATION_CHANGED,
    4: RevocationReason.SUPERSEDED,
    5: RevocationReason.CESSATION_OF_OPERATION,
}


def _scope(endpoint_id: int) -> str:
    return f"acme:{endpoint_id}"


def _identifier_san(authz: AcmeAuthorization) -> SAN:
    value = f"*.{authz.identifier_value}" if authz.wildcard else authz.identifier_value
    return SAN(authz.identifier_type, value)


def order_sans(order: AcmeOrder) -> set[SAN]:
    """The order's identifiers as SANs."""
    return {SAN(i["type"], i["value"]) for i in order.identifiers}


# --- RFC 9773 certificate identifiers ---------------------------------------------------------


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


# --- newOrder ----------------------------------------------------------------------------------


def _replaced_certificate(account: AcmeAccount, value: object) -> Certificate:
    cert = certificate_for_id(account.endpoint, value)
    origin = AcmeOrder.objects.filter(certificate=cert).select_related("account").first()
    if origin is None or origin.account_id != account.pk:
        raise Unauthorized("replaces names a certificate this account did not order")
    previous = AcmeOrder.objects.filter(replaces=cert).first()
    if previous is not None:
        if previous.status == OrderStatus.VALID:
            raise AlreadyReplaced("the certificate named by replaces was already replaced")
        previous.replaces = None
        previous.save(update_fields=["replaces"])
    return cert


def _checked_identifiers(endpoint: AcmeEndpoint, raw: object) -> list[SAN]:
    """Parse newOrder identifiers and check each against policy (all problems reported at once)."""
    if not isinstance(raw, list) or not raw:
        raise Malformed("newOrder needs a non-empty identifiers array")
    if len(raw) > MAX_IDENTIFIERS:
        raise RejectedIdentifier(f"an order may name at most {MAX_IDENTIFIERS} identifiers")
    sans = list(dict.fromkeys(parse_identifier(i) for i in raw))
    problems = []
    for san in sans:
        try:
            check_identifier_allowed(endpoint, san)
        except RejectedIdentifier as exc:
            problems.append(
                {
                    "type": ACME_ERROR + "rejectedIdentifier",
                    "detail": exc.detail,
                    "identifier": {"type": san.kind, "value": san.value},
                }
            )
    if problems:
        raise RejectedIdentifier("; ".join(str(p["detail"]) for p in problems), subproblems=problems)
    return sans


def _order_validity(endpoint: AcmeEndpoint, payload: dict[str, Any], now: dt.datetime) -> int | None:
    """The validity in days: the endpoint's, or up to a requested notAfter within the cap."""
    if payload.get("notBefore") is not None:
        raise Malformed("notBefore is not supported: certificates start when they are issued")
    if payload.get("notAfter") is None:
        return endpoint.validity_days
    try:
        not_after = dt.datetime.fromisoformat(str(payload["notAfter"]).replace("Z", "+00:00"))
    except ValueError:
        raise Malformed("notAfter is not an RFC 3339 date-time") from None
    if not_after.tzinfo is None or not_after <= now:
        raise Malformed("notAfter must be a future RFC 3339 date-time with a time zone")
    days = -(-(not_after - now) // dt.timedelta(days=1))
    cap = endpoint.validity_days or endpoint.profile.validity_days
    if days > cap:
        raise RejectedIdentifier(f"notAfter is past this endpoint's validity cap of {cap} days")
    return days


def new_order(
    *, account: AcmeAccount, payload: dict[str, Any], actor: str, now: dt.datetime | None = None
) -> AcmeOrder:
    """newOrder (RFC 8555 §7.4): check identifiers against policy, create authorizations and challenges."""
    now = resolve(now)
    endpoint = account.endpoint
    sans = _checked_identifiers(endpoint, payload.get("identifiers"))
    validity_days = _order_validity(endpoint, payload, now)
    conf = acme_settings()
    expires = now + dt.timedelta(seconds=conf.order_lifetime_seconds)
    with transaction.atomic():
        replaces = None
        if payload.get("replaces") is not None:
            replaces = _replaced_certificate(account, payload["replaces"])
        order = AcmeOrder.objects.create(
            account=account,
            identifiers=[{"type": s.kind, "value": s.value} for s in sans],
            validity_days=validity_days,
            expires=expires,
            replaces=replaces,
            created_at=now,
        )
        reused = 0
        for san in sans:
            if conf.reuse_authorizations and _reuse_authorization(order, san, now):
                reused += 1
                continue
            _new_authorization(order, san, expires)
        if reused == len(sans):
            order.status = OrderStatus.READY
            order.save(update_fields=["status"])
        audit.record(
            action="acme.order.created",
            actor=actor,
            obj=order,
            details={
                "account": account.token,
                "identifiers": [str(s) for s in sans],
                "replaces": replaces.serial if replaces else None,
                "reused_authorizations": reused,
            },
            scope=_scope(endpoint.pk),
            now=now,
        )
    return order


def _new_authorization(order: AcmeOrder, san: SAN, expires: dt.datetime) -> None:
    wildcard = san.kind == "dns" and san.value.startswith("*.")
    authz = AcmeAuthorization.objects.create(
        order=order,
        identifier_type=san.kind,
        identifier_value=san.value[2:] if wildcard else san.value,
        wildcard=wildcard,
        expires=expires,
    )
    if wildcard:  # RFC 8555 §7.1.3: wildcards only by dns-01
        kinds = [ChallengeType.DNS_01]
    elif san.kind == "ip":  # RFC 8738 §7: no dns-01 for IP addresses
        kinds = [ChallengeType.HTTP_01, ChallengeType.TLS_ALPN_01]
    else:
        kinds = [ChallengeType.HTTP_01, ChallengeType.DNS_01, ChallengeType.TLS_ALPN_01]
    AcmeChallenge.objects.bulk_create(
        AcmeChallenge(authorization=authz, type=k, token=secrets.token_urlsafe(32)) for k in kinds
    )


def _reuse_authorization(order: AcmeOrder, san: SAN, now: dt.datetime) -> bool:
    """RFC 8555 §7.1.4: an account's still-valid authorization for the same identifier counts again.

    The new order gets its own copy (valid, with the challenge that proved it and the same expiry).
    """
    wildcard = san.kind == "dns" and san.value.startswith("*.")
    previous = (
        AcmeAuthorization.objects.filter(
            order__account_id=order.account_id,
            identifier_type=san.kind,
            identifier_value=san.value[2:] if wildcard else san.value,
            wildcard=wildcard,
            status=AuthorizationStatus.VALID,
            expires__gt=now,
        )
        .order_by("-expires")
        .first()
    )
    if previous is None:
        return False
    proof = previous.challenges.filter(status=ChallengeStatus.VALID).first()
    authz = AcmeAuthorization.objects.create(
        order=order,
        identifier_type=previous.identifier_type,
        identifier_value=previous.identifier_value,
        wildcard=previous.wildcard,
        status=AuthorizationStatus.VALID,
        expires=previous.expires,
    )
    if proof is not None:
        AcmeChallenge.objects.create(
            authorization=authz,
            type=proof.type,
            token=proof.token,
            status=ChallengeStatus.VALID,
            validated_at=proof.validated_at,
        )
    return True


def refresh_order(order: AcmeOrder, *, now: dt.datetime | None = None) -> AcmeOrder:
    """Mark an unfinished order invalid once it has expired (RFC 8555 §7.1.6)."""
    now = resolve(now)
    if order.status in (OrderStatus.PENDING, OrderStatus.READY) and order.expires <= now:
        AcmeOrder.objects.filter(pk=order.pk, status=order.status).update(status=OrderStatus.INVALID)
        order.status = OrderStatus.INVALID
    return order


# --- authorizations and challenges -------------------------------------------------------------


def deactivate_authorization(
    *, authorization: AcmeAuthorization, actor: str, now: dt.datetime | None = None
) -> AcmeAuthorization:
    """RFC 8555 §7.5.2: the client gives up an authorization; its order becomes invalid."""
    now = resolve(now)
    with transaction.atomic():
        authz = AcmeAuthorization.objects.select_for_update().select_related("order").get(pk=authorization.pk)
        if authz.status not in (AuthorizationStatus.PENDING, AuthorizationStatus.VALID):
            raise Malformed(f"authorization is {authz.status}; only pending or valid ones can be deactivated")
        authz.status = AuthorizationStatus.DEACTIVATED
        authz.save(update_fields=["status"])
        AcmeOrder.objects.filter(
            pk=authz.order_id, status__in=[OrderStatus.PENDING, OrderStatus.READY]
        ).update(status=OrderStatus.INVALID)
        audit.record(
            action="acme.authorization.deactivated",
            actor=actor,
            obj=authz,
            details={"identifier": str(_identifier_san(authz))},
            scope=_scope(authz.order.account.endpoint_id),
            now=now,
        )
    return authz


def respond_to_challenge(
    *, challenge: AcmeChallenge, actor: str, now: dt.datetime | None = None
) -> AcmeChallenge:
    """RFC 8555 §7.5.1: the client is ready; mark the challenge processing and schedule validation."""
    now = resolve(now)
    with transaction.atomic():
        chall = (
            AcmeChallenge.objects.select_for_update()
            .select_related("authorization__order")
            .get(pk=challenge.pk)
        )
        authz = chall.authorization
        if chall.status != ChallengeStatus.PENDING or authz.status != AuthorizationStatus.PENDING:
            return chall  # repeated or late responses change nothing
        if authz.expires <= now:
            raise Malformed("the authorization has expired")
        chall.status = ChallengeStatus.PROCESSING
        chall.save(update_fields=["status"])
        challenge_id = chall.pk
        transaction.on_commit(lambda: schedule_validation(challenge_id))
    return chall


def schedule_validation(challenge_id: int) -> None:
    """Validate on a Celery worker, or in this process when configured (no broker or no worker).

    With ``CELERY_TASK_ALWAYS_EAGER`` Celery itself runs the task here.
    """
    if acme_settings().validate_inline:
        validate_challenge(challenge_id=challenge_id, actor="acme:validator")
        return
    from pki.tasks import acme_validate_challenge

    acme_validate_challenge.delay(challenge_id)


def _run_check(chall: AcmeChallenge, key_authz: str) -> None:
    conf = acme_settings()
    authz = chall.authorization
    if chall.type == ChallengeType.HTTP_01:
        check_http01(host=authz.identifier_value, token=chall.token, key_authorization=key_authz, conf=conf)
    elif chall.type == ChallengeType.DNS_01:
        check_dns01(domain=authz.identifier_value, key_authorization=key_authz, conf=conf)
    else:
        check_tls_alpn01(
            kind=authz.identifier_type, value=authz.identifier_value, key_authorization=key_authz, conf=conf
        )


def validate_challenge(*, challenge_id: int, actor: str, now: dt.datetime | None = None) -> AcmeChallenge:
    """Check a processing challenge over the network, then settle challenge, authorization and order.

    Safe to run twice: a challenge that is no longer processing is returned unchanged.
    """
    chall = AcmeChallenge.objects.select_related("authorization__order__account").get(pk=challenge_id)
    if chall.status != ChallengeStatus.PROCESSING:
        return chall
    account = chall.authorization.order.account
    error: dict[str, Any] | None = None
    try:
        _run_check(chall, jose.key_authorization(chall.token, account.jwk))
    except ValidationFailed as exc:
        error = {"type": ACME_ERROR + exc.code, "detail": exc.detail, "status": 403}
    now = resolve(now)
    with transaction.atomic():
        chall = (
            AcmeChallenge.objects.select_for_update()
            .select_related("authorization__order")
            .get(pk=challenge_id)
        )
        if chall.status != ChallengeStatus.PROCESSING:
            return chall
        authz = AcmeAuthorization.objects.select_for_update().get(pk=chall.authorization_id)
        order = AcmeOrder.objects.select_for_update().get(pk=authz.order_id)
        chall.status = ChallengeStatus.INVALID if error else ChallengeStatus.VALID
        chall.error = error
        chall.validated_at = now if error is None else None
        chall.save(update_fields=["status", "error", "validated_at"])
        if authz.status == AuthorizationStatus.PENDING:
            authz.status = AuthorizationStatus.INVALID if error else AuthorizationStatus.VALID
            authz.save(update_fields=["status"])
        if order.status == OrderStatus.PENDING:
            if error is not None:
                order.status = OrderStatus.INVALID
                order.error = error
            elif not order.authorizations.exclude(status=AuthorizationStatus.VALID).exists():
                order.status = OrderStatus.READY
            order.save(update_fields=["status", "error"])
        audit.record(
            action="acme.challenge.invalid" if error else "acme.challenge.valid",
            actor=actor,
            obj=chall,
            details={"type": chall.type, "identifier": str(_identifier_san(authz)), "error": error},
            scope=_scope(account.endpoint_id),
            now=now,
        )
    return chall


# --- finalize ----------------------------------------------------------------------------------


def _csr_names(csr: x509.CertificateSigningRequest, sans: tuple[SAN, ...]) -> set[SAN]:
    names = set(sans)
    for attr in csr.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME):
        value = str(attr.value)
        names.add(SAN("ip", value) if _is_ip(value) else SAN("dns", value.lower()))
    return names


def _is_ip(value: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def finalize_order(
    *, order: AcmeOrder, csr_der: bytes, actor: str, now: dt.datetime | None = None
) -> AcmeOrder:
    """RFC 8555 §7.4: the CSR must name exactly the order's identifiers and pass the profile; issue.

    With ``KMI_SIGNING=worker`` this process holds no CA key: the order turns ``processing``
    and a signing worker issues it (``complete_finalization``); the client polls the order.
    """
    now = resolve(now)
    endpoint = order.account.endpoint
    # Before the order's transaction, so the refusal's audit event is kept.
    _refuse_blocked_key(csr_der, actor=actor, now=now)
    with transaction.atomic():
        order = refresh_order(AcmeOrder.objects.select_for_update().get(pk=order.pk), now=now)
        if order.status != OrderStatus.READY:
            raise OrderNotReady(f"order is {order.status}, not ready")
        checked = _checked_csr(order, endpoint, csr_der)
        if lifecycle_settings().signs_on_worker:
            order.status = OrderStatus.PROCESSING
            order.csr_der = csr_der
            order.save(update_fields=["status", "csr_der"])
            audit.record(
                action="acme.order.processing",
                actor=actor,
                obj=order,
                details={"signing": "worker"},
                scope=_scope(endpoint.pk),
                now=now,
            )
            from pki.tasks import enqueue

            # Sent after commit; if the broker is down, the sweep on the beat schedule sends it.
            enqueue("pki.signing.acme_finalize", order_id=order.pk, actor=actor)
            return order
        _issue_for_order(order, endpoint, checked, actor=actor, now=now)
    return order


def complete_finalization(*, order_id: int, actor: str, now: dt.datetime | None = None) -> AcmeOrder:
    """Issue the certificate of a ``processing`` order on a signing worker (idempotent)."""
    now = resolve(now)
    with transaction.atomic():
        order = (
            AcmeOrder.objects.select_for_update()
            .select_related("account__endpoint__ca", "account__endpoint__profile")
            .get(pk=order_id)
        )
        if order.status != OrderStatus.PROCESSING or order.csr_der is None:
            return order  # done already (a replayed task), or never handed over
        endpoint = order.account.endpoint
        try:
            checked = _checked_csr(order, endpoint, bytes(order.csr_der))
            _issue_for_order(order, endpoint, checked, actor=actor, now=now)
        except AcmeError as exc:
            # The policy or the CA changed since finalize accepted the CSR: the order fails.
            order.status = OrderStatus.INVALID
            order.error = {"type": ACME_ERROR + exc.code, "detail": exc.detail, "status": 400}
            order.csr_der = None
            order.save(update_fields=["status", "error", "csr_der"])
            audit.record(
                action="acme.order.invalid",
                actor=actor,
                obj=order,
                details={"error": exc.detail},
                scope=_scope(endpoint.pk),
                now=now,
            )
    return order


def finalize_pending_orders(*, actor: str, now: dt.datetime | None = None) -> int:
    """Issue ``processing`` orders whose hand-over message was lost (broker down at finalize).

    Safe beside the task itself: ``complete_finalization`` locks the order and skips it once
    it is no longer processing.
    """
    now = resolve(now)
    pending = list(
        AcmeOrder.objects.filter(
            status=OrderStatus.PROCESSING, csr_der__isnull=False, expires__gt=now
        ).values_list("pk", flat=True)
    )
    for order_id in pending:
        complete_finalization(order_id=order_id, actor=actor, now=now)
    return len(pending)


def _checked_csr(order: AcmeOrder, endpoint: AcmeEndpoint, csr_der: bytes) -> CheckedCSR:
    """The finalize CSR, checked: it parses, is not the account key, names exactly the order."""
    if csr_der.lstrip().startswith(b"-----BEGIN"):
        raise BadCSR("the csr field is base64url DER, not PEM (RFC 8555 §7.4)")
    try:
        # parse_csr is the one CSR parser of every path: any parse error is an InvalidCSR.
        checked = parse_csr(csr_der)
    except InvalidCSR as exc:
        raise BadCSR(f"CSR is not acceptable: {exc}") from None
    except PolicyViolation as exc:
        raise BadCSR(str(exc)) from None
    _check_not_account_key(checked.public_key, order.account)
    names, wanted = _csr_names(checked.csr, checked.sans), order_sans(order)
    if names != wanted:
        extra = sorted(str(n) for n in names - wanted)
        missing = sorted(str(n) for n in wanted - names)
        raise BadCSR(
            "the CSR must name exactly the order's identifiers"
            + (f"; not in the order: {', '.join(extra)}" if extra else "")
            + (f"; missing: {', '.join(missing)}" if missing else "")
        )
    if endpoint.key_types:
        try:
            check_public_key(_key_policy(endpoint), checked.public_key)
        except PolicyViolation as exc:
            raise BadCSR(str(exc)) from None
    return checked


def _issue_for_order(
    order: AcmeOrder, endpoint: AcmeEndpoint, checked: CheckedCSR, *, actor: str, now: dt.datetime
) -> None:
    """Issue the order's certificate and mark it valid (inside the caller's transaction)."""
    try:
        cert = issue_certificate(
            ca=endpoint.ca,
            profile=endpoint.profile,
            csr=checked,
            validity_days=order.validity_days,
            actor=actor,
            now=now,
        )
    except KeyBlocked as exc:
        raise BadPublicKey(str(exc)) from None
    except (PolicyViolation, InvalidCSR) as exc:
        raise BadCSR(str(exc)) from None
    order.status = OrderStatus.VALID
    order.certificate = cert
    order.csr_der = None
    order.save(update_fields=["status", "certificate", "csr_der"])
    audit.record(
        action="acme.order.finalized",
        actor=actor,
        obj=order,
        details={"serial": cert.serial, "replaces": order.replaces.serial if order.replaces else None},
        scope=_scope(endpoint.pk),
        now=now,
    )


def _refuse_blocked_key(csr_der: bytes, *, actor: str, now: dt.datetime) -> None:
    """A CSR whose key is on the compromised-key blocklist is ``badPublicKey`` (audited)."""
    try:
        public_key = x509.load_der_x509_csr(csr_der).public_key()
    except ValueError:
        return  # not a DER CSR: _checked_csr says why (badCSR)
    spki = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    try:
        ensure_not_blocked(
            spki_sha256=hashlib.sha256(spki).hexdigest(), actor=actor, path="acme.finalize", now=now
        )
    except KeyBlocked as exc:
        raise BadPublicKey(str(exc)) from None


def _check_not_account_key(public_key: object, account: AcmeAccount) -> None:
    """A certificate must not carry the account's own key (as Let's Encrypt also refuses)."""
    try:
        thumbprint = jose.jwk_thumbprint(jose.jwk_of(public_key))
    except AcmeError:
        return  # a key type accounts cannot have cannot be the account key
    if thumbprint == account.jwk_thumbprint:
        raise BadCSR("the CSR's public key is the account key; use a separate key for the certificate")


def _key_policy(endpoint: AcmeEndpoint) -> Any:
    from dataclasses import replace

    return replace(endpoint.profile.policy(), key_types=frozenset(endpoint.key_types))


# --- revocation --------------------------------------------------------------------------------


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
