"""ACME request authentication and account use cases (RFC 8555 §6.2, §7.3)."""

from __future__ import annotations

import datetime as dt
import hmac
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction

from pki import audit
from pki.clock import resolve
from pki.exceptions import SigningRefused
from pki.models.acme import AccountStatus, AcmeAccount, AcmeEndpoint, AcmeExternalAccountKey

from . import jws as jose
from .conf import acme_settings
from .exceptions import (
    AccountDoesNotExist,
    AccountNotValid,
    BadNonce,
    BadSignatureAlgorithm,
    Conflict,
    ExternalAccountRequired,
    Malformed,
    PayloadTooLarge,
    Unauthorized,
)
from .locations import account_url, resource_url
from .nonces import consume_nonce


@dataclass(frozen=True)
class Verified:
    """An authenticated request: the JWS and either the account (``kid``) or the key (``jwk``)."""

    jws: jose.JWS
    account: AcmeAccount | None
    jwk: dict[str, Any] | None
    key: jose.AccountPublicKey


def _account_for_kid(endpoint: AcmeEndpoint, kid: object) -> AcmeAccount:
    prefix = resource_url(endpoint.name, "acct") + "/"
    if not isinstance(kid, str) or not kid.startswith(prefix):
        raise AccountDoesNotExist(f"kid {kid!r} is not an account URL of this endpoint")
    try:
        account = AcmeAccount.objects.select_related("endpoint").get(
            endpoint=endpoint, token=kid.removeprefix(prefix)
        )
    except AcmeAccount.DoesNotExist:
        raise AccountDoesNotExist(f"no account at {kid}") from None
    if account.status != AccountStatus.VALID:
        raise AccountNotValid(f"account {kid} is {account.status}")
    return account


def authenticate(
    *,
    endpoint: AcmeEndpoint,
    body: bytes,
    url: str,
    expect: str = "kid",
    now: dt.datetime | None = None,
) -> Verified:
    """Check a POST body: size, JWS syntax, alg, url, nonce, then the signature by kid or jwk.

    ``expect`` is ``kid`` (most resources), ``jwk`` (newAccount) or ``any`` (revokeCert).
    """
    if len(body) > acme_settings().max_body_bytes:
        raise PayloadTooLarge(f"request body exceeds {acme_settings().max_body_bytes} bytes")
    parsed = jose.parse(body)
    jose.check_header(parsed, url=url)
    if not consume_nonce(str(parsed.header["nonce"]), now=now):
        raise BadNonce("the nonce was already used, has expired, or was never issued")
    if "jwk" in parsed.header:
        if expect == "kid":
            raise Malformed("this resource requires a kid (an existing account), not a jwk")
        jwk = parsed.header["jwk"]
        key = jose.public_key_from_jwk(jwk)
        jose.verify(parsed, key)
        return Verified(parsed, None, jose.canonical_jwk(jwk), key)
    if expect == "jwk":
        raise Malformed("newAccount must be signed with a jwk, not a kid")
    account = _account_for_kid(endpoint, parsed.header["kid"])
    key = jose.public_key_from_jwk(account.jwk)
    jose.verify(parsed, key)
    return Verified(parsed, account, None, key)


def _check_contact(contact: object) -> list[str]:
    if contact is None:
        return []
    if not isinstance(contact, list) or not all(isinstance(c, str) for c in contact):
        raise Malformed("contact must be an array of URLs")
    for c in contact:
        if not c.startswith("mailto:") or "," in c or "?" in c or len(c) > 254:
            raise Malformed(f"contact {c!r} must be a single mailto: address (RFC 8555 §7.3)")
    return list(contact)


