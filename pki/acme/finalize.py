"""ACME finalize (RFC 8555 §7.4): check the CSR against the order and issue, here or on a
signing worker."""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from django.db import transaction

from pki import audit
from pki.blocklist import ensure_not_blocked
from pki.clock import resolve
from pki.exceptions import InvalidCSR, KeyBlocked, PolicyViolation
from pki.issuance import CertificateOptions, parse_csr, submit_and_issue
from pki.models.acme import AcmeAccount, AcmeEndpoint, AcmeOrder, OrderStatus
from pki.profiles import check_public_key
from pki.signals import acme_order_processing
from pki.signing import signs_here
from pki.x509.csr import CheckedCSR
from pki.x509.names import SAN

from . import jws as jose
from .exceptions import ERROR_NAMESPACE, AcmeError, BadCSR, BadPublicKey, OrderNotReady, Unauthorized
from .orders import audit_scope, order_sans, refresh_order


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
        if not signs_here():  # pki.signing decides where signing runs
            order.status = OrderStatus.PROCESSING
            order.csr_der = csr_der
            order.save(update_fields=["status", "csr_der"])
            audit.record(
                action="acme.order.processing",
                actor=actor,
                obj=order,
                details={"signing": "worker"},
                scope=audit_scope(endpoint.pk),
                now=now,
            )
            # Announced after commit; if the hand-over fails, the sweep on the beat schedule
            # (finalize_pending_orders) issues the order.
            order_id = order.pk
            transaction.on_commit(
                lambda: acme_order_processing.send(sender=AcmeOrder, order_id=order_id, actor=actor),
                robust=True,
            )
            return order
        _issue_for_order(order, endpoint, checked, actor=actor, now=now)
    return order


def order_actor(order: AcmeOrder) -> str:
    """The audit actor of an order's account (as the ACME views name it): ``acme:<endpoint>:<account>``."""
    return f"acme:{order.account.endpoint.name}:{order.account.token}"


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
            order.error = {"type": ERROR_NAMESPACE + exc.code, "detail": exc.detail, "status": 400}
            order.csr_der = None
            order.save(update_fields=["status", "error", "csr_der"])
            audit.record(
                action="acme.order.invalid",
                actor=actor,
                obj=order,
                details={"error": exc.detail},
                scope=audit_scope(endpoint.pk),
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


# An ACME client renews its certificates itself (RFC 9773 tells it when): KMI does not, and the
# certificate names no owner to notify.
_ORDER_OPTIONS = CertificateOptions(auto_renew=False)


def _issue_for_order(
    order: AcmeOrder, endpoint: AcmeEndpoint, checked: CheckedCSR, *, actor: str, now: dt.datetime
) -> None:
    """Submit and issue the order's CSR as every issuance path does (a request row, its audit
    events) and mark the order valid (inside the caller's transaction)."""
    if endpoint.profile.requires_approval:
        # The validated order is ACME's only approval (create_endpoint refuses such a profile;
        # it may have changed since): nothing is stored for an operator to approve.
        raise Unauthorized(
            f"profile {endpoint.profile.name} needs an operator's approval; ACME issues without one"
        )
    try:
        _request, cert = submit_and_issue(
            ca=endpoint.ca,
            profile=endpoint.profile,
            csr=checked,
            validity_days=order.validity_days,
            options=_ORDER_OPTIONS,
            actor=actor,
            now=now,
        )
    except KeyBlocked as exc:
        raise BadPublicKey(str(exc)) from None
    except (PolicyViolation, InvalidCSR) as exc:
        raise BadCSR(str(exc)) from None
    assert cert is not None  # an auto-approving profile (checked above) issues at once
    order.status = OrderStatus.VALID
    order.certificate = cert
    order.csr_der = None
    order.save(update_fields=["status", "certificate", "csr_der"])
    audit.record(
        action="acme.order.finalized",
        actor=actor,
        obj=order,
        details={"serial": cert.serial, "replaces": order.replaces.serial if order.replaces else None},
        scope=audit_scope(endpoint.pk),
        now=now,
    )


def _refuse_blocked_key(csr_der: bytes, *, actor: str, now: dt.datetime) -> None:
    """A CSR whose key is on the compromised-key blocklist is ``badPublicKey`` (audited)."""
    try:
        public_key = x509.load_der_x509_csr(csr_der).public_key()
        spki = public_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    except Exception:  # noqa: BLE001 - hostile bytes of any kind: _checked_csr says why (badCSR)
        return
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
