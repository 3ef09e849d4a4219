"""Role grants and the ``can`` decision function."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import AnonymousUser, User

from pki.access import Action, can, grant_role, revoke_grant, visible_certificates, visible_keys
from pki.exceptions import PolicyViolation
from pki.models import AuditEvent, Profile, Role, RoleGrant

pytestmark = pytest.mark.django_db


@pytest.fixture
def bob(db):
    return User.objects.create_user(username="bob")


def test_grant_is_idempotent_and_audited_once(bob, issuing_ca):
    first = grant_role(user=bob, role=Role.CA_OPERATOR, ca=issuing_ca, actor="test")
    again = grant_role(user=bob, role=Role.CA_OPERATOR, ca=issuing_ca, actor="test")
    assert first.pk == again.pk
    assert AuditEvent.objects.filter(action="access.granted").count() == 1


@pytest.mark.parametrize(
    ("role", "with_ca", "with_profile"),
    [
        (Role.CA_OPERATOR, False, False),
        (Role.CA_OPERATOR, True, True),
        (Role.REQUESTER, True, False),
        (Role.REQUESTER, False, True),
        (Role.ADMINISTRATOR, True, False),
        (Role.AUDITOR, False, True),
    ],
)
def test_grant_with_the_wrong_scope_is_refused(bob, issuing_ca, role, with_ca, with_profile):
    profile = Profile.objects.get(name="tls-server")
    with pytest.raises(PolicyViolation):
        grant_role(
            user=bob,
            role=role,
            ca=issuing_ca if with_ca else None,
            profile=profile if with_profile else None,
            actor="test",
        )
    assert not RoleGrant.objects.exists()


def test_grant_takes_effect_on_the_same_user_object_and_revocation_too(bob, issuing_ca):
    tls = Profile.objects.get(name="tls-server")
    assert not can(bob, Action.SUBMIT_REQUEST, (issuing_ca, tls))
    grant = grant_role(user=bob, role=Role.REQUESTER, ca=issuing_ca, profile=tls, actor="test")
    assert can(bob, Action.SUBMIT_REQUEST, (issuing_ca, tls))
    assert not can(bob, Action.SUBMIT_REQUEST, (issuing_ca, Profile.objects.get(name="code-signing")))
    revoke_grant(grant=grant, actor="test")
    fresh = User.objects.get(pk=bob.pk)
    assert not can(fresh, Action.SUBMIT_REQUEST, (issuing_ca, tls))


def test_anonymous_and_inactive_users_may_do_nothing(bob, issuing_ca):
    grant_role(user=bob, role=Role.ADMINISTRATOR, actor="test")
    assert not can(AnonymousUser(), Action.VIEW_CA)
    assert not can(None, Action.VIEW_CA)
    inactive = User.objects.get(pk=bob.pk)
    inactive.is_active = False
    assert not can(inactive, Action.VIEW_CA)
    assert visible_certificates(inactive).count() == 0
    assert visible_keys(inactive).count() == 0


def test_superuser_is_an_administrator(db, issuing_ca):
    root = User.objects.create_superuser(username="root-user", password="unused-password-123")
    assert can(root, Action.CREATE_CA)
    assert visible_certificates(root).count() == 2  # both CA certificates


def test_auditor_reads_everything_and_changes_nothing(db, issuing_ca):
    auditor = User.objects.create_user(username="audrey")
    grant_role(user=auditor, role=Role.AUDITOR, actor="test")
    assert can(auditor, Action.VIEW_AUDIT)
    assert can(auditor, Action.VIEW_KEY, issuing_ca.key)
    assert not can(auditor, Action.REVOKE_CERTIFICATE, issuing_ca.certificate)
    assert not can(auditor, Action.SUBMIT_REQUEST, (issuing_ca, Profile.objects.get(name="tls-server")))
    assert visible_keys(auditor).count() == 2


def test_operator_sees_its_ca_key_but_not_the_parents(db, issuing_ca, root_ca):
    ops = User.objects.create_user(username="oscar")
    grant_role(user=ops, role=Role.CA_OPERATOR, ca=issuing_ca, actor="test")
    assert can(ops, Action.VIEW_KEY, issuing_ca.key)
    assert not can(ops, Action.VIEW_KEY, root_ca.key)
    assert not can(ops, Action.VIEW_AUDIT)
