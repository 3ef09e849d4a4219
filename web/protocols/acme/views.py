"""ACME HTTP binding (RFC 8555 §6, §7): parse the request, call ``pki.acme``, shape the answer.

Every response — success or problem — carries a fresh ``Replay-Nonce`` and ``Link: rel="index"``.
Domain errors become RFC 7807 problem documents here, and only here.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
from collections.abc import Callable
from typing import Any

from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from redis.exceptions import RedisError

from pki import exceptions as pki_errors
from pki.acme import accounts, authorizations, certificates, orders
from pki.acme import jws as jose
from pki.acme.accounts import Verified
from pki.acme.certificates import cert_id
from pki.acme.conf import acme_settings
from pki.acme.exceptions import (
    ERROR_NAMESPACE,
    AccountNotValid,
    AcmeError,
    Conflict,
    Malformed,
    NotFoundAcme,
    PayloadTooLarge,
    Unauthorized,
)
from pki.acme.finalize import finalize_order
from pki.acme.locations import account_url, directory_url, resource_url
from pki.acme.nonces import new_nonce
from pki.exceptions import PKIError
from pki.models.acme import (
    AcmeAccount,
    AcmeAuthorization,
    AcmeChallenge,
    AcmeEndpoint,
    AcmeOrder,
    ChallengeStatus,
    OrderStatus,
)

log = logging.getLogger(__name__)

SIGNING_RETRY_AFTER = 5  # seconds: no signing worker answered in time
OUTAGE_RETRY_AFTER = 30  # seconds: the database, Redis, a key backend or the CA is unavailable
JOSE_JSON = "application/jose+json"

# The one mapping of ACME error types to HTTP statuses.
STATUS = {
    "malformed": 400,
    "badNonce": 400,
    "badSignatureAlgorithm": 400,
    "badPublicKey": 400,
    "badCSR": 400,
    "badRevocationReason": 400,
    "alreadyRevoked": 400,
    "rejectedIdentifier": 400,
    "unsupportedIdentifier": 400,
    "accountDoesNotExist": 400,
    "externalAccountRequired": 400,
    "unauthorized": 403,  # 401 for a deactivated account (_acme_status)
    "orderNotReady": 403,
    "alreadyReplaced": 409,
    "conflict": 409,
    "serverInternal": 500,
}

View = Callable[..., HttpResponse]


def _rfc3339(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _json(body: dict[str, Any], status: int = 200, content_type: str = "application/json") -> HttpResponse:
    return HttpResponse(json.dumps(body), status=status, content_type=content_type)


def problem(code: str, detail: str, *, status: int | None = None, **extra: Any) -> HttpResponse:
    """An RFC 7807 problem document of ACME error type ``code``."""
    status = status or STATUS.get(code, 400)
    body: dict[str, Any] = {"type": ERROR_NAMESPACE + code, "detail": detail, "status": status, **extra}
    return _json(body, status, "application/problem+json")


# Domain errors from the rest of pki (issuance, CAs, keys, signing) reaching ACME, mapped here
# once to an RFC 8555 §6.7 type, an HTTP status and, for what is worth retrying, Retry-After
# seconds. Most specific first; every PKIError is covered by the last line.
DOMAIN_PROBLEMS: list[tuple[type[PKIError], str, int, int | None]] = [
    (pki_errors.SigningUnavailable, "serverInternal", 503, SIGNING_RETRY_AFTER),
    (pki_errors.KeyBackendError, "serverInternal", 503, OUTAGE_RETRY_AFTER),
    (pki_errors.ConfigurationError, "serverInternal", 503, OUTAGE_RETRY_AFTER),
    (pki_errors.CAUnavailable, "serverInternal", 503, OUTAGE_RETRY_AFTER),
    (pki_errors.InvalidCSR, "badCSR", 400, None),
    (pki_errors.NameNotAllowed, "rejectedIdentifier", 400, None),
    (pki_errors.PolicyViolation, "badCSR", 400, None),
    (pki_errors.NotFound, "malformed", 404, None),
    (pki_errors.InvalidState, "malformed", 400, None),
    (pki_errors.PKIError, "serverInternal", 500, None),
]

# Outages of what every ACME call needs (the database, Redis): a 503 worth retrying, not a 500.
OUTAGES: tuple[type[BaseException], ...] = (DatabaseError, RedisError)


def _acme_status(exc: AcmeError) -> int | None:
    if isinstance(exc, AccountNotValid):
        return 401  # RFC 8555 §7.3.6: a deactivated account's requests get 401 unauthorized
    if isinstance(exc, PayloadTooLarge):
        return 413
    if isinstance(exc, NotFoundAcme):
        return 404
    if isinstance(exc, UnsupportedMediaType):
        return 415
    return None


def _problem_for(exc: PKIError) -> HttpResponse:
    """The one mapping of domain errors to ACME problem documents."""
    if isinstance(exc, AcmeError):
        extra: dict[str, Any] = {}
        if exc.subproblems:
            extra["subproblems"] = exc.subproblems
        if exc.code == "badSignatureAlgorithm":
            extra["algorithms"] = list(jose.ALLOWED_ALGORITHMS)
        response = problem(exc.code, exc.detail, status=_acme_status(exc), **extra)
        if isinstance(exc, Conflict):
            response["Location"] = exc.location
        return response
    for cls, code, status, retry_after in DOMAIN_PROBLEMS:
        if isinstance(exc, cls):
            response = problem(code, str(exc), status=status)
            if retry_after is not None:
                response["Retry-After"] = str(retry_after)
            return response
    raise AssertionError("unreachable: PKIError is the last entry")  # pragma: no cover


def _outage(exc: BaseException) -> HttpResponse:
    what = "the database" if isinstance(exc, DatabaseError) else "Redis"
    log.warning("ACME: %s is unavailable (%s: %s)", what, type(exc).__name__, exc)
    response = problem(
        "serverInternal", f"the server cannot reach {what}; nothing was changed, try again later", status=503
    )
    response["Retry-After"] = str(OUTAGE_RETRY_AFTER)
    return response


def _serve(view: View, request: HttpRequest, name: str, *args: Any, **kwargs: Any) -> HttpResponse:
    try:
        endpoint = (
            AcmeEndpoint.objects.select_related("ca", "profile", "ca__key")
            .filter(name=name, enabled=True)
            .first()
        )
        if endpoint is None:
            return problem("malformed", f"no ACME endpoint named {name!r}", status=404)
        return view(request, endpoint, *args, **kwargs)
    except PKIError as exc:
        return _problem_for(exc)
    except OUTAGES as exc:
        return _outage(exc)
    except Exception:
        log.exception("ACME %s %s failed", request.method, request.path)
        return problem("serverInternal", "the server failed; the request changed nothing")


def acme_view(view: View) -> View:
    """Resolve the endpoint, map domain errors once, add Replay-Nonce and Link rel=index always."""

    @csrf_exempt
    @functools.wraps(view)
    def wrapper(request: HttpRequest, name: str, *args: Any, **kwargs: Any) -> HttpResponse:
        response = _serve(view, request, name, *args, **kwargs)
        try:
            response["Replay-Nonce"] = new_nonce()
        except OUTAGES as exc:
            # Neither Redis nor the database can hold a nonce: whatever the view did, the client
            # cannot go on without one, so it is told to come back later.
            response = _outage(exc)
        response["Cache-Control"] = "no-store"
        link = f'<{directory_url(name)}>;rel="index"'
        existing = response.get("Link")
        response["Link"] = f"{existing}, {link}" if existing else link
        return response

    return wrapper


class UnsupportedMediaType(Malformed):
    """RFC 8555 §6.2: a POST body must be application/jose+json (answered with 415)."""


def _body(request: HttpRequest) -> bytes:
    if request.content_type != JOSE_JSON:
        raise UnsupportedMediaType(f"Content-Type must be {JOSE_JSON}")
    limit = acme_settings().max_body_bytes
    length = int(request.META.get("CONTENT_LENGTH") or 0)
    if length > limit:
        raise PayloadTooLarge(f"request body exceeds {limit} bytes")
    return request.body


def _auth(request: HttpRequest, endpoint: AcmeEndpoint, url: str, expect: str = "kid") -> Verified:
    return accounts.authenticate(endpoint=endpoint, body=_body(request), url=url, expect=expect)


def _actor(endpoint: AcmeEndpoint, account: AcmeAccount | None) -> str:
    return f"acme:{endpoint.name}:{account.token if account else 'anonymous'}"


def _only(request: HttpRequest, *methods: str) -> HttpResponse | None:
    if request.method not in methods:
        response = problem("malformed", f"use {' or '.join(methods)}", status=405)
        response["Allow"] = ", ".join(methods)
        return response
    return None


# --- representations --------------------------------------------------------------------------


def account_json(account: AcmeAccount) -> dict[str, Any]:
    """RFC 8555 §7.1.2 account object."""
    body: dict[str, Any] = {
        "status": account.status,
        "contact": account.contact,
        "termsOfServiceAgreed": account.terms_agreed,
        "orders": resource_url(account.endpoint.name, "acct", account.token) + "/orders",
        "key": account.jwk,
        "createdAt": _rfc3339(account.created_at),
    }
    if account.eab_key_id is not None:
        body["externalAccountBinding"] = {"kid": account.eab_key.key_id if account.eab_key else ""}
    return body


def order_json(order: AcmeOrder, name: str) -> dict[str, Any]:
    """RFC 8555 §7.1.3 order object."""
    body: dict[str, Any] = {
        "status": order.status,
        "expires": _rfc3339(order.expires),
        "identifiers": order.identifiers,
        "authorizations": [resource_url(name, "authz", a.token) for a in order.authorizations.all()],
        "finalize": resource_url(name, "order", order.token) + "/finalize",
    }
    if order.status == OrderStatus.VALID and order.certificate_id is not None:
        body["certificate"] = resource_url(name, "cert", order.token)
    if order.error:
        body["error"] = order.error
    if order.replaces_id is not None and order.replaces is not None:
        body["replaces"] = cert_id(order.replaces.x509())
    return body


def challenge_json(chall: AcmeChallenge, name: str) -> dict[str, Any]:
    """RFC 8555 §8 challenge object."""
    body: dict[str, Any] = {
        "type": chall.type,
        "url": resource_url(name, "chall", chall.url_token),
        "status": chall.status,
        "token": chall.token,
    }
    if chall.validated_at is not None:
        body["validated"] = _rfc3339(chall.validated_at)
    if chall.error:
        body["error"] = chall.error
    return body


def authz_json(authz: AcmeAuthorization, name: str) -> dict[str, Any]:
    """RFC 8555 §7.1.4 authorization object."""
    body: dict[str, Any] = {
        "identifier": {"type": authz.identifier_type, "value": authz.identifier_value},
        "status": authz.status,
        "expires": _rfc3339(authz.expires),
        "challenges": [challenge_json(c, name) for c in authz.challenges.order_by("pk")],
    }
    if authz.wildcard:
        body["wildcard"] = True
    return body


# --- views ------------------------------------------------------------------------------------


@acme_view
def directory(request: HttpRequest, endpoint: AcmeEndpoint) -> HttpResponse:
    """RFC 8555 §7.1.1 directory with meta."""
    if (denied := _only(request, "GET", "HEAD")) is not None:
        return denied
    name = endpoint.name
    meta: dict[str, Any] = {"externalAccountRequired": endpoint.eab_required}
    if endpoint.terms_of_service:
        meta["termsOfService"] = endpoint.terms_of_service
    if endpoint.website:
        meta["website"] = endpoint.website
    if endpoint.caa_identities:
        meta["caaIdentities"] = endpoint.caa_identities
    return _json(
        {
            "newNonce": resource_url(name, "new-nonce"),
            "newAccount": resource_url(name, "new-account"),
            "newOrder": resource_url(name, "new-order"),
            "revokeCert": resource_url(name, "revoke-cert"),
            "keyChange": resource_url(name, "key-change"),
            "renewalInfo": resource_url(name, "renewal-info"),
            "meta": meta,
        }
    )


@acme_view
def new_nonce_view(request: HttpRequest, endpoint: AcmeEndpoint) -> HttpResponse:
    """RFC 8555 §7.2: HEAD answers 200, GET 204; the nonce is added by ``acme_view``."""
    if (denied := _only(request, "GET", "HEAD")) is not None:
        return denied
    return HttpResponse(status=200 if request.method == "HEAD" else 204)


@acme_view
def new_account(request: HttpRequest, endpoint: AcmeEndpoint) -> HttpResponse:
    """RFC 8555 §7.3: create or find the account of the request's key."""
    if (denied := _only(request, "POST")) is not None:
        return denied
    url = resource_url(endpoint.name, "new-account")
    verified = _auth(request, endpoint, url, expect="jwk")
    account, created = accounts.new_account(
        endpoint=endpoint, verified=verified, url=url, actor=_actor(endpoint, None)
    )
    response = _json(account_json(account), status=201 if created else 200)
    response["Location"] = account_url(endpoint.name, account.token)
    return response


