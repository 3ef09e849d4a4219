"""The ACME administration API: endpoints (create, policy, disable) and their EAB keys."""

from __future__ import annotations

import base64

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from pki.acme.endpoints import create_eab_key, create_endpoint
from pki.models import AcmeAccount, AcmeEndpoint, AcmeExternalAccountKey, AuditEvent, Profile

pytestmark = pytest.mark.django_db

ENDPOINTS = "/api/v1/acme/endpoints/"


@pytest.fixture
def endpoint(issuing_ca):
    return create_endpoint(
        name="web",
        ca=issuing_ca,
        profile=Profile.objects.get(name="tls-server"),
        allowed_identifiers=["*.example.test"],
        actor="test",
    )


def _create(client, **fields):
    body = {"name": "servers", "ca": "issuing", "profile": "tls-server", **fields}
    return client.post(ENDPOINTS, body, format="json")


def test_administrator_creates_an_endpoint_with_its_policy(admin, issuing_ca):
    response = _create(
        admin.client,
        allowed_identifiers=["*.Example.test", "10.0.0.0/8", "dns:localhost"],
        eab_required=True,
        validity_days=30,
        key_types=["ec"],
        terms_of_service="https://pki.example.test/tos",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert response["Location"].endswith("/api/v1/acme/endpoints/servers/")
    assert body["directory"] == "http://pki.example.test/acme/servers/directory"
    assert body["allowed_identifiers"] == ["dns:*.example.test", "ip:10.0.0.0/8", "dns:localhost"]
    assert (body["ca"], body["profile"], body["eab_required"], body["enabled"]) == (
        "issuing",
        "tls-server",
        True,
        True,
    )
    event = AuditEvent.objects.get(action="acme.endpoint.created")
    assert event.actor.startswith("alice (token ")
    # The directory it names is live.
    assert admin.client.get("/acme/servers/directory").json()["meta"]["externalAccountRequired"] is True


@pytest.mark.parametrize(
    ("fields", "status", "field"),
    [
        ({"ca": "nope"}, 400, "ca"),
        ({"profile": "nope"}, 400, "profile"),
        ({"ca": "bad name!"}, 400, "ca"),
        ({"name": "Upper_Case"}, 400, "name"),
        ({"name": "-leading"}, 400, "name"),
        ({"allowed_identifiers": ["*.exa mple.test"]}, 400, "allowed_identifiers"),
        ({"allowed_identifiers": ["email:*@example.test"]}, 400, "allowed_identifiers"),
        ({"allowed_identifiers": ["ip:10.0.0.0/33"]}, 400, "allowed_identifiers"),
        ({"allowed_identifiers": ["a..example.test"]}, 400, "allowed_identifiers"),
        ({"allowed_identifiers": "*.example.test"}, 400, "allowed_identifiers"),
        ({"key_types": ["dsa"]}, 400, "key_types"),
        ({"validity_days": 0}, 400, "validity_days"),
        ({"terms_of_service": "not a url"}, 400, "terms_of_service"),
        ({"validity_days": 5000}, 422, None),  # past the profile's cap
        ({"profile": "code-signing"}, 422, None),  # needs approval: ACME cannot use it
    ],
)
def test_bad_endpoint_input_is_refused_and_creates_nothing(admin, issuing_ca, fields, status, field):
    response = _create(admin.client, **fields)
    assert response.status_code == status, response.json()
    assert response["Content-Type"] == "application/problem+json"
    if field:
        assert field in {e["field"].split(".")[0] for e in response.json()["errors"]}
    assert not AcmeEndpoint.objects.exists()
    assert not AuditEvent.objects.filter(action__startswith="acme.").exists()


def test_duplicate_endpoint_name_is_a_conflict(admin, endpoint):
    response = _create(admin.client, name="web")
    assert response.status_code == 409
    assert response.json()["code"] == "already_exists"
    assert AcmeEndpoint.objects.count() == 1


def test_policy_update_changes_only_what_is_sent_and_is_audited(admin, endpoint):
    url = f"{ENDPOINTS}web/"
    response = admin.client.patch(
        url, {"allowed_identifiers": ["**.example.test", "::1"], "eab_required": True}, format="json"
    )
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["allowed_identifiers"] == ["dns:**.example.test", "ip:::1"]
    assert body["eab_required"] is True
    assert body["ca"] == "issuing"
    event = AuditEvent.objects.get(action="acme.endpoint.updated")
    assert event.details["before"] == {"allowed_identifiers": ["dns:*.example.test"], "eab_required": False}
    # The same values again change nothing and record nothing.
    admin.client.patch(url, {"eab_required": True}, format="json")
    assert AuditEvent.objects.filter(action="acme.endpoint.updated").count() == 1


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        ({"allowed_identifiers": ["dns:"]}, 400),
        ({"allowed_identifiers": ["uri:https://x.test"]}, 400),
        ({"key_types": ["rsa", "nope"]}, 400),
        ({"validity_days": 5000}, 422),
    ],
)
def test_bad_policy_update_changes_nothing(admin, endpoint, fields, status):
    response = admin.client.patch(f"{ENDPOINTS}web/", fields, format="json")
    assert response.status_code == status, response.json()
    endpoint.refresh_from_db()
    assert endpoint.allowed_identifiers == ["dns:*.example.test"]
    assert endpoint.key_types == []
    assert endpoint.validity_days is None
    assert not AuditEvent.objects.filter(action="acme.endpoint.updated").exists()


