"""/api/v1/grants/: administrators grant and revoke roles through the audited use cases."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from pki.access import Action, can
from pki.models import AuditEvent, Profile, RoleGrant

pytestmark = pytest.mark.django_db


@pytest.fixture
def pat(db):
    return User.objects.create_user(username="pat")


def test_an_administrator_grants_a_requester_role_and_it_takes_effect(admin, pat, issuing_ca):
    body = {"user": "pat", "role": "requester", "ca": "issuing", "profile": "tls-server"}
    created = admin.client.post("/api/v1/grants/", body, format="json")
    assert created.status_code == 201, created.json()
    grant = created.json()
    assert {k: grant[k] for k in body} == body
    assert grant["granted_by"].startswith("alice")
    assert created["Location"].endswith(f"/api/v1/grants/{grant['id']}/")
    assert can(pat, Action.SUBMIT_REQUEST, (issuing_ca, Profile.objects.get(name="tls-server")))
    again = admin.client.post("/api/v1/grants/", body, format="json")
    assert again.status_code == 200
    assert again.json()["id"] == grant["id"]
    assert RoleGrant.objects.filter(user=pat).count() == 1
    event = AuditEvent.objects.get(action="access.granted", object_id=str(grant["id"]))
    assert event.actor.startswith("alice")


def test_an_administrator_revokes_a_grant_and_it_is_audited(admin, requester):
    grant = RoleGrant.objects.filter(user=requester.user).first()
    assert admin.client.delete(f"/api/v1/grants/{grant.pk}/").status_code == 204
    assert not RoleGrant.objects.filter(pk=grant.pk).exists()
    assert AuditEvent.objects.filter(action="access.revoked", object_id=str(grant.pk)).exists()
    assert admin.client.delete(f"/api/v1/grants/{grant.pk}/").status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"user": "pat", "role": "requester", "ca": "issuing"}, None),  # a requester needs a profile
        ({"user": "pat", "role": "auditor", "ca": "issuing"}, None),  # a global role names no CA
        ({"user": "nobody", "role": "auditor"}, "user"),
        ({"user": "pat\x00", "role": "auditor"}, "user"),  # PostgreSQL text cannot hold NUL
        ({"user": "pat", "role": "overlord"}, "role"),
        ({"user": "pat", "role": "ca_operator", "ca": "no such ca"}, "ca"),
    ],
)
def test_bad_grants_are_refused_with_a_problem_and_write_nothing(admin, pat, issuing_ca, body, field):
    events = AuditEvent.objects.count()
    response = admin.client.post("/api/v1/grants/", body, format="json")
    assert response.status_code in (400, 422)
    assert response["Content-Type"] == "application/problem+json"
    if field is not None:
        assert [e["field"] for e in response.json()["errors"]] == [field]
    assert not RoleGrant.objects.filter(user=pat).exists()
    assert AuditEvent.objects.count() == events


def test_grants_list_filters_and_everyone_sees_their_own(admin, requester, operator, auditor):
    mine = requester.client.get("/api/v1/grants/").json()["results"]
    assert {g["user"] for g in mine} == {"rita"}
    assert len(mine) == 3
    everyone = auditor.client.get("/api/v1/grants/").json()["results"]
    assert {g["user"] for g in everyone} >= {"rita", "oscar", "alice", "audrey"}
    operators = admin.client.get("/api/v1/grants/", {"role": "ca_operator"}).json()["results"]
    assert [g["user"] for g in operators] == ["oscar"]
    ritas = admin.client.get("/api/v1/grants/", {"user": "rita", "ca": "issuing"}).json()["results"]
    assert [g["role"] for g in ritas] == ["requester"] * 3
    assert admin.client.get("/api/v1/grants/", {"role": "odd"}).status_code == 400