def _own_account(verified: Verified, token: str) -> AcmeAccount:
    account = verified.account
    if account is None or account.token != token:
        raise Unauthorized("the request is not signed by this account's key")
    return account


@acme_view
def account_view(request: HttpRequest, endpoint: AcmeEndpoint, token: str) -> HttpResponse:
    """RFC 8555 §7.3.2 to §7.3.6: POST-as-GET, contact update, deactivation."""
    if (denied := _only(request, "POST")) is not None:
        return denied
    verified = _auth(request, endpoint, account_url(endpoint.name, token))
    account = _own_account(verified, token)
    if not verified.jws.is_post_as_get:
        account = accounts.update_account(
            account=account, payload=verified.jws.json_payload(), actor=_actor(endpoint, account)
        )
    response = _json(account_json(account))
    response["Location"] = account_url(endpoint.name, account.token)
    return response


@acme_view
def account_orders(request: HttpRequest, endpoint: AcmeEndpoint, token: str) -> HttpResponse:
    """RFC 8555 §7.1.2.1: the account's orders (POST-as-GET)."""
    if (denied := _only(request, "POST")) is not None:
        return denied
    verified = _auth(request, endpoint, resource_url(endpoint.name, "acct", token) + "/orders")
    account = _own_account(verified, token)
    if not verified.jws.is_post_as_get:
        raise Malformed("the orders list is fetched with POST-as-GET")
    tokens = account.orders.order_by("-created_at").values_list("token", flat=True)[:1000]
    return _json({"orders": [resource_url(endpoint.name, "order", t) for t in tokens]})


