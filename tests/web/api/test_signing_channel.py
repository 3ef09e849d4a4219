"""The review's attack on the signing channel (issue 10 §1), against a real signer.

One Celery signing worker (holding the KEK, ``KMI_SIGNING_SECRET`` set) runs for the module on a
private ``redis-server`` in this engineer's port range. The attacker is a bare Celery client: a
plain ``celery.Celery(broker=…)`` with the broker URL and nothing else (no Django, no database,
no KEK, no secret). It sends ``pki.signing.run`` for every signing use case with forged
arguments, a legitimate message again (replay), and a real job id without its MAC: nothing is
signed, delivered or destroyed, and every refusal is in the worker's log and the audit trail.
The legitimate paths (web processes without a KEK, ``KMI_SIGNING=worker``) still work.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import x25519
from cryptography.hazmat.primitives.serialization import pkcs12

from pki.models import (
    AuditEvent,
    Certificate,
    CertificateAuthority,
    Key,
    KeyDelivery,
    KeyState,
    Profile,
    RequestState,
    Role,
    SigningJob,
    SigningJobState,
)
from pki.signing_channel import REFUSED, job_mac
from tests.conftest import make_csr
from tests.support.certs import hold_key, issue
from tests.support.processes import SigningWorker, web_side_api, worker_ports

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

PORTS = worker_ports(22000, 22099)
PASSWORD = "correct horse battery"


class Signer(SigningWorker):
    """A private Redis and one signing worker; web processes and the attacker use the same broker."""

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp, PORTS)
        self.attacker = self._bare_client()

    def _bare_client(self) -> Celery:
        """What someone with only the Redis URL runs: a plain Celery app, JSON messages."""
        app = Celery("attacker", broker=self.redis_url, backend=self.redis_url, set_as_current=False)
        app.conf.update(
            # The key prefix is visible to anyone who can list Redis keys.
            broker_transport_options={"global_keyprefix": self.prefix},
            result_backend_transport_options={"global_keyprefix": self.prefix},
            task_serializer="json",
            accept_content=["json"],
        )
        return app

    def send(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """The attacker sends ``pki.signing.run(*args, **kwargs)`` to the signing queue; the answer."""
        result = self.attacker.send_task("pki.signing.run", args=list(args), kwargs=kwargs, queue="signing")
        answer: dict[str, Any] = result.get(timeout=60)
        return answer

    def close(self) -> None:
        self.attacker.close()
        super().close()


@pytest.fixture(scope="module")
def signer(django_db_setup: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Signer]:
    s = Signer(tmp_path_factory.mktemp("signing-channel"))
    yield s
    s.close()


@pytest.fixture(autouse=True)
def _signer_idle_before_the_flush(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "signer" in request.fixturenames:
        request.getfixturevalue("signer").wait_idle()


@pytest.fixture
def rita(make_actor, issuing_ca):
    return make_actor("rita", (Role.REQUESTER, issuing_ca, Profile.objects.get(name="tls-server")))


def _refused(answer: dict[str, Any]) -> None:
    """A refusal envelope: data, no result, no key."""
    answer = answer.get("envelope", answer)  # refusals of a known job come back MAC'd
    assert answer["ok"] is False, answer
    assert answer["code"] == "signing_refused", answer
    assert "result" not in answer


def _server_key(owner: Any, issuing_ca: CertificateAuthority) -> tuple[KeyDelivery, str]:
    """A server-generated key of ``owner``'s, waiting for its one download; its download secret."""
    from pki.serverkeys import new_download_secret, request_server_key
    from pki.x509.names import parse_san

    secret, digest = new_download_secret()
    return request_server_key(
        ca=issuing_ca,
        profile=Profile.objects.get(name="tls-server"),
        subject=x509.Name([]),
        sans=[parse_san("dns:www.example.test")],
        key_type="ec-p256",
        actor=owner.user.username,
        requester=owner.user,
        download_secret_sha256=digest,
    ), secret


