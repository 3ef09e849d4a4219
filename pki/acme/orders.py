"""ACME orders: newOrder with its authorizations and challenges, expiry (RFC 8555 §7.4,
§7.1.3, §7.1.4, §7.1.6; RFC 8738; RFC 9773 ``replaces``)."""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

from django.db import transaction

from pki import audit
from pki.clock import resolve
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
from pki.models.certificate import Certificate
from pki.x509.names import SAN

from .certificates import certificate_for_id
from .conf import acme_settings
from .endpoints import check_identifier_allowed, parse_identifier
from .exceptions import ERROR_NAMESPACE, AlreadyReplaced, Malformed, RejectedIdentifier, Unauthorized

MAX_IDENTIFIERS = 100


def audit_scope(endpoint_id: int) -> str:
    """The audit stream of an ACME endpoint."""
    return f"acme:{endpoint_id}"


def order_sans(order: AcmeOrder) -> set[SAN]:
    """The order's identifiers as SANs."""
    return {SAN(i["type"], i["value"]) for i in order.identifiers}


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
                    "type": ERROR_NAMESPACE + "rejectedIdentifier",
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
            scope=audit_scope(endpoint.pk),
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
