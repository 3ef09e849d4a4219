"""Key controls: NIST SP 800-57 states on demand, CA key compromise, two-person CA key destruction."""

from __future__ import annotations

import io

import pytest
from cryptography import x509
from django.contrib.auth.models import User
from django.core import mail
from django.core.management import CommandError, call_command

from pki.authorities import ensure_can_sign
from pki.crl import publish_crl, publish_due_crls
from pki.destruction import approve_key_destruction, destroy_key, request_key_destruction
from pki.enrollment import sign_csr
from pki.exceptions import CAUnavailable, InvalidState, NotFound, PolicyViolation
from pki.key_controls import (
    KeyAction,
    change_key_state,
    find_key,
    mark_key_compromised,
    reactivate_key,
    suspend_key,
)
from pki.models import (
    AuditEvent,
    CAState,
    Certificate,
    KeyDestruction,
    KeyState,
    NotificationRecord,
    SealedKey,
)
from pki.models.key import KeyPurpose
from pki.rotation import rollover_ca
from tests.conftest import NOW, make_csr

pytestmark = pytest.mark.django_db


def _leaf(ca, profile, name="www"):
    sans = [x509.DNSName(f"{name}.example.test")]
    return sign_csr(
        ca=ca,
        profile=profile("tls-server"),
        csr=make_csr(subject=f"CN={name}.example.test", sans=sans),
        actor="t",
        now=NOW,
    )


def test_a_suspended_ca_key_signs_nothing_until_reactivated(issuing_ca, profile):
    key = suspend_key(key=issuing_ca.key, actor="officer", reason="investigation", now=NOW)
    assert key.state == KeyState.SUSPENDED
    assert key.suspended_at == NOW
    issuing_ca.refresh_from_db()
    with pytest.raises(CAUnavailable, match="suspended"):
        _leaf(issuing_ca, profile)
    with pytest.raises(CAUnavailable, match="suspended"):
        publish_crl(ca=issuing_ca, actor="t", now=NOW)
    assert suspend_key(key=key, actor="officer", now=NOW).state == KeyState.SUSPENDED  # no change
    reactivate_key(key=key, actor="officer", now=NOW)
    issuing_ca.refresh_from_db()
    assert _leaf(issuing_ca, profile).ca_id == issuing_ca.pk
    actions = list(AuditEvent.objects.filter(object_id=str(key.pk)).values_list("action", flat=True))
    assert actions[-2:] == ["key.suspended", "key.reactivated"]


def test_transitions_nist_does_not_allow_are_refused(issuing_ca):
    assert reactivate_key(key=issuing_ca.key, actor="t", now=NOW).state == KeyState.ACTIVE  # no change
    change_key_state(
        key=issuing_ca.key, action=KeyAction.DEACTIVATE, actor="t", reason="end of life", now=NOW
    )
    issuing_ca.refresh_from_db()
    assert issuing_ca.state == CAState.DISABLED
    with pytest.raises(InvalidState, match="only a suspended key"):
        reactivate_key(key=issuing_ca.key, actor="t", now=NOW)
    with pytest.raises(InvalidState, match="only an active key"):
        suspend_key(key=issuing_ca.key, actor="t", now=NOW)


def test_a_compromised_ca_key_revokes_its_certificate_and_optionally_everything_it_signed(
    root_ca, issuing_ca, profile, lifecycle_conf
):
    lifecycle_conf(ALERT_EMAILS="soc@example.test")
    leaves = [_leaf(issuing_ca, profile, name=n) for n in ("a", "b")]
    revoked = mark_key_compromised(
        key=issuing_ca.key, actor="officer", reason="HSM stolen", revoke_issued=True, now=NOW
    )
    own = issuing_ca.own_certificate()
    own.refresh_from_db()
    assert own.revocation_reason == "cACompromise"
    assert {c.pk for c in revoked} == {own.pk, *(leaf.pk for leaf in leaves)}
    for leaf in leaves:
        leaf.refresh_from_db()
        assert leaf.revocation_reason == "cACompromise"
    issuing_ca.refresh_from_db()
    assert issuing_ca.state == CAState.DISABLED
    assert issuing_ca.key.state == KeyState.COMPROMISED
    with pytest.raises(CAUnavailable):
        ensure_can_sign(issuing_ca, now=NOW)
    # The root's CRL lists the CA certificate; the compromised key signs no CRL of its own.
    root_crl = x509.load_der_x509_crl(bytes(publish_crl(ca=root_ca, actor="t", now=NOW).der))
    assert [e.serial_number for e in root_crl] == [own.serial_int]
    assert all(c.ca_id != issuing_ca.pk for c in publish_due_crls(actor="t", now=NOW))
    # An alert is planned for the CA's contacts and KMI_ALERT_EMAILS.
    alert = NotificationRecord.objects.get(kind="ca_compromise")
    assert alert.recipient == "soc@example.test"
    assert alert.payload["event"] == "ca.key_compromised"
    from pki.lifecycle import deliver_notices

    deliver_notices(now=NOW)
    assert mail.outbox[0].subject == "[KMI] CA issuing: its key was marked compromised"