def test_a_bare_celery_client_gets_nothing_signed_delivered_or_destroyed(
    signer, rita, issuing_ca, profile, make_actor
):
    delivery, secret = _server_key(rita, issuing_ca)
    url = f"/api/v1/server-keys/{delivery.pk}/pkcs12/"
    cert = issue(issuing_ca, profile)
    key = hold_key(cert)
    code_signing = Profile.objects.get(name="code-signing")
    from pki.issuance import submit_request

    waiting = submit_request(
        ca=issuing_ca, profile=code_signing, csr=make_csr("ec-p384", subject="CN=Dev,O=KMI"), actor="t"
    )
    assert waiting.state == RequestState.PENDING
    mallory_key = x25519.X25519PrivateKey.generate().public_key().public_bytes_raw()
    recipient = base64.b64encode(mallory_key).decode()
    certs_before = Certificate.objects.count()

    cas_before = CertificateAuthority.objects.count()

    forged = {
        "hand_over_server_key": {
            "delivery_id": str(delivery.pk),
            "download_secret": "guessed",
            "actor": "rita",
            "recipient": recipient,
        },
        "renew_certificate": {
            "certificate_id": cert.pk,
            "actor": "alice",
            "csr_pem": make_csr("ec-p256-b", subject="CN=www.example.test").decode(),
        },
        "create_ca": {"creation_id": 1, "actor": "alice"},
        "destroy_key": {"key_id": str(key.pk), "actor": "alice", "reason": "mallory"},
        "issue_request": {"request_id": waiting.pk, "actor": "oscar"},
        "rollover_ca": {"ca_id": issuing_ca.pk, "actor": "alice"},
        "renew_ca": {"ca_id": issuing_ca.pk, "actor": "alice"},
        "scep_operation": {"label_id": 1, "body": "", "actor": "alice"},
    }
    for use_case, kwargs in forged.items():
        _refused(signer.send(use_case, **kwargs))
    # The new message form with a job id the attacker made up, or a real one without its MAC.
    _refused(signer.send(job=str(uuid.uuid4()), mac="0" * 64))
    from pki.signing_channel import create_job

    mine = submit_request(
        ca=issuing_ca,
        profile=Profile.objects.get(name="tls-server"),
        csr=make_csr("rsa-2048", sans=[x509.DNSName("www.example.test")]),
        actor="rita",
        requester=rita.user,
    )
    legit_job, legit_mac = create_job(
        use_case="issue_request", params={"request_id": mine.pk}, actor="rita", user=rita.user
    )
    _refused(signer.send(job=str(legit_job.pk)))
    _refused(signer.send(job=str(legit_job.pk), mac="0" * 64))

    # Nothing signed, delivered or destroyed.
    assert Certificate.objects.count() == certs_before
    assert CertificateAuthority.objects.count() == cas_before
    delivery.refresh_from_db()
    assert delivery.delivered_at is None
    assert Key.objects.get(pk=delivery.key_id).state == KeyState.ACTIVE
    assert Key.objects.get(pk=key.pk).state == KeyState.ACTIVE
    waiting.refresh_from_db()
    assert waiting.state == RequestState.PENDING
    assert not AuditEvent.objects.filter(actor__in=["alice", "oscar"]).exists()
    assert not AuditEvent.objects.filter(action="key.delivered").exists()

    # Each refusal is audited and logged.
    refusals = list(AuditEvent.objects.filter(action=REFUSED).order_by("pk"))
    assert [e.details.get("claimed_use_case") for e in refusals[: len(forged)]] == list(forged)
    assert [e.details["reason"] for e in refusals[len(forged) :]] == [
        "no such signing job",
        "malformed message: only a job id and its MAC are accepted",
        "bad MAC",
    ]
    assert signer.worker.output().count("signing refused") >= len(forged) + 3

    # The owner still gets her key, once, through the checked path.
    download = json.dumps({"password": PASSWORD, "download_secret": secret})
    first = web_side_api(signer.web_env(), rita.token, "POST", url, download)
    assert first["status"] == 200, first["body"]
    bundle = pkcs12.load_pkcs12(base64.b64decode(first["body_b64"]), PASSWORD.encode())
    assert bundle.key is not None
    assert AuditEvent.objects.get(action="key.delivered").actor.startswith("rita ")  # her token

    # Replaying the legitimate hand-over message (job id and MAC, as sniffed on Redis) gets nothing.
    hand_over = SigningJob.objects.get(use_case="hand_over_server_key")
    assert hand_over.state == SigningJobState.DONE
    assert hand_over.result == {"ok": True, "result": {"handed_over": True}}  # no key material kept
    _refused(signer.send(job=str(hand_over.pk), mac=job_mac(hand_over)))
    assert AuditEvent.objects.filter(action="key.delivered").count() == 1
    # The web side's job runs once; replaying its message returns the stored result, signs nothing.
    first_run = signer.send(job=str(legit_job.pk), mac=legit_mac)["envelope"]
    assert first_run["ok"] is True
    replay = signer.send(job=str(legit_job.pk), mac=job_mac(legit_job))["envelope"]
    assert replay == first_run
    assert Certificate.objects.filter(request=mine).count() == 1


