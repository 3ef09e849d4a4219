"""The signer's side of the signing channel in process: jobs, MACs, re-checked authority, refusals.

``handle_message`` is what the ``pki.signing.run`` task runs on a signing worker; the real worker
on a real broker, attacked by a bare Celery client, is in tests/web/test_signing_channel.py.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from pki.access import grant_role, revoke_grant
from pki.exceptions import ConfigurationError, SigningRefused
from pki.issuance import submit_request
from pki.models import AuditEvent, Certificate, RequestState, Role, RoleGrant, SigningJob, SigningJobState
from pki.signing import execute
from pki.signing_channel import REFUSED, create_job, job_mac, open_answer, result_mac
from pki.signing_channel import handle_message as _handle
from tests.conftest import make_csr

pytestmark = pytest.mark.django_db


def _refusals() -> list[str]:
    return list(
        AuditEvent.objects.filter(action=REFUSED).order_by("pk").values_list("details__reason", flat=True)
    )


@pytest.fixture
def rita(issuing_ca, profile) -> User:
    user = User.objects.create_user(username="rita", password="unused-password-123")
    grant_role(user=user, role=Role.REQUESTER, ca=issuing_ca, profile=profile("tls-server"), actor="test")
    return user


@pytest.fixture
def approved(issuing_ca, profile, rita):
    return submit_request(
        ca=issuing_ca, profile=profile("tls-server"), csr=make_csr(), actor="rita", requester=rita
    )


def handle_message(args: tuple[object, ...], kwargs: dict[str, object]) -> dict[str, object]:
    """What the ``pki.signing.run`` task does with a message."""
    return _handle(args, kwargs, execute=execute)


def _envelope(answer: dict[str, object]) -> dict[str, object]:
    """The envelope of an answer (refusals of a known job come back MAC'd, others bare)."""
    inner = answer.get("envelope", answer)
    assert isinstance(inner, dict)
    return inner


def _job(use_case: str, user: User | None, actor: str = "rita", **params: object) -> tuple[SigningJob, str]:
    return create_job(use_case=use_case, params=params, actor=actor, user=user)


def test_a_committed_job_with_its_mac_runs_once_as_the_actor_the_row_names(approved, rita):
    job, mac = _job("issue_request", rita, request_id=approved.pk)
    answer = handle_message((), {"job": str(job.pk), "mac": mac})
    envelope = open_answer(job, answer)
    assert envelope["ok"] is True
    cert = Certificate.objects.get(pk=envelope["result"]["certificate_id"])
    assert AuditEvent.objects.get(action="certificate.issued", object_id=str(cert.pk)).actor == "rita"
    job.refresh_from_db()
    assert (job.state, job.result) == (SigningJobState.DONE, envelope)
    # Redelivered: the stored result, nothing signed again.
    assert open_answer(job, handle_message((), {"job": str(job.pk), "mac": mac})) == envelope
    assert Certificate.objects.filter(request__isnull=False).count() == 1
    assert _refusals() == []


def test_messages_that_are_not_a_job_id_and_its_mac_are_refused_and_audited(approved, rita):
    job, mac = _job("issue_request", rita, request_id=approved.pk)
    forged = [
        (("issue_request",), {"request_id": approved.pk, "actor": "mallory"}),  # the old message form
        ((), {"job": str(job.pk)}),  # no MAC
        ((), {"job": str(job.pk), "mac": "0" * 64}),  # a bad MAC
        ((), {"job": str(job.pk), "mac": "\u00e9" * 64}),  # a bad MAC that is not even ASCII
        ((), {"job": str(job.pk), "mac": mac, "actor": "mallory"}),  # an extra argument
        ((), {"job": "not-a-uuid", "mac": mac}),
        ((), {"job": "6f1c2a4e-0000-4000-8000-000000000000", "mac": mac}),  # no such job
    ]
    for args, kwargs in forged:
        envelope = handle_message(args, kwargs)
        assert envelope["ok"] is False
        assert envelope["code"] == "signing_refused"
    assert _refusals() == [
        "malformed message: only a job id and its MAC are accepted",
        "malformed message: only a job id and its MAC are accepted",
        "bad MAC",
        "bad MAC",
        "malformed message: only a job id and its MAC are accepted",
        "malformed job id",
        "no such signing job",
    ]
    first = AuditEvent.objects.filter(action=REFUSED).order_by("pk").first()
    assert first is not None
    assert first.details["claimed_use_case"] == "issue_request"
    assert first.details["arguments"] == ["actor", "request_id"]
    assert not Certificate.objects.filter(request__isnull=False).exists()
    job.refresh_from_db()
    assert job.state == SigningJobState.PENDING  # a forged MAC does not cancel the real job
    approved.refresh_from_db()
    assert approved.state == RequestState.APPROVED


def test_a_job_whose_user_lost_the_grant_is_refused(issuing_ca, profile, approved, rita):
    job, mac = _job("issue_request", rita, request_id=approved.pk)
    revoke_grant(grant=RoleGrant.objects.get(user=rita), actor="test")
    envelope = _envelope(handle_message((), {"job": str(job.pk), "mac": mac}))
    assert envelope["code"] == "signing_refused"
    assert "rita may no longer submit to or review request" in envelope["message"]
    job.refresh_from_db()
    assert job.state == SigningJobState.REFUSED
    assert not Certificate.objects.filter(request__isnull=False).exists()
    refusal = AuditEvent.objects.get(action=REFUSED)
    assert refusal.details["use_case"] == "issue_request"
    assert refusal.object_id == str(job.pk)
    # Refused once, refused again: a refused job never runs.
    assert _envelope(handle_message((), {"job": str(job.pk), "mac": mac}))["code"] == "signing_refused"


def test_a_job_tampered_with_in_the_database_is_refused(approved, rita, issuing_ca):
    job, mac = _job("issue_request", rita, request_id=approved.pk)
    SigningJob.objects.filter(pk=job.pk).update(actor="alice")
    assert handle_message((), {"job": str(job.pk), "mac": mac})["message"] == "bad MAC"
    job2, mac2 = _job("issue_request", rita, request_id=approved.pk)
    SigningJob.objects.filter(pk=job2.pk).update(params={"request_id": approved.pk + 1})
    assert "parameters changed" in str(
        _envelope(handle_message((), {"job": str(job2.pk), "mac": mac2}))["message"]
    )
    assert not Certificate.objects.filter(request__isnull=False).exists()


@pytest.mark.parametrize(
    ("use_case", "params"),
    [
        ("renew_certificate", {"certificate_id": 1}),
        ("create_ca", {"creation_id": 1}),
        ("verify_eab", {"eab_id": 1, "alg": "HS256", "signing_input": "e30", "signature": "AA"}),
        ("destroy_key", {"key_id": "6f1c2a4e-0000-4000-8000-000000000000"}),
        ("rollover_ca", {"ca_id": 1}),
        ("renew_ca", {"ca_id": 1}),
        ("hand_over_server_key", {"delivery_id": "6f1c2a4e-0000-4000-8000-000000000000", "recipient": "x"}),
        ("hand_over_recovered_key", {"recovery_id": 1, "user_id": 1, "recipient": "x"}),
        ("request_server_key", {"ca_id": 1, "profile_id": 1, "requester_id": 1}),
        ("create_scep_label", {"name": "x", "ca_id": 1, "profile_id": 1, "challenge_hash": ""}),
        ("sign_everything", {}),
    ],
)
def test_a_requester_cannot_have_jobs_beyond_their_grants_run(rita, use_case, params):
    job, mac = _job(use_case, rita, **params)
    envelope = _envelope(handle_message((), {"job": str(job.pk), "mac": mac}))
    assert envelope["code"] == "signing_refused", envelope
    job.refresh_from_db()
    assert job.state == SigningJobState.REFUSED


def test_an_answer_without_the_signers_mac_is_not_believed(approved, rita):
    job, _mac = _job("issue_request", rita, request_id=approved.pk)
    planted = {"ok": True, "result": {"certificate_id": 1}}
    with pytest.raises(SigningRefused, match="valid MAC"):
        open_answer(job, {"job": str(job.pk), "envelope": planted, "mac": "0" * 64})
    with pytest.raises(SigningRefused):
        open_answer(job, planted)
    assert open_answer(job, {"envelope": planted, "mac": result_mac(str(job.pk), planted)}) == planted


def test_without_a_signing_secret_no_job_is_made_or_run(lifecycle_conf, approved, rita):
    job, mac = _job("issue_request", rita, request_id=approved.pk)
    lifecycle_conf(SIGNING_SECRET="too short")
    with pytest.raises(ConfigurationError, match="KMI_SIGNING_SECRET"):
        _job("issue_request", rita, request_id=approved.pk)
    envelope = handle_message((), {"job": str(job.pk), "mac": mac})
    assert envelope["code"] == "signing_refused"
    assert "cannot verify jobs" in envelope["message"]
    assert SigningJob.objects.count() == 1
    assert not Certificate.objects.filter(request__isnull=False).exists()


def test_the_mac_covers_the_user_and_the_actor(approved, rita):
    job, mac = _job("issue_request", rita, request_id=approved.pk)
    assert job_mac(job) == mac
    job.actor = "alice"
    assert job_mac(job) != mac


def test_old_signing_jobs_are_purged_and_their_messages_then_refused(approved, rita):
    import datetime as dt

    from pki.signing_channel import purge_signing_jobs
    from pki.tasks import BEAT_SCHEDULE

    job, mac = _job("issue_request", rita, request_id=approved.pk)
    assert purge_signing_jobs(now=job.created_at + dt.timedelta(days=29)) == 0
    assert purge_signing_jobs(now=job.created_at + dt.timedelta(days=31)) == 1
    assert _envelope(handle_message((), {"job": str(job.pk), "mac": mac}))["message"] == "no such signing job"
    assert "pki.purge_signing_jobs" in {entry["task"] for entry in BEAT_SCHEDULE.values()}


def test_an_administrator_cannot_have_a_ca_made_that_they_did_not_approve(issuing_ca, root_ca):
    """Separation of duties on the signer: a MAC'd create_ca job runs only for an approved creation
    and for an administrator who approved it (pki.signing_channel._check_create_ca)."""
    from pki.ca_creation import approve_ca_creation, request_ca_creation
    from pki.models import CertificateAuthority

    alice, bob, carol = (User.objects.create_user(n) for n in ("alice", "bob", "carol"))
    for admin in (alice, bob, carol):
        grant_role(user=admin, role=Role.ADMINISTRATOR, actor="test")
    asked = request_ca_creation(
        name="evil-sub",
        parent=root_ca,
        subject="CN=Evil Sub",
        key_type="ec-p256",
        validity_days=10,
        requester=alice,
        actor="alice",
    )
    for user in (alice, bob):  # pending: neither the requester nor another administrator gets it made
        job, mac = _job("create_ca", user, actor=user.username, creation_id=asked.pk)
        envelope = _envelope(handle_message((), {"job": str(job.pk), "mac": mac}))
        assert envelope["code"] == "signing_refused", envelope
    assert not CertificateAuthority.objects.filter(name="evil-sub").exists()
    assert approve_ca_creation(creation=asked, approver=bob, actor="bob").state == "done"
    job, mac = _job("create_ca", carol, actor="carol", creation_id=asked.pk)  # did not approve it
    assert "carol did not approve" in str(_envelope(handle_message((), {"job": str(job.pk), "mac": mac})))
    assert _refusals()[-1] == f"carol did not approve CA creation {asked.pk}"


def test_a_ca_keys_destruction_runs_only_once_two_administrators_approved_it(root_ca, issuing_ca):
    from pki.authorities import set_ca_state
    from pki.destruction import request_key_destruction
    from pki.models import CAState, KeyState

    ada = User.objects.create_user(username="ada", password="unused-password-123")
    grant_role(user=ada, role=Role.ADMINISTRATOR, actor="test")
    set_ca_state(ca=issuing_ca, state=CAState.DISABLED, actor="t")
    asked = request_key_destruction(key=issuing_ca.key, actor="ada", requester=ada, reason="retired")
    for params in (
        {"key_id": str(issuing_ca.key_id), "destruction_id": asked.pk},  # asked, not approved
        {"key_id": str(root_ca.key_id), "destruction_id": asked.pk},  # another key's destruction
        {"key_id": str(issuing_ca.key_id)},  # a CA key without any
    ):
        job, mac = _job("destroy_key", ada, actor="ada", **params)
        envelope = _envelope(handle_message((), {"job": str(job.pk), "mac": mac}))
        assert not envelope["ok"], envelope
    issuing_ca.key.refresh_from_db()
    assert issuing_ca.key.state != KeyState.DESTROYED