@acme_view
def key_change(request: HttpRequest, endpoint: AcmeEndpoint) -> HttpResponse:
    """RFC 8555 §7.3.5 account key rollover."""
    if (denied := _only(request, "POST")) is not None:
        return denied
    url = resource_url(endpoint.name, "key-change")
    verified = _auth(request, endpoint, url)
    assert verified.account is not None
    account = accounts.change_key(
        account=verified.account, verified=verified, url=url, actor=_actor(endpoint, verified.account)
    )
    response = _json(account_json(account))
    response["Location"] = account_url(endpoint.name, account.token)
    return response


@acme_view
def new_order(request: HttpRequest, endpoint: AcmeEndpoint) -> HttpResponse:
    """RFC 8555 §7.4 newOrder."""
    if (denied := _only(request, "POST")) is not None:
        return denied
    verified = _auth(request, endpoint, resource_url(endpoint.name, "new-order"))
    assert verified.account is not None
    order = orders.new_order(
        account=verified.account,
        payload=verified.jws.json_payload(),
        actor=_actor(endpoint, verified.account),
    )
    response = _json(order_json(order, endpoint.name), status=201)
    response["Location"] = resource_url(endpoint.name, "order", order.token)
    return response


def _order_of(account: AcmeAccount | None, token: str) -> AcmeOrder:
    order = AcmeOrder.objects.select_related("certificate", "replaces").filter(token=token).first()
    if order is None or account is None:
        raise NotFoundAcme("no such order")
    if order.account_id != account.pk:
        raise Unauthorized("this order belongs to another account")
    return orders.refresh_order(order)