def test_a_job_whose_user_lost_the_grant_meanwhile_is_refused_on_the_signer(signer, rita, issuing_ca):
    """The web side decided; before the signer ran it, the grant went: the signer refuses."""
    from pki.access import revoke_grant
    from pki.issuance import submit_request
    from pki.models import RoleGrant
    from pki.signing_channel import create_job

    request = submit_request(
        ca=issuing_ca,
        profile=Profile.objects.get(name="tls-server"),
        csr=make_csr(),
        actor="rita",
        requester=rita.user,
    )
    job, mac = create_job(
        use_case="issue_request", params={"request_id": request.pk}, actor="rita", user=rita.user
    )
    revoke_grant(grant=RoleGrant.objects.get(user=rita.user), actor="test")
    answer = signer.send(job=str(job.pk), mac=mac)
    assert answer["envelope"]["code"] == "signing_refused"
    assert not Certificate.objects.filter(request=request).exists()
    assert AuditEvent.objects.get(action=REFUSED).details["use_case"] == "issue_request"


def test_legitimate_enrollment_renewal_and_approval_still_work_through_the_signer(
    signer, rita, make_actor, issuing_ca
):
    env = signer.web_env()
    body = json.dumps({"csr": make_csr().decode(), "ca": "issuing", "profile": "tls-server"})
    enrolled = web_side_api(env, rita.token, "POST", "/api/v1/enroll", body)
    assert enrolled["status"] == 201, enrolled["body"]
    cert_id = int(enrolled["headers"]["Location"].rstrip("/").rsplit("/", 1)[1])
    renewed = web_side_api(env, rita.token, "POST", f"/api/v1/certificates/{cert_id}/renew/", "{}")
    assert renewed["status"] == 201, renewed["body"]
    jobs = dict(SigningJob.objects.values_list("use_case", "state"))
    assert jobs == {"issue_request": SigningJobState.DONE, "renew_certificate": SigningJobState.DONE}
    assert set(SigningJob.objects.values_list("user_id", flat=True)) == {rita.user.pk}
    # The enrollment and the renewal, each recorded as the job row's actor (her token).
    mine = AuditEvent.objects.filter(actor__startswith="rita ", action__startswith="certificate.")
    assert sorted(mine.values_list("action", flat=True)) == ["certificate.issued", "certificate.renewed"]
    assert not AuditEvent.objects.filter(action=REFUSED).exists()


def test_legitimate_ca_creation_and_server_keys_work_through_the_signer(signer, rita, make_actor, issuing_ca):
    env = signer.web_env()
    alice = make_actor("alice", (Role.ADMINISTRATOR, None, None))
    body = json.dumps({"name": "team-sub", "parent": issuing_ca.parent.name, "subject": "CN=Team Sub,O=KMI"})
    asked = web_side_api(env, alice.token, "POST", "/api/v1/cas/", body)
    assert asked["status"] == 202, asked["body"]  # another administrator approves (pki.ca_creation)
    approve = f"/api/v1/ca-creations/{json.loads(asked['body'])['id']}/approve/"
    assert web_side_api(env, alice.token, "POST", approve)["status"] == 403  # not her own
    bob = make_actor("bob", (Role.ADMINISTRATOR, None, None))
    created = web_side_api(env, bob.token, "POST", approve)
    assert created["web_has_kek"] is False
    assert created["status"] == 201, created["body"]  # was 503 with KMI_SIGNING=worker
    assert CertificateAuthority.objects.get(name="team-sub").parent_id == issuing_ca.parent_id
    assert AuditEvent.objects.get(action="ca.created", actor__startswith="bob") is not None
    # An operator may not: refused on the web side (403), and no job reaches the signer.
    oscar = make_actor("oscar", (Role.CA_OPERATOR, issuing_ca, None))
    body = json.dumps({"name": "oscar-sub", "parent": issuing_ca.parent.name, "subject": "CN=Oscar Sub"})
    assert web_side_api(env, oscar.token, "POST", "/api/v1/cas/", body)["status"] == 403

    body = json.dumps({"ca": "issuing", "profile": "tls-server", "sans": ["dns:www.example.test"]})
    made = web_side_api(env, rita.token, "POST", "/api/v1/server-keys/", body)
    assert made["status"] == 201, made["body"]
    data = json.loads(made["body"])
    url = data["pkcs12_url"]
    guessed = web_side_api(
        env, rita.token, "POST", url, json.dumps({"password": PASSWORD, "download_secret": "x"})
    )
    assert guessed["status"] == 422, guessed["body"]
    download = json.dumps({"password": PASSWORD, "download_secret": data["download_secret"]})
    first = web_side_api(env, rita.token, "POST", url, download)
    assert first["status"] == 200, first["body"]
    assert web_side_api(env, rita.token, "POST", url, download)["status"] == 410
    jobs = list(SigningJob.objects.values_list("use_case", "state"))
    assert ("create_ca", SigningJobState.DONE) in jobs
    assert ("request_server_key", SigningJobState.DONE) in jobs
    assert ("hand_over_server_key", SigningJobState.DONE) in jobs
    # The one-time secret does not stay in the job rows.
    assert not any("download_secret" in p for p in SigningJob.objects.values_list("params", flat=True))


