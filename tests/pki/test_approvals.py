"""Separation of duties: the submitter never approves; a profile may need N distinct approvers."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from pki.enrollment import approve_and_issue
from pki.exceptions import PolicyViolation
from pki.issuance import approve_request, submit_request
from pki.models import Approval, AuditEvent, Certificate, Profile, RequestState
from pki.profile_changes import update_profile
from tests.conftest import NOW, make_csr

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_person_signing(db):
    profile = Profile.objects.get(name="code-signing")
    return update_profile(profile=profile, changes={"approvals_required": 2}, actor="admin", now=NOW)


@pytest.fixture
def users():
    return {name: User.objects.create_user(name) for name in ("rita", "oscar", "olga")}


def _submit(ca, profile, requester):
    return submit_request(
        ca=ca,
        profile=profile,
        csr=make_csr("ec-p384", subject="CN=Release Signing,O=KMI"),
        actor=requester.username,
        requester=requester,
        now=NOW,
    )


def test_the_submitter_cannot_approve_her_own_request(issuing_ca, users):
    request = _submit(issuing_ca, Profile.objects.get(name="code-signing"), users["rita"])
    with pytest.raises(PolicyViolation, match="your own"):
        approve_request(request=request, actor="rita", reviewer=users["rita"], now=NOW)
    assert not Approval.objects.exists()
    request.refresh_from_db()
    assert request.state == RequestState.PENDING


def test_two_approvals_by_distinct_reviewers_issue_on_the_second(issuing_ca, users, two_person_signing):
    request = _submit(issuing_ca, two_person_signing, users["rita"])
    assert approve_and_issue(request=request, actor="oscar", reviewer=users["oscar"], now=NOW) is None
    request.refresh_from_db()
    assert request.state == RequestState.PENDING
    recorded = AuditEvent.objects.get(action="request.approval_recorded")
    assert recorded.details == {"approvals": 1, "required": 2, "approvers": ["oscar"]}
    with pytest.raises(PolicyViolation, match="already"):
        approve_request(request=request, actor="oscar (token 2)", reviewer=users["oscar"], now=NOW)
    with pytest.raises(PolicyViolation, match="your own"):
        approve_request(request=request, actor="rita", reviewer=users["rita"], now=NOW)
    cert = approve_and_issue(request=request, actor="olga", reviewer=users["olga"], now=NOW)
    assert isinstance(cert, Certificate)
    request.refresh_from_db()
    assert (request.state, request.reviewed_by) == (RequestState.ISSUED, "olga")
    assert [a.approved_by for a in request.approvals.all()] == ["oscar", "olga"]
    approved = AuditEvent.objects.get(action="request.approved")
    assert approved.details["approvers"] == ["oscar", "olga"]


def test_command_line_operators_count_once_each_by_name(issuing_ca, users, two_person_signing):
    request = _submit(issuing_ca, two_person_signing, users["rita"])
    approve_request(request=request, actor="cli:root", now=NOW)
    with pytest.raises(PolicyViolation, match="already"):
        approve_request(request=request, actor="cli:root", now=NOW)
    assert approve_request(request=request, actor="cli:ops2", now=NOW).state == RequestState.APPROVED


@pytest.mark.parametrize("bad", [0, 6])
def test_approvals_required_out_of_range_is_refused_and_nothing_changes(db, bad):
    profile = Profile.objects.get(name="code-signing")
    with pytest.raises(PolicyViolation, match="approvals_required"):
        update_profile(profile=profile, changes={"approvals_required": bad}, actor="admin", now=NOW)
    profile.refresh_from_db()
    assert profile.approvals_required == 1
    assert not AuditEvent.objects.filter(action="profile.updated").exists()
