"""Every role against every endpoint and object kind, generated from one table.

Outcomes: ``ok`` (2xx), ``deny`` (403: the role may not do this), ``hide`` (404: the object is
outside what the role may see), ``auth`` (401: no credentials).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography import x509
from django.contrib.auth.models import User
from django.db import transaction
from rest_framework.test import APIClient

from pki.access import grant_role
from pki.acme.endpoints import create_eab_key, create_endpoint
from pki.authorities import create_intermediate_ca, create_root_ca
from pki.enrollment import enroll
from pki.models import Profile, Role
from pki.tokens import create_token
from pki.x509.names import parse_subject
from tests.conftest import make_csr
from web.api import throttles

pytestmark = pytest.mark.django_db

ROLES = ("anonymous", "no_role", "administrator", "auditor", "operator", "requester")
STATUS = {"ok": range(200, 300), "deny": [403], "hide": [404], "auth": [401]}


@dataclass(frozen=True)
class Endpoint:
    """One row: what to call and what each role gets, in ROLES order."""

    name: str
    method: str
    path: Callable[[dict[str, Any]], str]
    expect: str
    body: Callable[[], dict[str, Any]] = dict


def _csr_body() -> dict[str, Any]:
    csr = make_csr(sans=[x509.DNSName("matrix.example.test")]).decode()
    return {"csr": csr, "ca": "issuing", "profile": "tls-server"}


#                                                      anon no_role admin auditor operator requester
TABLE = [
    Endpoint("ca-list", "get", lambda w: "/api/v1/cas/", "auth deny ok ok ok ok"),
    Endpoint("ca-detail", "get", lambda w: "/api/v1/cas/issuing/", "auth deny ok ok ok ok"),
    Endpoint("ca-chain", "get", lambda w: "/api/v1/cas/issuing/chain/", "auth deny ok ok ok ok"),
    Endpoint(
        "ca-create",
        "post",
        lambda w: "/api/v1/cas/",
        "auth deny ok deny deny deny",
        lambda: {"name": "matrix-ca", "parent": "root", "subject": "CN=Matrix CA"},
    ),
    # CA creations wait for a second administrator (pki.ca_creation): administrators see and decide.
    Endpoint("ca-creation-list", "get", lambda w: "/api/v1/ca-creations/", "auth deny ok deny deny deny"),
    Endpoint("ca-generations", "get", lambda w: "/api/v1/cas/issuing/generations/", "auth deny ok ok ok ok"),
    Endpoint("ca-rollover", "post", lambda w: "/api/v1/cas/issuing/rollover/", "auth deny ok deny deny deny"),
    Endpoint(
        "ca-renew",
        "post",
        lambda w: "/api/v1/cas/root/renew/",
        "auth deny ok deny deny deny",
        lambda: {"validity_days": 4000},
    ),
    Endpoint(
        "key-state",
        "post",
        lambda w: f"/api/v1/keys/{w['issuing_key']}/state/",
        "auth deny ok deny deny deny",
        lambda: {"action": "suspend"},
    ),
    # Recovering escrowed keys is the key recovery officers' alone: administrators included, no one else.
    Endpoint("key-recoveries", "get", lambda w: "/api/v1/key-recoveries/", "auth deny deny deny deny deny"),
    Endpoint("profile-list", "get", lambda w: "/api/v1/profiles/", "auth deny ok ok ok ok"),
    Endpoint(
        "profile-edit",
        "patch",
        lambda w: "/api/v1/profiles/tls-server/",
        "auth deny ok deny deny deny",
        lambda: {"description": "edited"},
    ),
    Endpoint("enroll", "post", lambda w: "/api/v1/enroll", "auth deny ok deny ok ok", _csr_body),
    Endpoint("request-submit", "post", lambda w: "/api/v1/requests/", "auth deny ok deny ok ok", _csr_body),
    Endpoint("request-list", "get", lambda w: "/api/v1/requests/", "auth deny ok ok ok ok"),
    Endpoint(
        "request-own", "get", lambda w: f"/api/v1/requests/{w['own_request']}/", "auth deny ok ok ok ok"
    ),
    Endpoint(
        "request-foreign",
        "get",
        lambda w: f"/api/v1/requests/{w['foreign_request']}/",
        "auth deny ok ok hide hide",
    ),
    Endpoint(
        "approve-own",
        "post",
        lambda w: f"/api/v1/requests/{w['own_request']}/approve/",
        "auth deny ok deny ok deny",
    ),
    Endpoint(
        "approve-foreign",
        "post",
        lambda w: f"/api/v1/requests/{w['foreign_request']}/approve/",
        "auth deny ok deny hide deny",
    ),
    Endpoint(
        "reject-own",
        "post",
        lambda w: f"/api/v1/requests/{w['own_request']}/reject/",
        "auth deny ok deny ok deny",
        lambda: {"reason": "no"},
    ),
    Endpoint("certificate-list", "get", lambda w: "/api/v1/certificates/", "auth deny ok ok ok ok"),
    Endpoint(
        "certificate-own", "get", lambda w: f"/api/v1/certificates/{w['own_cert']}/", "auth deny ok ok ok ok"
    ),
    Endpoint(
        "certificate-foreign",
        "get",
        lambda w: f"/api/v1/certificates/{w['foreign_cert']}/",
        "auth deny ok ok hide hide",
    ),
    Endpoint(
        "certificate-der-own",
        "get",
        lambda w: f"/api/v1/certificates/{w['own_cert']}/der/",
        "auth deny ok ok ok ok",
    ),
    Endpoint(
        "certificate-pkcs7-foreign",
        "get",
        lambda w: f"/api/v1/certificates/{w['foreign_cert']}/pkcs7/",
        "auth deny ok ok hide hide",
    ),
    Endpoint(
        "renew-own",
        "post",
        lambda w: f"/api/v1/certificates/{w['own_cert']}/renew/",
        "auth deny ok deny ok ok",
    ),
    Endpoint(
        "renew-foreign",
        "post",
        lambda w: f"/api/v1/certificates/{w['foreign_cert']}/renew/",
        "auth deny ok deny hide hide",
    ),
    Endpoint(
        "revoke-own",
        "post",
        lambda w: f"/api/v1/certificates/{w['own_cert']}/revoke/",
        "auth deny ok deny ok deny",
        lambda: {"reason": "superseded"},
    ),
    Endpoint(
        "revoke-foreign",
        "post",
        lambda w: f"/api/v1/certificates/{w['foreign_cert']}/revoke/",
        "auth deny ok deny hide deny",
        lambda: {"reason": "superseded"},
    ),
    Endpoint("key-list", "get", lambda w: "/api/v1/keys/", "auth deny ok ok ok ok"),
    Endpoint("key-ca", "get", lambda w: f"/api/v1/keys/{w['issuing_key']}/", "auth deny ok ok ok hide"),
    Endpoint("audit-list", "get", lambda w: "/api/v1/audit-events/", "auth deny ok ok deny deny"),
    Endpoint("audit-export", "get", lambda w: "/api/v1/audit-events/export/", "auth deny ok ok deny deny"),
    Endpoint("audit-verify", "get", lambda w: "/api/v1/audit-events/verify/", "auth deny ok ok deny deny"),
    Endpoint("token-list", "get", lambda w: "/api/v1/tokens/", "auth ok ok ok ok ok"),
    # Role grants: administrators grant and revoke; auditors read all; others read their own.
    Endpoint("grant-list", "get", lambda w: "/api/v1/grants/", "auth deny ok ok ok ok"),
    Endpoint(
        "grant-requester", "get", lambda w: f"/api/v1/grants/{w['rita_grant']}/", "auth deny ok ok hide ok"
    ),
    Endpoint(
        "grant-create",
        "post",
        lambda w: "/api/v1/grants/",
        "auth deny ok deny deny deny",
        lambda: {"user": "nora", "role": "auditor"},
    ),
    Endpoint(
        "grant-revoke",
        "delete",
        lambda w: f"/api/v1/grants/{w['rita_grant']}/",
        "auth deny ok deny deny deny",
    ),
    # ACME administration: administrators manage endpoints; operators of the endpoint's CA see
    # it and mint, list and revoke its EAB keys; auditors read.
    Endpoint("acme-endpoint-list", "get", lambda w: "/api/v1/acme/endpoints/", "auth deny ok ok ok deny"),
    Endpoint("acme-endpoint-own", "get", lambda w: "/api/v1/acme/endpoints/own/", "auth deny ok ok ok deny"),
    Endpoint(
        "acme-endpoint-foreign",
        "get",
        lambda w: "/api/v1/acme/endpoints/foreign/",
        "auth deny ok ok hide deny",
    ),
    Endpoint(
        "acme-endpoint-create",
        "post",
        lambda w: "/api/v1/acme/endpoints/",
        "auth deny ok deny deny deny",
        lambda: {"name": "matrix", "ca": "issuing", "profile": "tls-server"},
    ),
    Endpoint(
        "acme-endpoint-policy",
        "patch",
        lambda w: "/api/v1/acme/endpoints/own/",
        "auth deny ok deny deny deny",
        lambda: {"eab_required": True},
    ),
    Endpoint(
        "acme-endpoint-disable",
        "post",
        lambda w: "/api/v1/acme/endpoints/own/disable/",
        "auth deny ok deny deny deny",
    ),
    Endpoint(
        "eab-key-list-own", "get", lambda w: "/api/v1/acme/endpoints/own/eab-keys/", "auth deny ok ok ok deny"
    ),
    Endpoint(
        "eab-key-list-foreign",
        "get",
        lambda w: "/api/v1/acme/endpoints/foreign/eab-keys/",
        "auth deny ok ok hide deny",
    ),
    Endpoint(
        "eab-key-create-own",
        "post",
        lambda w: "/api/v1/acme/endpoints/own/eab-keys/",
        "auth deny ok deny ok deny",
    ),
    Endpoint(
        "eab-key-create-foreign",
        "post",
        lambda w: "/api/v1/acme/endpoints/foreign/eab-keys/",
        "auth deny ok deny hide deny",
    ),
    Endpoint(
        "eab-key-revoke-own",
        "delete",
        lambda w: f"/api/v1/acme/endpoints/own/eab-keys/{w['own_eab_key']}/",
        "auth deny ok deny ok deny",
    ),
    Endpoint(
        "eab-key-revoke-foreign",
        "delete",
        lambda w: f"/api/v1/acme/endpoints/foreign/eab-keys/{w['foreign_eab_key']}/",
        "auth deny ok deny hide deny",
    ),
]

CASES = [
    pytest.param(endpoint, role, outcome, id=f"{endpoint.name}-{role}")
    for endpoint in TABLE
    for role, outcome in zip(ROLES, endpoint.expect.split(), strict=True)
]


def _actor(username: str, *grants: tuple[Role, Any, Any]) -> APIClient:
    user = User.objects.create_user(username=username)
    for role, ca, profile in grants:
        grant_role(user=user, role=role, ca=ca, profile=profile, actor="test")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {create_token(user=user, actor='test').text}")
    client.user_pk = user.pk  # type: ignore[attr-defined]
    return client


def _build_world() -> dict[str, Any]:
    root = create_root_ca(name="root", subject=parse_subject("CN=Matrix Root"), actor="test")
    issuing = create_intermediate_ca(
        name="issuing", parent=root, subject=parse_subject("CN=Matrix Issuing"), path_length=0, actor="test"
    )
    tls = Profile.objects.get(name="tls-server")
    signing = Profile.objects.get(name="code-signing")
    clients = {
        "no_role": _actor("nora"),
        "administrator": _actor("alice", (Role.ADMINISTRATOR, None, None)),
        "auditor": _actor("audrey", (Role.AUDITOR, None, None)),
        "operator": _actor("oscar", (Role.CA_OPERATOR, issuing, None)),
        "requester": _actor("rita", (Role.REQUESTER, issuing, tls), (Role.REQUESTER, issuing, signing)),
    }
    rita = User.objects.get(username="rita")
    own_cert = enroll(
        ca=issuing,
        profile=tls,
        csr=make_csr(sans=[x509.DNSName("own.example.test")]),
        actor="rita",
        requester=rita,
    )
    own_pending = enroll(
        ca=issuing, profile=signing, csr=make_csr("ec-p384", subject="CN=Own"), actor="rita", requester=rita
    )
    foreign_cert = enroll(
        ca=root, profile=tls, csr=make_csr("ec-p256-b", sans=[x509.DNSName("x.example.test")]), actor="x"
    )
    foreign_pending = enroll(ca=root, profile=signing, csr=make_csr("ec-p384", subject="CN=X"), actor="x")
    assert own_cert.certificate is not None
    assert foreign_cert.certificate is not None
    own_acme = create_endpoint(name="own", ca=issuing, profile=tls, actor="test")
    foreign_acme = create_endpoint(name="foreign", ca=root, profile=tls, actor="test")
    return {
        "own_eab_key": create_eab_key(endpoint=own_acme, actor="test")[0].key_id,
        "foreign_eab_key": create_eab_key(endpoint=foreign_acme, actor="test")[0].key_id,
        "clients": clients,
        "own_cert": own_cert.certificate.pk,
        "own_request": own_pending.request.pk,
        "foreign_cert": foreign_cert.certificate.pk,
        "foreign_request": foreign_pending.request.pk,
        "issuing_key": issuing.key_id,
        "rita_grant": rita.kmi_grants.filter(profile=tls).get().pk,
    }


@pytest.fixture(scope="module")
def world(django_db_setup: None, django_db_blocker: Any) -> Iterator[dict[str, Any]]:
    """Built once for the module inside a transaction that is rolled back at the end (each test
    runs in its own savepoint within it, as Django's setUpTestData does)."""
    with django_db_blocker.unblock():
        outer = transaction.atomic()
        outer.__enter__()
        try:
            built = _build_world()
            yield built
        finally:
            transaction.set_rollback(True)
            outer.__exit__(None, None, None)
            pks = [c.user_pk for c in built["clients"].values()] if "built" in locals() else []
            for pk in pks:
                throttles.forget(pk)


@pytest.mark.parametrize(("endpoint", "role", "outcome"), CASES)
def test_role_matrix(world, endpoint, role, outcome):
    client = APIClient() if role == "anonymous" else world["clients"][role]
    response = getattr(client, endpoint.method)(endpoint.path(world), endpoint.body(), format="json")
    assert response.status_code in STATUS[outcome], (response.status_code, getattr(response, "data", None))