def test_acme_external_account_binding_is_checked_on_the_signer(signer, issuing_ca):
    """The web process holds no KEK, so it cannot open an EAB HMAC key: a signing job checks the
    MAC where it can be opened (issue 10 item 2; it was serverInternal)."""
    import subprocess
    import sys

    from pki.acme.endpoints import create_eab_key, create_endpoint
    from pki.models import AcmeAccount

    endpoint = create_endpoint(
        name="eab-worker",
        ca=issuing_ca,
        profile=Profile.objects.get(name="tls-server"),
        allowed_identifiers=["**.example.test"],
        eab_required=True,
        actor="test",
    )
    eab_key, hmac_key = create_eab_key(endpoint=endpoint, actor="test")
    env = signer.web_env()

    def register(secret: str, key_name: str) -> dict[str, Any]:
        args = [sys.executable, "-m", "tests.support.web_side", "acme-eab", "eab-worker", eab_key.key_id]
        done = subprocess.run(
            [*args, secret, key_name], env=env, capture_output=True, timeout=120, check=False
        )
        assert done.returncode == 0, done.stderr.decode()[-2000:]
        result: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
        return result

    wrong = register("A" * 43, "ec-p256")
    assert wrong["web_has_kek"] is False
    assert (wrong["status"], wrong["problem"]) == (403, "unauthorized"), wrong
    assert not AcmeAccount.objects.exists()
    made = register(hmac_key, "ec-p256")
    assert made["status"] == 201, made
    assert AcmeAccount.objects.get().eab_key == eab_key
    # Bound now: another key using it is refused, and the signer is not even asked.
    assert register(hmac_key, "ec-p384")["problem"] == "unauthorized"
    assert AcmeAccount.objects.count() == 1
    jobs = list(SigningJob.objects.filter(use_case="verify_eab").values_list("state", "result"))
    assert jobs == [
        (SigningJobState.DONE, {"ok": True, "result": {"valid": False}}),
        (SigningJobState.DONE, {"ok": True, "result": {"valid": True}}),
    ]


def test_a_ca_creation_approved_while_no_signer_answers_waits_and_can_be_rejected(
    signer, make_actor, issuing_ca
):
    """Approved but not made (503: no signer took the job): the creation stays approved, and an
    administrator can still close it; the job, if a signer ever takes it, then makes nothing."""
    from pki.models import CACreation
    from tests.support.processes import delete_prefixed_keys

    alice = make_actor("alice", (Role.ADMINISTRATOR, None, None))
    bob = make_actor("bob", (Role.ADMINISTRATOR, None, None))
    env = signer.web_env()
    body = json.dumps({"name": "late-sub", "parent": issuing_ca.parent.name, "subject": "CN=Late Sub"})
    asked = json.loads(web_side_api(env, alice.token, "POST", "/api/v1/cas/", body)["body"])
    lonely = f"kmi-test-{uuid.uuid4().hex[:10]}:"  # a broker namespace no signer listens on
    try:
        unanswered = web_side_api(
            {**env, "KMI_SIGNING_TIMEOUT": "1", "KMI_REDIS_KEY_PREFIX": lonely},
            bob.token,
            "POST",
            f"/api/v1/ca-creations/{asked['id']}/approve/",
        )
    finally:
        delete_prefixed_keys(signer.redis_url, lonely)
    assert unanswered["status"] == 503, unanswered["body"]
    assert CACreation.objects.get(pk=asked["id"]).state == "approved"
    assert not CertificateAuthority.objects.filter(name="late-sub").exists()
    reason = json.dumps({"reason": "no signer today"})
    closed = web_side_api(env, alice.token, "POST", f"/api/v1/ca-creations/{asked['id']}/reject/", reason)
    assert closed["status"] == 200, closed["body"]
    assert json.loads(closed["body"])["state"] == "cancelled"
    again = web_side_api(env, alice.token, "POST", "/api/v1/cas/", body)
    assert again["status"] == 202, again["body"]  # the name is free again