def _order_response(order: AcmeOrder, name: str) -> HttpResponse:
    response = _json(order_json(order, name))
    response["Location"] = resource_url(name, "order", order.token)
    if order.status == OrderStatus.PROCESSING:
        response["Retry-After"] = str(acme_settings().retry_after_seconds)
    return response


@acme_view
def order_view(request: HttpRequest, endpoint: AcmeEndpoint, token: str) -> HttpResponse:
    """RFC 8555 §7.4: the order (POST-as-GET)."""
    if (denied := _only(request, "POST")) is not None:
        return denied
    verified = _auth(request, endpoint, resource_url(endpoint.name, "order", token))
    if not verified.jws.is_post_as_get:
        raise Malformed("an order is fetched with POST-as-GET")
    return _order_response(_order_of(verified.account, token), endpoint.name)


@acme_view
def finalize(request: HttpRequest, endpoint: AcmeEndpoint, token: str) -> HttpResponse:
    """RFC 8555 §7.4: submit the CSR; issued before the answer, or ``processing`` with worker signing."""
    if (denied := _only(request, "POST")) is not None:
        return denied
    verified = _auth(request, endpoint, resource_url(endpoint.name, "order", token) + "/finalize")
    order = _order_of(verified.account, token)
    payload = verified.jws.json_payload()
    csr_der = jose.b64u_decode(payload.get("csr"), what="csr")
    order = finalize_order(order=order, csr_der=csr_der, actor=_actor(endpoint, verified.account))
    return _order_response(order, endpoint.name)


