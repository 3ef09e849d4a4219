"""Separation of duties for CA creation (pki.ca_creation): one administrator asks, others approve."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from pki.access import grant_role, revoke_grant
from pki.ca_creation import approve_ca_creation, reject_ca_creation, request_ca_creation
from pki.exceptions import InvalidState, NotAuthorized, PolicyViolation, SeparationOfDuties
from pki.models import AuditEvent, CACreation, CertificateAuthority, RoleGrant
from pki.signing import run_signing


def _admin(name: str) -> User:
    user = User.objects.create_user(name)
    grant_role(user=user, role="administrator", actor="t")
    return user


def _ask(requester: User, **overrides: object) -> CACreation:
    args: dict[str, object] = {
        "name": "issuing-2",
        "parent": CertificateAuthority.objects.get(name="root"),
        "subject": "CN=Issuing Two",
        "key_type": "ec-p256",
        "validity_days": 100,
        "name_constraints": {"permitted": ["dns:example.test"]},
        "requester": requester,
        "actor": requester.username,
        **overrides,
    }
    return request_ca_creation(**args)  # type: ignore[arg-type]


def _audited(creation: CACreation) -> list[str]:
    rows = AuditEvent.objects.filter(object_type="ca_creation", object_id=str(creation.pk)).order_by("pk")
    return list(rows.values_list("action", flat=True))


def test_a_ca_is_made_only_when_another_administrator_approves(issuing_ca):
    alice, bob = _admin("alice"), _admin("bob")
    asked = _ask(alice)
    assert asked.state == "pending"
    assert not CertificateAuthority.objects.filter(name="issuing-2").exists()
    with pytest.raises(SeparationOfDuties, match="another administrator must approve"):
        approve_ca_creation(creation=asked, approver=alice, actor="alice")
    assert not CertificateAuthority.objects.filter(name="issuing-2").exists()
    done = approve_ca_creation(creation=asked, approver=bob, actor="bob")
    assert done.state == "done"
    assert done.ca is not None
    assert done.ca.name == "issuing-2"
    assert done.ca.parent == CertificateAuthority.objects.get(name="root")
    assert done.ca.name_constraints["permitted"] == ["dns:example.test"]
    assert AuditEvent.objects.filter(action="ca.created", actor="bob", object_id=str(done.ca.pk)).exists()
    assert _audited(asked) == ["ca.creation_requested", "ca.creation_refused", "ca.creation_approved"]
    with pytest.raises(InvalidState, match="is done"):
        approve_ca_creation(creation=asked, approver=_admin("carol"), actor="carol")


def test_n_approvals_come_from_distinct_administrators(issuing_ca, settings):
    settings.KMI_CA_CREATION_APPROVALS = 2
    alice, bob, carol = _admin("alice"), _admin("bob"), _admin("carol")
    asked = _ask(alice)
    assert approve_ca_creation(creation=asked, approver=bob, actor="bob").state == "pending"
    with pytest.raises(SeparationOfDuties, match="approved CA issuing-2 already"):
        approve_ca_creation(creation=asked, approver=bob, actor="bob")
    assert not CertificateAuthority.objects.filter(name="issuing-2").exists()
    done = approve_ca_creation(creation=asked, approver=carol, actor="carol")
    assert done.state == "done"
    assert [a["by"] for a in done.approvals] == ["bob", "carol"]


def test_a_rejected_creation_makes_nothing_and_cannot_be_approved(issuing_ca):
    alice, bob = _admin("alice"), _admin("bob")
    asked = _ask(alice)
    with pytest.raises(PolicyViolation, match="needs a reason"):
        reject_ca_creation(creation=asked, reviewer=bob, actor="bob", reason="  ")
    rejected = reject_ca_creation(creation=asked, reviewer=bob, actor="bob", reason="not needed")
    assert (rejected.state, rejected.reason, rejected.decided_by) == ("cancelled", "not needed", "bob")
    with pytest.raises(InvalidState, match="is cancelled"):
        approve_ca_creation(creation=asked, approver=_admin("carol"), actor="carol")
    assert not CertificateAuthority.objects.filter(name="issuing-2").exists()
    assert _audited(asked) == ["ca.creation_requested", "ca.creation_rejected", "ca.creation_refused"]
    again = _ask(alice)  # the name is free again once the first request is closed
    assert again.state == "pending"


def test_bad_requests_are_refused_before_anything_is_stored(issuing_ca):
    alice = _admin("alice")
    operator = User.objects.create_user("oscar")
    grant_role(user=operator, role="ca_operator", ca=issuing_ca, actor="t")
    with pytest.raises(NotAuthorized, match="may not create CAs"):
        _ask(operator)
    with pytest.raises(PolicyViolation, match="lower-case"):
        _ask(alice, name="Bad Name")
    with pytest.raises(InvalidState, match="already exists"):
        _ask(alice, name="issuing")
    with pytest.raises(PolicyViolation, match="RFC 4514"):
        _ask(alice, subject="not a name")
    with pytest.raises(PolicyViolation, match="unknown key type"):
        _ask(alice, key_type="rsa-1024")
    with pytest.raises(PolicyViolation, match="path length 0"):
        _ask(alice, parent=issuing_ca)
    with pytest.raises(PolicyViolation, match="unknown keys"):
        _ask(alice, name_constraints={"allowed": ["dns:example.test"]})
    assert not CACreation.objects.exists()
    _ask(alice)
    with pytest.raises(InvalidState, match="already waiting for approval"):
        _ask(alice)
    assert CACreation.objects.count() == 1


def test_an_approver_whose_grant_was_revoked_cannot_approve(issuing_ca):
    alice, bob = _admin("alice"), _admin("bob")
    asked = _ask(alice)
    revoke_grant(grant=RoleGrant.objects.get(user=bob), actor="alice")
    with pytest.raises(NotAuthorized, match="bob may not create CAs"):
        approve_ca_creation(creation=asked, approver=bob, actor="bob")
    assert CACreation.objects.get(pk=asked.pk).state == "pending"


def test_zero_approvals_creates_at_once(issuing_ca, settings):
    settings.KMI_CA_CREATION_APPROVALS = 0
    made = _ask(_admin("alice"), parent=None, name="second-root", subject="CN=Second Root")
    assert made.state == "done"
    assert made.ca is not None
    assert made.ca.parent is None


def test_a_creation_that_can_no_longer_succeed_is_closed(issuing_ca, root_ca):
    alice, bob = _admin("alice"), _admin("bob")
    asked = _ask(alice)
    from pki.authorities import create_root_ca
    from pki.x509.names import parse_subject

    create_root_ca(name="issuing-2", subject=parse_subject("CN=Taken"), actor="cli")  # meanwhile, at the CLI
    with pytest.raises(InvalidState, match="already exists"):
        approve_ca_creation(creation=asked, approver=bob, actor="bob")
    asked.refresh_from_db()
    assert asked.state == "cancelled"
    assert "already exists" in asked.reason
    assert _audited(asked)[-1] == "ca.creation_failed"


def test_the_signing_use_case_makes_only_approved_creations(issuing_ca):
    asked = _ask(_admin("alice"))
    with pytest.raises(InvalidState, match="only an approved creation is made"):
        run_signing("create_ca", creation_id=asked.pk, actor="mallory")
    assert not CertificateAuthority.objects.filter(name="issuing-2").exists()