def _check_eab(
    endpoint: AcmeEndpoint, binding: object, *, jwk: dict[str, Any], url: str, actor: str
) -> AcmeExternalAccountKey:
    """RFC 8555 §7.3.4: an HMAC JWS over the account key, by a key id the CA issued. The MAC is
    checked where the HMAC key can be unsealed (``eab_mac_matches`` through ``pki.signing``: a
    signing worker with ``KMI_SIGNING=worker``), so it runs outside any transaction; the caller
    re-reads the key under a lock to bind it."""
    if not isinstance(binding, dict):
        raise Malformed("externalAccountBinding must be a flattened JWS object")
    inner = jose.parse(binding, what="externalAccountBinding")
    if "nonce" in inner.header:
        raise Malformed("externalAccountBinding must not carry a nonce")
    if inner.header.get("url") != url:
        raise Unauthorized("externalAccountBinding url is not the newAccount URL")
    key_id = inner.header.get("kid")
    jose.hmac_algorithm(inner.alg)
    try:
        eab = AcmeExternalAccountKey.objects.get(endpoint=endpoint, key_id=key_id)
    except AcmeExternalAccountKey.DoesNotExist:
        raise Unauthorized(f"external account key {key_id!r} is unknown") from None
    if eab.bound_at is not None:
        raise Unauthorized(f"external account key {key_id!r} is already bound to an account")
    from pki.signing import run_signing

    try:
        checked = run_signing(
            "verify_eab",
            eab_id=eab.pk,
            alg=inner.alg,
            signing_input=jose.b64u_encode(inner.signing_input),
            signature=jose.b64u_encode(inner.signature),
            actor=actor,
        )
    except SigningRefused:  # the signer found the key bound (or gone) since it was read here
        raise Unauthorized(f"external account key {key_id!r} can no longer be bound") from None
    if checked.get("valid") is not True:
        raise Unauthorized("external account binding signature does not verify")
    try:
        bound_jwk = jose.canonical_jwk(inner.json_payload())
    except (KeyError, AttributeError):
        raise Malformed("externalAccountBinding payload must be the account's public JWK") from None
    if not hmac.compare_digest(jose.jwk_thumbprint(bound_jwk), jose.jwk_thumbprint(jwk)):
        raise Unauthorized("externalAccountBinding binds a different key than the request's jwk")
    return eab


def eab_mac_matches(*, eab_id: int, alg: str, signing_input: bytes, signature: bytes) -> bool:
    """Whether an external account binding's MAC verifies under key ``eab_id``'s HMAC key (unsealed
    here: the process must hold the KEK). A key already bound, or unknown, matches nothing."""
    eab = AcmeExternalAccountKey.objects.filter(pk=eab_id, bound_at__isnull=True).first()
    if eab is None or alg not in jose.HMAC_ALGORITHMS:
        return False
    return jose.hmac_verifies(alg=alg, signing_input=signing_input, signature=signature, key=eab.hmac_key())


def new_account(
    *, endpoint: AcmeEndpoint, verified: Verified, url: str, actor: str, now: dt.datetime | None = None
) -> tuple[AcmeAccount, bool]:
    """newAccount (RFC 8555 §7.3): return the existing account for the key, or create one."""
    now = resolve(now)
    assert verified.jwk is not None
    payload = verified.jws.json_payload()
    thumbprint = jose.jwk_thumbprint(verified.jwk)
    existing = AcmeAccount.objects.filter(endpoint=endpoint, jwk_thumbprint=thumbprint).first()
    if existing is not None:
        if existing.status != AccountStatus.VALID:
            # RFC 8555 §7.3.6: nothing is accepted under a deactivated account's key any more.
            raise AccountNotValid(f"the account of this key is {existing.status}")
        return existing, False
    if payload.get("onlyReturnExisting") is True:
        raise AccountDoesNotExist("no account exists with this key")
    contact = _check_contact(payload.get("contact"))
    if endpoint.terms_of_service and payload.get("termsOfServiceAgreed") is not True:
        raise Malformed("you must agree to the terms of service (termsOfServiceAgreed)")
    eab = None
    if "externalAccountBinding" in payload:
        eab = _check_eab(endpoint, payload["externalAccountBinding"], jwk=verified.jwk, url=url, actor=actor)
    elif endpoint.eab_required:
        raise ExternalAccountRequired(f"endpoint {endpoint.name} requires external account binding")
    with transaction.atomic():
        if eab is not None:
            eab = AcmeExternalAccountKey.objects.select_for_update().get(pk=eab.pk)
            if eab.bound_at is not None:  # a concurrent newAccount bound it since the check
                raise Unauthorized(f"external account key {eab.key_id!r} is already bound to an account")
        try:
            with transaction.atomic():
                account = AcmeAccount.objects.create(
                    endpoint=endpoint,
                    jwk=verified.jwk,
                    jwk_thumbprint=thumbprint,
                    contact=contact,
                    terms_agreed=payload.get("termsOfServiceAgreed") is True,
                    eab_key=eab,
                    created_at=now,
                )
        except IntegrityError:  # a concurrent newAccount with the same key won
            return AcmeAccount.objects.get(endpoint=endpoint, jwk_thumbprint=thumbprint), False
        if eab is not None:
            eab.bound_at = now
            eab.save(update_fields=["bound_at"])
        audit.record(
            action="acme.account.created",
            actor=actor,
            obj=account,
            details={
                "endpoint": endpoint.name,
                "thumbprint": thumbprint,
                "contact": contact,
                "eab_key_id": eab.key_id if eab else None,
            },
            scope=f"acme:{endpoint.pk}",
            now=now,
        )
    return account, True


