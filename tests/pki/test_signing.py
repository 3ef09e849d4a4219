"""The signing seam in process: use cases by name, idempotent replays, errors as themselves."""

from __future__ import annotations

import pytest
from django.db import transaction

from pki.exceptions import InvalidState, NotFound, PolicyViolation, SigningFailed, SigningUnavailable
from pki.issuance import submit_request
from pki.models import Certificate, RequestState
from pki.signals import signing_finished
from pki.signing import _raise_from_envelope, execute_enveloped, run_signing, use_case_names
from pki.tasks import BEAT_SCHEDULE, enqueue
from tests.conftest import make_csr

pytestmark = pytest.mark.django_db


def test_issue_request_in_process_returns_the_certificate_and_replays_it(issuing_ca, profile):
    request = submit_request(ca=issuing_ca, profile=profile("tls-server"), csr=make_csr(), actor="t")
    first = run_signing("issue_request", request_id=request.pk, actor="api:t")
    again = run_signing("issue_request", request_id=request.pk, actor="api:t")
    cert = Certificate.objects.get(pk=first["certificate_id"])
    assert cert.request_id == request.pk
    assert (first["replayed"], again["replayed"]) == (False, True)
    assert again["certificate_id"] == cert.pk
    request.refresh_from_db()
    assert request.state == RequestState.ISSUED


def test_renew_certificate_through_the_seam(issuing_ca, profile):
    request = submit_request(ca=issuing_ca, profile=profile("tls-server"), csr=make_csr(), actor="t")
    first = run_signing("issue_request", request_id=request.pk, actor="t")
    renewed = run_signing("renew_certificate", certificate_id=first["certificate_id"], actor="t")
    assert Certificate.objects.get(pk=renewed["certificate_id"]).renewed_from_id == first["certificate_id"]


def test_unknown_use_case_and_unknown_ids_are_not_found(issuing_ca):
    assert use_case_names() == [
        "create_ca",
        "create_scep_label",
        "destroy_key",
        "hand_over_recovered_key",
        "hand_over_server_key",
        "issue_request",
        "renew_ca",
        "renew_certificate",
        "request_server_key",
        "rollover_ca",
        "scep_operation",
        "verify_eab",
    ]
    with pytest.raises(NotFound, match="no signing use case 'sign_everything'"):
        run_signing("sign_everything", request_id=1, actor="t")
    with pytest.raises(NotFound, match="no certificate request 987654"):
        run_signing("issue_request", request_id=987654, actor="t")


def test_pending_request_is_refused_with_the_domain_error(issuing_ca, profile):
    pending = submit_request(
        ca=issuing_ca, profile=profile("code-signing"), csr=make_csr("ec-p384", subject="CN=Dev"), actor="t"
    )
    with pytest.raises(InvalidState, match="not approved"):
        run_signing("issue_request", request_id=pending.pk, actor="t")


def test_worker_mode_refuses_to_wait_inside_an_open_transaction(lifecycle_conf):
    lifecycle_conf(SIGNING="worker")
    with transaction.atomic(), pytest.raises(RuntimeError, match="after the transaction commits"):
        run_signing("issue_request", request_id=1, actor="t")


def test_domain_errors_travel_from_the_worker_as_data_and_come_back_as_themselves():
    envelope = execute_enveloped("sign_everything", request_id=1)
    assert envelope == {
        "ok": False,
        "error": "NotFound",
        "code": "not_found",
        "message": envelope["message"],
    }
    with pytest.raises(NotFound):
        _raise_from_envelope(envelope)
    with pytest.raises(PolicyViolation, match="nope"):
        _raise_from_envelope({"ok": False, "error": "PolicyViolation", "message": "nope"})
    with pytest.raises(SigningFailed):
        _raise_from_envelope({"ok": False, "error": "SystemExit", "message": "not a domain error"})
    assert _raise_from_envelope({"ok": True, "result": {"certificate_id": 3}}) == {"certificate_id": 3}


def test_every_call_reports_its_outcome_for_metrics(issuing_ca):
    seen: list[dict[str, object]] = []

    def receiver(**kwargs: object) -> None:
        seen.append(kwargs)

    signing_finished.connect(receiver)
    try:
        with pytest.raises(NotFound):
            run_signing("issue_request", request_id=424242, actor="t")
    finally:
        signing_finished.disconnect(receiver)
    assert seen[0]["use_case"] == "issue_request"
    assert seen[0]["outcome"] == "not_found"
    assert seen[0]["placement"] == "inprocess"


def test_signing_unavailable_is_a_domain_error_with_its_own_code():
    assert SigningUnavailable("x").code == "signing_unavailable"


def test_enqueue_sends_only_after_commit(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks, transaction.atomic():
        enqueue("pki.lifecycle.expiry_scan")
    assert len(callbacks) == 1


def test_beat_schedule_runs_every_lifecycle_job():
    tasks = {entry["task"] for entry in BEAT_SCHEDULE.values()}
    assert {
        "pki.lifecycle.expiry_scan",
        "pki.signing.auto_renew",
        "pki.lifecycle.deactivate_expired_keys",
        "pki.lifecycle.destroy_keys_past_retention",
        "pki.signing.renew_service_certificates",
    } <= tasks


def test_ca_creation_through_the_seam_is_replayable(root_ca, settings):
    from django.contrib.auth.models import User

    from pki.access import grant_role
    from pki.ca_creation import request_ca_creation

    settings.KMI_CA_CREATION_APPROVALS = 0
    alice = User.objects.create_user("alice")
    grant_role(user=alice, role="administrator", actor="t")
    made = request_ca_creation(
        name="seam-sub",
        parent=root_ca,
        subject="CN=Seam Sub",
        key_type="ec-p256",
        validity_days=10,
        path_length=0,
        requester=alice,
        actor="alice",
    )
    assert made.ca is not None
    again = run_signing("create_ca", creation_id=made.pk, actor="alice")
    assert again == {"ca_id": made.ca.pk, "serial": made.ca.own_certificate().serial, "replayed": True}
    with pytest.raises(NotFound):
        run_signing("create_ca", creation_id=10**9, actor="t")


def test_key_destruction_through_the_seam(issuing_ca, profile):
    from tests.support.certs import hold_key, issue

    key = hold_key(issue(issuing_ca, profile))
    assert run_signing("destroy_key", key_id=str(key.pk), actor="t") == {
        "key_id": str(key.pk),
        "state": "destroyed",
    }
    with pytest.raises(NotFound):
        run_signing("destroy_key", key_id="not-a-uuid", actor="t")


def test_the_signer_has_a_check_for_every_signing_use_case():
    # A use case without one would be refused on every signer ("unknown signing use case").
    from pki.signing_channel import _CHECKS

    assert sorted(_CHECKS) == use_case_names()