def test_a_compromised_end_entity_key_revokes_with_key_compromise(issuing_ca, profile):
    from tests.support.certs import hold_key

    leaf = _leaf(issuing_ca, profile)
    key = hold_key(leaf)
    mark_key_compromised(key=key, actor="t", now=NOW)
    leaf.refresh_from_db()
    assert leaf.revocation_reason == "keyCompromise"
    assert not NotificationRecord.objects.filter(kind="ca_compromise").exists()
    with pytest.raises(PolicyViolation, match="goes with marking it compromised"):
        change_key_state(key=key, action=KeyAction.SUSPEND, actor="t", revoke_issued=True, now=NOW)


def test_a_ca_key_is_destroyed_only_by_two_administrators(issuing_ca):
    from pki.access import grant_role

    alice = User.objects.create_user("alice")
    bob = User.objects.create_user("bob")
    carol = User.objects.create_user("carol")  # no role: cannot be the second administrator
    for admin in (alice, bob):
        grant_role(user=admin, role="administrator", actor="t", now=NOW)
    key = issuing_ca.key
    with pytest.raises(InvalidState, match="not disabled"):
        request_key_destruction(key=key, actor="alice", requester=alice, now=NOW)
    change_key_state(key=key, action=KeyAction.DEACTIVATE, actor="alice", now=NOW)
    with pytest.raises(PolicyViolation, match="two administrators"):
        destroy_key(key=key, actor="alice", now=NOW)
    asked = request_key_destruction(key=key, actor="alice", requester=alice, reason="retired", now=NOW)
    with pytest.raises(InvalidState, match="asked to destroy"):
        request_key_destruction(key=key, actor="alice", requester=alice, now=NOW)
    with pytest.raises(PolicyViolation, match="cannot also approve"):
        approve_key_destruction(destruction=asked, actor="alice", approver=alice, now=NOW)
    with pytest.raises(PolicyViolation, match="carol is not an administrator"):
        approve_key_destruction(destruction=asked, actor="carol", approver=carol, now=NOW)
    key.refresh_from_db()
    assert key.state == KeyState.DEACTIVATED
    assert SealedKey.objects.filter(key=key).exists()
    destroyed = approve_key_destruction(destruction=asked, actor="bob", approver=bob, now=NOW)
    assert destroyed.state == KeyState.DESTROYED
    assert destroyed.destroyed_by == "alice + bob"
    assert not SealedKey.objects.filter(key=key).exists()
    assert KeyDestruction.objects.get(pk=asked.pk).state == "done"
    actions = list(AuditEvent.objects.filter(object_id=str(key.pk)).values_list("action", flat=True))
    assert actions[-3:] == ["key.destruction_requested", "key.destruction_approved", "key.destroyed"]


def test_a_previous_generation_key_is_a_ca_key_too(issuing_ca):
    old_key = issuing_ca.key
    rollover_ca(ca=issuing_ca, actor="t", now=NOW)
    with pytest.raises(PolicyViolation, match="two administrators"):
        destroy_key(key=old_key, actor="t", now=NOW)


def test_key_state_command_finds_keys_and_asks_a_second_administrator(issuing_ca, monkeypatch):
    assert find_key(issuing_ca.name) == issuing_ca.key
    assert find_key(issuing_ca.key.spki_sha256.upper()) == issuing_ca.key
    with pytest.raises(NotFound):
        find_key("nothing-like-a-key")
    out = io.StringIO()
    call_command("key_state", "issuing", "suspend", "--reason", "audit", stdout=out)
    assert "is suspended" in out.getvalue()
    call_command("key_state", "issuing", "deactivate", stdout=out)
    monkeypatch.setattr("getpass.getuser", lambda: "alice")
    call_command("key_state", str(issuing_ca.key_id), "destroy", "--reason", "retired", stdout=out)
    assert "waits for a different administrator" in out.getvalue()
    with pytest.raises(CommandError, match="cannot also approve"):
        call_command("key_state", str(issuing_ca.key_id), "destroy", stdout=out)
    monkeypatch.setattr("getpass.getuser", lambda: "bob")
    call_command("key_state", str(issuing_ca.key_id), "destroy", stdout=out)
    issuing_ca.key.refresh_from_db()
    assert issuing_ca.key.state == KeyState.DESTROYED
    assert issuing_ca.key.destroyed_by == "cli:alice + cli:bob"


def test_a_responder_key_is_replaced_when_suspended(issuing_ca, ocsp_env):
    from pki.ocsp import ensure_ocsp_responder

    first = ensure_ocsp_responder(ca=issuing_ca, actor="t", now=NOW)
    assert first.key.purpose == KeyPurpose.OCSP
    suspend_key(key=first.key, actor="t", now=NOW)
    second = ensure_ocsp_responder(ca=issuing_ca, actor="t", now=NOW)
    assert second.key_id != first.key_id
    assert Certificate.objects.filter(key=second.key).exists()