@acme_view
def authorization_view(request: HttpRequest, endpoint: AcmeEndpoint, token: str) -> HttpResponse:
    """RFC 8555 §7.5: POST-as-GET, or deactivation with ``{"status": "deactivated"}``."""
    if (denied := _only(request, "POST")) is not None:
        return denied
    verified = _auth(request, endpoint, resource_url(endpoint.name, "authz", token))
    authz = AcmeAuthorization.objects.select_related("order").filter(token=token).first()
    if authz is None:
        raise NotFoundAcme("no such authorization")
    if verified.account is None or authz.order.account_id != verified.account.pk:
        raise Unauthorized("this authorization belongs to another account")
    if not verified.jws.is_post_as_get:
        if verified.jws.json_payload() != {"status": "deactivated"}:
            raise Malformed('an authorization accepts only {"status": "deactivated"}')
        authz = authorizations.deactivate_authorization(
            authorization=authz, actor=_actor(endpoint, verified.account)
        )
    response = _json(authz_json(authz, endpoint.name))
    if authz.status == "pending":
        response["Retry-After"] = str(acme_settings().retry_after_seconds)
    return response


@acme_view
def challenge_view(request: HttpRequest, endpoint: AcmeEndpoint, token: str) -> HttpResponse:
    """RFC 8555 §7.5.1: ``{}`` starts validation; POST-as-GET reads the challenge."""
    if (denied := _only(request, "POST")) is not None:
        return denied
    verified = _auth(request, endpoint, resource_url(endpoint.name, "chall", token))
    chall = AcmeChallenge.objects.select_related("authorization__order").filter(url_token=token).first()
    if chall is None:
        raise NotFoundAcme("no such challenge")
    if verified.account is None or chall.authorization.order.account_id != verified.account.pk:
        raise Unauthorized("this challenge belongs to another account")
    if not verified.jws.is_post_as_get:
        if verified.jws.json_payload() != {}:
            raise Malformed("respond to a challenge with an empty JSON object")
        authorizations.respond_to_challenge(challenge=chall, actor=_actor(endpoint, verified.account))
        chall.refresh_from_db()
    response = _json(challenge_json(chall, endpoint.name))
    response["Link"] = f'<{resource_url(endpoint.name, "authz", chall.authorization.token)}>;rel="up"'
    if chall.status == ChallengeStatus.PROCESSING:
        response["Retry-After"] = str(acme_settings().retry_after_seconds)
    return response