def test_name_ca_and_profile_cannot_be_patched(admin, endpoint, root_ca):
    response = admin.client.patch(f"{ENDPOINTS}web/", {"ca": "root", "name": "x"}, format="json")
    assert response.status_code == 200  # unknown fields are ignored, as everywhere in the API
    endpoint.refresh_from_db()
    assert (endpoint.name, endpoint.ca_id) == ("web", endpoint.ca_id)
    assert endpoint.ca.name == "issuing"


def test_disabled_endpoint_serves_nothing_until_enabled(admin, endpoint):
    assert admin.client.get("/acme/web/directory").status_code == 200
    response = admin.client.post(f"{ENDPOINTS}web/disable/")
    assert response.status_code == 200
    assert response.json()["enabled"] is False
    assert admin.client.get("/acme/web/directory").status_code == 404
    assert admin.client.post(f"{ENDPOINTS}web/disable/").status_code == 200  # idempotent
    assert AuditEvent.objects.filter(action="acme.endpoint.disabled").count() == 1
    assert admin.client.post(f"{ENDPOINTS}web/enable/").json()["enabled"] is True
    assert admin.client.get("/acme/web/directory").status_code == 200


def test_unknown_endpoint_is_not_found(admin, endpoint):
    assert admin.client.get(f"{ENDPOINTS}nope/").status_code == 404
    assert admin.client.post(f"{ENDPOINTS}nope/disable/").status_code == 404
    assert admin.client.get(f"{ENDPOINTS}nope/eab-keys/").status_code == 404
    assert admin.client.post(f"{ENDPOINTS}nope/eab-keys/", {}, format="json").status_code == 404


def test_operator_sees_only_the_endpoints_of_their_ca(operator, root_ca, endpoint):
    create_endpoint(name="rooted", ca=root_ca, profile=Profile.objects.get(name="tls-server"), actor="t")
    names = [e["name"] for e in operator.client.get(ENDPOINTS).json()]
    assert names == ["web"]
    assert operator.client.get(f"{ENDPOINTS}rooted/").status_code == 404


