"""Renewal is issuance: the subject stays, the profile's approval holds, the grant must be current."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from pki.access import grant_role, revoke_grant
from pki.exceptions import ApprovalRequired, NotAuthorized, PolicyViolation
from pki.issuance import approve_request, issue_certificate, renew_certificate, submit_request
from pki.models import AuditEvent, Certificate, CertificateRequest, Profile, RequestState, Role, RoleGrant
from pki.renewal import renew
from tests.conftest import NOW, make_csr

pytestmark = pytest.mark.django_db


@pytest.fixture
def people(issuing_ca):
    rita = User.objects.create_user("rita")
    oscar = User.objects.create_user("oscar")
    signing = Profile.objects.get(name="code-signing")
    grant_role(user=rita, role=Role.REQUESTER, ca=issuing_ca, profile=signing, actor="test")
    grant_role(user=oscar, role=Role.CA_OPERATOR, ca=issuing_ca, actor="test")
    return rita, oscar


@pytest.fixture
def signed(issuing_ca, people):
    """Rita's code-signing certificate, approved by Oscar."""
    rita, oscar = people
    request = submit_request(
        ca=issuing_ca,
        profile=Profile.objects.get(name="code-signing"),
        csr=make_csr("ec-p384", subject="CN=Rita Builder,O=KMI"),
        actor="rita",
        requester=rita,
        now=NOW,
    )
    approved = approve_request(request=request, actor="oscar", reviewer=oscar, now=NOW)
    return issue_certificate(request=approved, actor="oscar", now=NOW)


def _counts():
    return Certificate.objects.count(), CertificateRequest.objects.count()


def test_the_reviewed_attack_new_key_and_a_foreign_subject_is_refused(signed, people):
    rita, _ = people
    forged = make_csr("ec-p256", subject="CN=Microsoft Corporation")
    before = _counts()
    with pytest.raises(PolicyViolation, match="keeps the subject"):
        renew(certificate=signed, actor="rita", renewer=rita, csr=forged, now=NOW)
    with pytest.raises(PolicyViolation, match="keeps the subject"):
        renew_certificate(certificate=signed, actor="rita", renewer=rita, csr=forged, now=NOW)
    assert _counts() == before


def test_renewal_under_an_approval_profile_waits_for_another_operator(signed, people):
    rita, oscar = people
    with pytest.raises(ApprovalRequired):
        renew_certificate(certificate=signed, actor="rita", renewer=rita, now=NOW)
    result = renew(
        certificate=signed,
        actor="rita",
        renewer=rita,
        csr=make_csr("ec-p256", subject="CN=Rita Builder,O=KMI"),
        now=NOW,
    )
    assert result.certificate is None
    request = result.request
    assert request is not None
    assert (request.state, request.renews_id) == (RequestState.PENDING, signed.pk)
    assert request.requester_id == rita.pk
    submitted = AuditEvent.objects.get(action="request.submitted", object_id=str(request.pk))
    assert submitted.details["renews"] == signed.serial
    with pytest.raises(PolicyViolation, match="your own"):
        approve_request(request=request, actor="rita", reviewer=rita, now=NOW)
    approved = approve_request(request=request, actor="oscar", reviewer=oscar, now=NOW)
    successor = issue_certificate(request=approved, actor="oscar", now=NOW)
    assert successor.renewed_from_id == signed.pk
    assert successor.owner_id == rita.pk
    assert successor.subject == signed.subject
    assert successor.key_fingerprint != signed.key_fingerprint
    assert AuditEvent.objects.filter(action="certificate.renewed", object_id=str(successor.pk)).exists()


def test_after_her_grant_is_revoked_the_holder_renews_nothing(signed, people):
    rita, oscar = people
    pending = renew(certificate=signed, actor="rita", renewer=rita, now=NOW).request
    assert pending is not None
    revoke_grant(grant=RoleGrant.objects.get(user=rita), actor="admin", now=NOW)
    before = _counts()
    with pytest.raises(NotAuthorized):
        renew(certificate=signed, actor="rita", renewer=rita, now=NOW)
    with pytest.raises(NotAuthorized):
        renew_certificate(certificate=signed, actor="rita", renewer=rita, now=NOW)
    # What she submitted while she held it is checked again when it is approved.
    with pytest.raises(NotAuthorized):
        approve_request(request=pending, actor="oscar", reviewer=oscar, now=NOW)
    assert _counts() == before


def test_an_operator_of_the_ca_renews_a_tls_certificate_at_once(issuing_ca, people):
    _, oscar = people
    cert = issue_certificate(
        ca=issuing_ca, profile=Profile.objects.get(name="tls-server"), csr=make_csr(), actor="oscar", now=NOW
    )
    result = renew(certificate=cert, actor="oscar", renewer=oscar, now=NOW)
    assert result.request is None
    assert result.certificate is not None
    assert result.certificate.renewed_from_id == cert.pk