@acme_view
def certificate_view(
    request: HttpRequest, endpoint: AcmeEndpoint, token: str, alternate: int = 0
) -> HttpResponse:
    """RFC 8555 §7.4.2: download the chain as application/pem-certificate-chain (POST-as-GET).

    After a root rollover the certificate also chains to the other root generation through a
    link certificate: those chains are at ``cert/<token>/<n>``, each announced by the others in
    ``Link: <…>;rel="alternate"``.
    """
    if (denied := _only(request, "POST")) is not None:
        return denied
    base = resource_url(endpoint.name, "cert", token)
    verified = _auth(request, endpoint, f"{base}/{alternate}" if alternate else base)
    if not verified.jws.is_post_as_get:
        raise Malformed("a certificate is fetched with POST-as-GET")
    order = _order_of(verified.account, token)
    chains = certificates.certificate_pem_chains(order)
    if alternate >= len(chains):
        raise NotFoundAcme(f"the certificate has no alternate chain {alternate}")
    response = HttpResponse(chains[alternate], content_type="application/pem-certificate-chain")
    others = [
        f'<{f"{base}/{n}" if n else base}>;rel="alternate"' for n in range(len(chains)) if n != alternate
    ]
    if others:
        response["Link"] = ", ".join(others)
    return response


@acme_view
def revoke_cert(request: HttpRequest, endpoint: AcmeEndpoint) -> HttpResponse:
    """RFC 8555 §7.6: signed by the ordering account (kid) or by the certificate's key (jwk)."""
    if (denied := _only(request, "POST")) is not None:
        return denied
    verified = _auth(request, endpoint, resource_url(endpoint.name, "revoke-cert"), expect="any")
    certificates.revoke(
        endpoint=endpoint,
        account=verified.account,
        signer_key=verified.key,
        payload=verified.jws.json_payload(),
        actor=_actor(endpoint, verified.account)
        if verified.account
        else f"acme:{endpoint.name}:certificate-key",
    )
    return HttpResponse(status=200)


@acme_view
def renewal_info(request: HttpRequest, endpoint: AcmeEndpoint, cert_id_text: str) -> HttpResponse:
    """RFC 9773 §4.2: the suggested renewal window of a certificate (plain GET)."""
    if (denied := _only(request, "GET", "HEAD")) is not None:
        return denied
    cert = certificates.certificate_for_id(endpoint, cert_id_text)
    window = certificates.renewal_window(cert)
    response = _json({"suggestedWindow": {"start": _rfc3339(window.start), "end": _rfc3339(window.end)}})
    response["Retry-After"] = str(6 * 3600)
    return response


@acme_view
def unknown_resource(request: HttpRequest, endpoint: AcmeEndpoint, rest: str) -> HttpResponse:
    """Any other path under an endpoint: ``malformed`` with 404."""
    raise NotFoundAcme(f"{endpoint.name} has no resource {rest!r}")
