"""A token never makes a token that outlives it or acts for someone else; the last administrator stays."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth.models import User

from pki.access import grant_role, revoke_grant
from pki.exceptions import InvalidState, PolicyViolation
from pki.models import ApiToken, AuditEvent, Role, RoleGrant
from pki.tokens import create_token
from tests.conftest import NOW

pytestmark = pytest.mark.django_db

DAY = dt.timedelta(days=1)


@pytest.fixture
def alice():
    user = User.objects.create_user("alice")
    grant_role(user=user, role=Role.ADMINISTRATOR, actor="test", now=NOW)
    return user


def test_a_token_made_with_a_token_expires_with_it_at_the_latest(alice):
    parent = create_token(user=alice, actor="alice", expires_at=NOW + 7 * DAY, now=NOW).token
    child = create_token(user=alice, actor="alice", parent=parent, now=NOW).token
    assert child.expires_at == parent.expires_at
    shorter = create_token(user=alice, actor="alice", parent=parent, expires_at=NOW + DAY, now=NOW).token
    assert shorter.expires_at == NOW + DAY
    event = AuditEvent.objects.get(action="token.created", object_id=str(child.pk))
    assert event.details["parent"] == parent.prefix


def test_a_token_that_would_outlive_or_act_for_another_user_is_refused(alice):
    parent = create_token(user=alice, actor="alice", expires_at=NOW + 7 * DAY, now=NOW).token
    bob = User.objects.create_user("bob")
    before = ApiToken.objects.count(), AuditEvent.objects.count()
    with pytest.raises(PolicyViolation, match="cannot outlive"):
        create_token(user=alice, actor="alice", parent=parent, expires_at=NOW + 8 * DAY, now=NOW)
    with pytest.raises(PolicyViolation, match="own user"):
        create_token(user=bob, actor="alice", parent=parent, now=NOW)
    assert (ApiToken.objects.count(), AuditEvent.objects.count()) == before


def test_a_token_without_expiry_makes_tokens_as_it_can(alice):
    parent = create_token(user=alice, actor="alice", now=NOW).token
    assert create_token(user=alice, actor="alice", parent=parent, now=NOW).token.expires_at is None


def test_the_last_administrator_grant_cannot_be_revoked(alice):
    grant = RoleGrant.objects.get(user=alice, role=Role.ADMINISTRATOR)
    with pytest.raises(InvalidState, match="last administrator"):
        revoke_grant(grant=grant, actor="alice", now=NOW)
    assert RoleGrant.objects.filter(pk=grant.pk).exists()
    assert not AuditEvent.objects.filter(action="access.revoked").exists()
    # An inactive administrator does not count; an active one (or a superuser) does.
    bob = User.objects.create_user("bob", is_active=False)
    grant_role(user=bob, role=Role.ADMINISTRATOR, actor="alice", now=NOW)
    with pytest.raises(InvalidState):
        revoke_grant(grant=grant, actor="alice", now=NOW)
    User.objects.create_superuser("root", password="unused-password-123")
    revoke_grant(grant=grant, actor="alice", now=NOW)
    assert not RoleGrant.objects.filter(pk=grant.pk).exists()


def test_other_grants_are_revoked_as_before(alice):
    carol = User.objects.create_user("carol")
    grant = grant_role(user=carol, role=Role.AUDITOR, actor="alice", now=NOW)
    revoke_grant(grant=grant, actor="alice", now=NOW)
    assert not RoleGrant.objects.filter(user=carol).exists()