# --- EAB keys ------------------------------------------------------------------------------------
def test_eab_key_is_shown_once_and_listed_without_it(operator, endpoint):
    url = f"{ENDPOINTS}web/eab-keys/"
    response = operator.client.post(url, {"user": "oscar"}, format="json")
    assert response.status_code == 201, response.json()
    assert response["Cache-Control"] == "no-store"
    created = response.json()
    assert created["key_id"].startswith("kmi-")
    assert created["user"] == "oscar"
    assert created["directory"] == "http://pki.example.test/acme/web/directory"
    secret = base64.urlsafe_b64decode(created["hmac_key"] + "=" * (-len(created["hmac_key"]) % 4))
    row = AcmeExternalAccountKey.objects.get(key_id=created["key_id"])
    assert row.hmac_key() == secret  # sealed in the database, opened with the KEK
    assert response["Location"].endswith(f"{url}{created['key_id']}/")
    listed = operator.client.get(url).json()["results"]
    assert [k["key_id"] for k in listed] == [created["key_id"]]
    assert "hmac_key" not in listed[0]
    assert created["hmac_key"] not in operator.client.get(f"{url}{created['key_id']}/").content.decode()
    event = AuditEvent.objects.get(action="acme.eab_key.created")
    assert created["hmac_key"] not in str(event.details)


def test_eab_key_for_an_unknown_user_is_refused(admin, endpoint):
    response = admin.client.post(f"{ENDPOINTS}web/eab-keys/", {"user": "nobody"}, format="json")
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "user"
    assert not AcmeExternalAccountKey.objects.exists()


def test_unbound_eab_key_is_revoked_and_bound_key_is_kept(admin, endpoint):
    unbound, _ = create_eab_key(endpoint=endpoint, actor="t")
    bound, _ = create_eab_key(endpoint=endpoint, actor="t")
    bound.bound_at = bound.created_at
    bound.save()
    AcmeAccount.objects.create(
        endpoint=endpoint, jwk={}, jwk_thumbprint="x", eab_key=bound, created_at=bound.created_at
    )
    url = f"{ENDPOINTS}web/eab-keys/"
    assert admin.client.delete(f"{url}{unbound.key_id}/").status_code == 204
    assert not AcmeExternalAccountKey.objects.filter(pk=unbound.pk).exists()
    assert AuditEvent.objects.get(action="acme.eab_key.revoked").details["key_id"] == unbound.key_id
    response = admin.client.delete(f"{url}{bound.key_id}/")
    assert response.status_code == 409
    assert AcmeExternalAccountKey.objects.filter(pk=bound.pk).exists()
    assert admin.client.delete(f"{url}{unbound.key_id}/").status_code == 404


def test_eab_key_of_another_endpoint_is_not_found_here(admin, endpoint, issuing_ca):
    other = create_endpoint(
        name="other", ca=issuing_ca, profile=Profile.objects.get(name="tls-server"), actor="t"
    )
    key, _ = create_eab_key(endpoint=other, actor="t")
    assert admin.client.get(f"{ENDPOINTS}web/eab-keys/{key.key_id}/").status_code == 404
    assert admin.client.delete(f"{ENDPOINTS}web/eab-keys/{key.key_id}/").status_code == 404
    assert AcmeExternalAccountKey.objects.filter(pk=key.pk).exists()


# --- query counts --------------------------------------------------------------------------------
def test_endpoint_and_eab_key_lists_cost_a_fixed_number_of_queries(admin, operator, issuing_ca, endpoint):
    tls = Profile.objects.get(name="tls-server")
    for client in (admin.client, operator.client):
        client.get(ENDPOINTS)  # warm the grant caches of the client path
    with CaptureQueriesContext(connection) as few:
        assert admin.client.get(ENDPOINTS).status_code == 200
    with CaptureQueriesContext(connection) as few_keys:
        assert operator.client.get(f"{ENDPOINTS}web/eab-keys/").status_code == 200
    for i in range(5):
        create_endpoint(name=f"e{i}", ca=issuing_ca, profile=tls, actor="t")
        create_eab_key(endpoint=endpoint, user=admin.user, actor="t")
    with CaptureQueriesContext(connection) as many:
        assert len(admin.client.get(ENDPOINTS).json()) == 6
    with CaptureQueriesContext(connection) as many_keys:
        assert len(operator.client.get(f"{ENDPOINTS}web/eab-keys/").json()["results"]) == 5
    assert len(many) == len(few) <= 3  # token+user, grants, the list
    assert len(many_keys) == len(few_keys) <= 4  # token+user, grants, the endpoint, the page
    assert '"hmac_key"' not in many_keys.captured_queries[-1]["sql"]