def update_account(
    *, account: AcmeAccount, payload: dict[str, Any], actor: str, now: dt.datetime | None = None
) -> AcmeAccount:
    """Update contacts or deactivate (RFC 8555 §7.3.2, §7.3.6); other fields are ignored."""
    now = resolve(now)
    with transaction.atomic():
        account = AcmeAccount.objects.select_for_update().get(pk=account.pk)
        changes: dict[str, Any] = {}
        if "contact" in payload:
            account.contact = _check_contact(payload["contact"])
            changes["contact"] = account.contact
        if "status" in payload:
            if payload["status"] != AccountStatus.DEACTIVATED:
                raise Malformed("a client may only set its account status to deactivated")
            account.status = AccountStatus.DEACTIVATED
            changes["status"] = account.status
        if not changes:
            return account
        account.save(update_fields=list(changes))
        audit.record(
            action="acme.account.deactivated" if "status" in changes else "acme.account.updated",
            actor=actor,
            obj=account,
            details=changes,
            scope=f"acme:{account.endpoint_id}",
            now=now,
        )
    return account


def change_key(
    *, account: AcmeAccount, verified: Verified, url: str, actor: str, now: dt.datetime | None = None
) -> AcmeAccount:
    """keyChange (RFC 8555 §7.3.5): the inner JWS, signed by the new key, names the account and old key."""
    now = resolve(now)
    inner = jose.parse(verified.jws.payload, what="keyChange payload")
    if inner.alg not in jose.ALLOWED_ALGORITHMS:
        raise BadSignatureAlgorithm(f"the inner keyChange JWS alg {inner.alg!r} is not allowed")
    if "jwk" not in inner.header or "kid" in inner.header:
        raise Malformed("the inner keyChange JWS must carry a jwk and no kid")
    if "nonce" in inner.header:
        raise Malformed("the inner keyChange JWS must not carry a nonce")
    if inner.header.get("url") != url:
        raise Malformed("the inner keyChange JWS url must equal the outer url")
    new_jwk = inner.header["jwk"]
    new_key = jose.public_key_from_jwk(new_jwk)
    jose.verify(inner, new_key)
    body = inner.json_payload()
    kid = account_url(account.endpoint.name, account.token)
    if body.get("account") != kid:
        raise Unauthorized("keyChange account does not match the signer's kid")
    if not isinstance(body.get("oldKey"), dict):
        raise Malformed("keyChange needs oldKey")
    if jose.jwk_thumbprint(jose.canonical_jwk(body["oldKey"])) != account.jwk_thumbprint:
        raise Unauthorized("keyChange oldKey is not the account's current key")
    new_thumb = jose.jwk_thumbprint(new_jwk)
    with transaction.atomic():
        other = AcmeAccount.objects.filter(endpoint=account.endpoint, jwk_thumbprint=new_thumb).first()
        if other is not None:
            raise Conflict(
                "the new key already belongs to an account",
                location=resource_url(account.endpoint.name, "acct", other.token),
            )
        account = AcmeAccount.objects.select_for_update().get(pk=account.pk)
        old_thumb = account.jwk_thumbprint
        account.jwk = jose.canonical_jwk(new_jwk)
        account.jwk_thumbprint = new_thumb
        account.save(update_fields=["jwk", "jwk_thumbprint"])
        audit.record(
            action="acme.account.key_changed",
            actor=actor,
            obj=account,
            details={"old_thumbprint": old_thumb, "new_thumbprint": new_thumb},
            scope=f"acme:{account.endpoint_id}",
            now=now,
        )
    return account
