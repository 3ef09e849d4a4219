"""ACME authorizations and challenges: deactivation, the client's response and validation
(RFC 8555 §7.5, RFC 8737, RFC 8738)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db import transaction

from pki import audit
from pki.clock import resolve
from pki.models.acme import (
    AcmeAuthorization,
    AcmeChallenge,
    AcmeOrder,
    AuthorizationStatus,
    ChallengeStatus,
    ChallengeType,
    OrderStatus,
)
from pki.signals import acme_challenge_ready
from pki.x509.names import SAN

from . import jws as jose
from .conf import acme_settings
from .exceptions import ERROR_NAMESPACE, Malformed
from .orders import audit_scope
from .validation import ValidationFailed, check_dns01, check_http01, check_tls_alpn01


def identifier_san(authz: AcmeAuthorization) -> SAN:
    """The authorization's identifier as a SAN (``*.`` put back for a wildcard)."""
    value = f"*.{authz.identifier_value}" if authz.wildcard else authz.identifier_value
    return SAN(authz.identifier_type, value)


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
            details={"identifier": str(identifier_san(authz))},
            scope=audit_scope(authz.order.account.endpoint_id),
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
    """Validate in this process when configured (no broker or no worker), else announce the
    challenge (``acme_challenge_ready``: pki.tasks validates it on a Celery worker).

    With ``CELERY_TASK_ALWAYS_EAGER`` Celery itself runs the task here.
    """
    if acme_settings().validate_inline:
        validate_challenge(challenge_id=challenge_id, actor="acme:validator")
        return
    acme_challenge_ready.send(sender=AcmeChallenge, challenge_id=challenge_id)


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
        error = {"type": ERROR_NAMESPACE + exc.code, "detail": exc.detail, "status": 403}
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
            details={"type": chall.type, "identifier": str(identifier_san(authz)), "error": error},
            scope=audit_scope(account.endpoint_id),
            now=now,
        )
    return chall
