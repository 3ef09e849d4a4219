"""The Django admin manages ACME endpoints and EAB keys through the audited use cases."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User

from pki.acme.endpoints import create_eab_key, create_endpoint
from pki.models import AcmeEndpoint, AcmeExternalAccountKey, AuditEvent, Profile

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(client):
    User.objects.create_superuser(username="boss", password="a-long-password-42")
    client.login(username="boss", password="a-long-password-42")
    return client


def _form(issuing_ca, **fields):
    return {
        "name": "corp",
        "ca": issuing_ca.pk,
        "profile": Profile.objects.get(name="tls-server").pk,
        "allowed_identifiers": '["*.Example.test"]',
        "key_types": "[]",
        "caa_identities": "[]",
        "terms_of_service": "",
        "website": "",
        "validity_days": "",
        "enabled": "on",
        **fields,
    }


def test_admin_creates_and_edits_an_endpoint_through_the_use_cases(staff, issuing_ca):
    response = staff.post("/admin/pki/acmeendpoint/add/", _form(issuing_ca))
    assert response.status_code == 302, response.content.decode()[-2000:]
    endpoint = AcmeEndpoint.objects.get()
    assert endpoint.allowed_identifiers == ["dns:*.example.test"]
    assert AuditEvent.objects.get(action="acme.endpoint.created").actor == "admin:boss"
    form = _form(issuing_ca, allowed_identifiers='["**.example.test"]', eab_required="on")
    del form["enabled"]
    response = staff.post(f"/admin/pki/acmeendpoint/{endpoint.pk}/change/", form)
    assert response.status_code == 302
    endpoint.refresh_from_db()
    assert (endpoint.allowed_identifiers, endpoint.eab_required, endpoint.enabled) == (
        ["dns:**.example.test"],
        True,
        False,
    )
    assert AuditEvent.objects.filter(action="acme.endpoint.updated").count() == 1
    assert AuditEvent.objects.filter(action="acme.endpoint.disabled").count() == 1


@pytest.mark.parametrize(
    "fields",
    [
        {"allowed_identifiers": '["*.exa mple.test"]'},
        {"allowed_identifiers": '"*.example.test"'},
        {"name": "Bad_Name"},
        {"validity_days": "5000"},
    ],
)
def test_admin_refuses_a_bad_endpoint_and_writes_nothing(staff, issuing_ca, fields):
    response = staff.post("/admin/pki/acmeendpoint/add/", _form(issuing_ca, **fields))
    assert response.status_code == 200  # the form again, with the error
    assert "errornote" in response.content.decode()
    assert not AcmeEndpoint.objects.exists()
    assert not AuditEvent.objects.filter(action__startswith="acme.").exists()


def test_admin_mints_eab_keys_once_and_deleting_revokes_unbound_keys(staff, issuing_ca):
    endpoint = create_endpoint(
        name="corp", ca=issuing_ca, profile=Profile.objects.get(name="tls-server"), actor="t"
    )
    response = staff.post(
        "/admin/pki/acmeendpoint/",
        {"action": "mint_eab_keys", "_selected_action": [endpoint.pk]},
        follow=True,
    )
    match = re.search(r"--eab-kid (\S+) --eab-hmac-key ([A-Za-z0-9_-]+)", response.content.decode())
    assert match is not None
    key = AcmeExternalAccountKey.objects.get(key_id=match.group(1))
    assert (
        match.group(2)
        not in staff.get(f"/admin/pki/acmeexternalaccountkey/{key.pk}/change/").content.decode()
    )
    bound, _ = create_eab_key(endpoint=endpoint, actor="t")
    bound.bound_at = bound.created_at
    bound.save()
    assert (
        staff.post(f"/admin/pki/acmeexternalaccountkey/{bound.pk}/delete/", {"post": "yes"}).status_code
        == 403
    )
    staff.post(
        "/admin/pki/acmeexternalaccountkey/",
        {"action": "delete_selected", "_selected_action": [key.pk], "post": "yes"},
    )
    assert list(AcmeExternalAccountKey.objects.values_list("key_id", flat=True)) == [bound.key_id]
    assert AuditEvent.objects.get(action="acme.eab_key.revoked").details["key_id"] == key.key_id
