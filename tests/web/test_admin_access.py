"""The Django admin manages grants and tokens through the audited use cases."""

from __future__ import annotations

import io
import re

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError

from pki.models import ApiToken, AuditEvent, Role, RoleGrant
from pki.tokens import authenticate

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(client):
    User.objects.create_superuser(username="boss", password="a-long-password-42")
    client.login(username="boss", password="a-long-password-42")
    return client


def test_admin_creates_a_token_shown_once_in_a_message(staff):
    user = User.objects.create_user(username="machine")
    response = staff.post(
        "/admin/pki/apitoken/add/", {"user": user.pk, "name": "ci", "expires_days": 5}, follow=True
    )
    assert response.status_code == 200
    text = re.search(r"kmi_[0-9a-f]+_[A-Za-z0-9_-]+", response.content.decode()).group(0)
    token = authenticate(text)
    assert token is not None
    assert token.user == user
    assert token.expires_at is not None
    change_page = staff.get(f"/admin/pki/apitoken/{token.pk}/change/").content.decode()
    assert text not in change_page
    assert AuditEvent.objects.get(action="token.created").actor == "admin:boss"


def test_admin_revokes_tokens_with_an_action(staff):
    user = User.objects.create_user(username="machine")
    out = io.StringIO()
    call_command("create_token", "machine", stdout=out, stderr=io.StringIO())
    token = ApiToken.objects.get(user=user)
    staff.post("/admin/pki/apitoken/", {"action": "revoke_tokens", "_selected_action": [token.pk]})
    assert authenticate(out.getvalue().strip()) is None


def test_admin_grants_and_removes_roles_through_the_use_cases(staff, issuing_ca):
    user = User.objects.create_user(username="oscar")
    staff.post("/admin/pki/rolegrant/add/", {"user": user.pk, "role": Role.CA_OPERATOR, "ca": issuing_ca.pk})
    grant = RoleGrant.objects.get(user=user)
    assert grant.granted_by == "admin:boss"
    staff.post(f"/admin/pki/rolegrant/{grant.pk}/delete/", {"post": "yes"})
    assert not RoleGrant.objects.exists()
    assert [e.action for e in AuditEvent.objects.filter(object_type="rolegrant")] == [
        "access.granted",
        "access.revoked",
    ]


def test_grant_role_command_grants_and_revokes(issuing_ca):
    User.objects.create_user(username="rita")
    out = io.StringIO()
    call_command("grant_role", "rita", "requester", "--ca", "issuing", "--profile", "tls-server", stdout=out)
    assert "granted" in out.getvalue()
    assert RoleGrant.objects.filter(user__username="rita", role="requester").exists()
    with pytest.raises(CommandError, match="a requester grant names a CA and a profile"):
        call_command("grant_role", "rita", "requester", "--ca", "issuing", stdout=io.StringIO())
    call_command(
        "grant_role",
        "rita",
        "requester",
        "--ca",
        "issuing",
        "--profile",
        "tls-server",
        "--revoke",
        stdout=out,
    )
    assert not RoleGrant.objects.exists()
    with pytest.raises(CommandError, match="no such grant"):
        call_command("grant_role", "rita", "auditor", "--revoke", stdout=io.StringIO())


def test_admin_searches_certificates_by_name_serial_and_fingerprint(staff, issuing_ca, profile):
    from cryptography import x509

    from pki.issuance import issue_certificate
    from tests.conftest import make_csr

    certs = [
        issue_certificate(
            ca=issuing_ca,
            profile=profile("tls-server"),
            csr=make_csr(sans=[x509.DNSName(f"admin{i}.example.test")]),
            actor="t",
        )
        for i in range(3)
    ]

    def found(term: str) -> set[str]:
        page = staff.get("/admin/pki/certificate/", {"q": term})
        assert page.status_code == 200
        return {c.serial for c in certs if c.serial in page.content.decode()}

    assert found("ADMIN1.example") == {certs[1].serial}
    assert found(certs[2].serial[3:15]) == {certs[2].serial}
    fingerprint = certs[0].fingerprint_sha256.upper()
    assert found(":".join(fingerprint[i : i + 2] for i in range(0, 64, 2))) == {certs[0].serial}
    assert found("nothing.like.this") == set()
    assert staff.get(f"/admin/pki/certificate/{certs[0].pk}/change/").status_code == 200
