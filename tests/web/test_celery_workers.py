"""Real Celery workers on Redis: jobs end to end, signing only on workers, SIGKILL mid-job, no broker.

Each test here runs real processes: a prefork worker (``tests.support.worker_app``) on this
run's Redis database under a key prefix of its own, and a web-side process with
``web.settings`` and no KEK that signs only through the ``signing`` queue.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery
from django.conf import settings as django_settings
from django.core import mail

from pki.clock import utcnow
from pki.issuance import submit_request
from pki.models import (
    Certificate,
    Key,
    KeyState,
    NotificationRecord,
    NotificationState,
    RequestState,
    SealedKey,
)
from tests.conftest import make_csr
from tests.support.certs import hold_key, issue
from tests.support.processes import (
    Proc,
    base_env,
    client_app,
    delete_prefixed_keys,
    start_worker,
    wait_for,
    web_side_issue,
    worker_idle,
)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

REDIS_URL = str(django_settings.REDIS_URL)


class Stack:
    """One worker on ``celery`` and ``signing`` plus what a test needs to talk to it."""

    def __init__(self, tmp: Path) -> None:
        self.prefix = f"kmi-test-{uuid.uuid4().hex[:10]}:"
        self.data_dir = tmp
        self.barriers = tmp / "barriers"
        self.barriers.mkdir()
        self.env = base_env(redis_url=REDIS_URL, prefix=self.prefix, data_dir=tmp, kek=True)
        self.env["KMI_TEST_BARRIER_DIR"] = str(self.barriers)
        # A message held by a worker that vanished comes back after this long (production: 1 h).
        self.env["KMI_BROKER_VISIBILITY_TIMEOUT"] = "10"
        self.worker: Proc = start_worker(self.env, tmp / "worker.log")
        self.restarts = 0
        self.app: Celery = client_app(REDIS_URL, self.prefix)

    def wait_idle(self) -> None:
        """Until the worker has finished what the last test queued (before the database is flushed)."""
        wait_for(lambda: worker_idle(self.worker, REDIS_URL, self.prefix), timeout=60, what="worker idle")

    def web_env(self, **extra: str) -> dict[str, str]:
        """A web process's environment: same broker, worker-only signing, no KEK at all."""
        env = base_env(redis_url=REDIS_URL, prefix=self.prefix, data_dir=self.data_dir, kek=False)
        env.update({"KMI_SIGNING": "worker", "KMI_SIGNING_TIMEOUT": "60"})
        env.update(extra)
        return env

    def run(self, task: str, timeout: float = 120) -> object:
        """Send ``task`` (routed like production) and wait for its result."""
        return self.app.send_task(task).get(timeout=timeout)

    def arm(self, name: str) -> None:
        for leftover in self.barriers.glob(f"{name}.*"):
            leftover.unlink()
        (self.barriers / f"{name}.armed").touch()

    def kill_at_barrier(self, name: str) -> int:
        """Wait until the armed barrier is reached, SIGKILL the process that reached it."""
        wait_for((self.barriers / f"{name}.reached").exists, what=f"barrier {name}")
        pid = int((self.barriers / f"{name}.pid").read_text())
        os.kill(pid, signal.SIGKILL)
        (self.barriers / f"{name}.release").touch()
        return pid

    def replace_worker(self) -> None:
        """Start a fresh worker (after the old one was killed)."""
        self.restarts += 1
        self.worker = start_worker(self.env, self.data_dir / f"worker-{self.restarts}.log")

    def close(self) -> None:
        self.worker.stop()
        self.app.close()
        delete_prefixed_keys(REDIS_URL, self.prefix)


@pytest.fixture(scope="module")
def stack(django_db_setup: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A real worker for this module (started once; each test's data lives in the test database)."""
    s = Stack(tmp_path_factory.mktemp("stack"))
    yield s
    s.close()


@pytest.fixture(autouse=True)
def _worker_idle_before_the_flush(request: pytest.FixtureRequest) -> Iterator[None]:
    """Set up after the test database, so its teardown runs before the database is flushed."""
    yield
    if "stack" in request.fixturenames:
        request.getfixturevalue("stack").wait_idle()


def _mails(stack: Stack) -> list[str]:
    folder = stack.data_dir / "mail"
    return [p.read_text() for p in sorted(folder.glob("*.log"))] if folder.exists() else []


def test_worker_runs_the_lifecycle_jobs_end_to_end(stack, issuing_ca, profile, webhook_receiver):
    expiring = issue(
        issuing_ca,
        profile,
        subject="CN=soon.example.test",
        owner_email="owner@example.test",
        owner_webhook_url=webhook_receiver.url,
    )
    renewable = issue(issuing_ca, profile, subject="CN=auto.example.test", key_name="ec-p256-b")
    hold_key(renewable, "ec-p256-b")
    # The worker's clock is the real one: make both certificates expire 5 days from now.
    soon = utcnow() + dt.timedelta(days=5)
    Certificate.objects.filter(pk__in=[expiring.pk, renewable.pk]).update(not_after=soon)

    [renewed_id] = stack.run("pki.signing.auto_renew")["renewed"]  # type: ignore[index]
    assert Certificate.objects.get(pk=renewed_id).renewed_from_id == renewable.pk
    result = stack.run("pki.lifecycle.expiry_scan")
    assert result == {"due": 2, "sent": 2, "failed": 0, "abandoned": 0}
    assert stack.run("pki.lifecycle.expiry_scan")["sent"] == 0  # type: ignore[index]

    assert Certificate.objects.filter(renewed_from=renewable).count() == 1
    assert len(webhook_receiver.calls) == 1
    # A key whose only certificate has expired is deactivated, then shredded after retention.
    gone = issue(issuing_ca, profile, subject="CN=gone.example.test", key_name="ec-p384")
    key = hold_key(gone, "ec-p384")
    Certificate.objects.filter(pk=gone.pk).update(not_after=utcnow() - dt.timedelta(days=400))
    assert stack.run("pki.lifecycle.deactivate_expired_keys") == {"deactivated": [str(key.pk)]}
    Key.objects.filter(pk=key.pk).update(deactivated_at=utcnow() - dt.timedelta(days=366))
    assert stack.run("pki.lifecycle.destroy_keys_past_retention") == {"destroyed": [str(key.pk)]}
    key.refresh_from_db()
    assert key.state == KeyState.DESTROYED
    assert not SealedKey.objects.filter(key=key).exists()
    assert json.loads(webhook_receiver.calls[0][1])["certificate"]["serial"] == expiring.serial
    messages = _mails(stack)
    assert len(messages) == 1
    assert "To: owner@example.test" in messages[0]
    assert mail.outbox == []  # sent by the worker, not by this process


def test_web_process_without_a_kek_issues_through_the_signing_worker(stack, issuing_ca, profile):
    request = submit_request(ca=issuing_ca, profile=profile("tls-server"), csr=make_csr(), actor="api:test")
    code, result = web_side_issue(stack.web_env(), request.pk)
    assert code == 0, result
    assert result["web_has_kek"] is False
    cert = Certificate.objects.get(pk=result["certificate_id"])
    assert cert.request_id == request.pk
    assert result["serial"] == cert.serial
    # Asking again (a client retry) returns the same certificate, not a second one.
    code, again = web_side_issue(stack.web_env(), request.pk)
    assert (code, again["certificate_id"], again["replayed"]) == (0, cert.pk, True)
    assert Certificate.objects.filter(request=request).count() == 1


def test_domain_error_on_the_signing_worker_reaches_the_web_process_as_itself(stack, issuing_ca, profile):
    pending = submit_request(
        ca=issuing_ca, profile=profile("code-signing"), csr=make_csr("ec-p384", subject="CN=Dev"), actor="t"
    )
    assert pending.state == RequestState.PENDING
    code, result = web_side_issue(stack.web_env(), pending.pk)
    assert code == 3
    assert result["error"] == "InvalidState"
    assert "not approved" in result["message"]


def test_web_process_without_a_kek_cannot_sign_in_process(stack, issuing_ca, profile):
    request = submit_request(ca=issuing_ca, profile=profile("tls-server"), csr=make_csr(), actor="t")
    code, result = web_side_issue(stack.web_env(KMI_SIGNING="inprocess"), request.pk)
    assert code == 3
    assert result["code"] == "configuration"
    assert "key-encryption key" in result["message"]


def test_signing_call_with_no_worker_on_the_queue_times_out_with_a_clear_error(stack, issuing_ca, profile):
    request = submit_request(ca=issuing_ca, profile=profile("tls-server"), csr=make_csr(), actor="t")
    lonely = f"kmi-test-{uuid.uuid4().hex[:10]}:"  # a broker namespace no worker listens on
    env = stack.web_env(KMI_SIGNING_TIMEOUT="2", KMI_REDIS_KEY_PREFIX=lonely)
    try:
        code, result = web_side_issue(env, request.pk)
    finally:
        delete_prefixed_keys(REDIS_URL, lonely)
    assert code == 3
    assert result["error"] == "SigningUnavailable"
    assert "no signing worker answered within 2 s" in result["message"]
    request.refresh_from_db()
    assert request.state == RequestState.APPROVED  # kept: a later call issues it


def test_worker_killed_mid_notification_run_is_retried_and_sends_nothing_twice(
    stack, issuing_ca, profile, webhook_receiver
):
    certs = [
        issue(issuing_ca, profile, subject=f"CN=n{i}.example.test", owner_webhook_url=webhook_receiver.url)
        for i in range(3)
    ]
    Certificate.objects.filter(pk__in=[c.pk for c in certs]).update(not_after=utcnow() + dt.timedelta(days=3))
    stack.arm("notification_sent")
    pending = stack.app.send_task("pki.lifecycle.expiry_scan")
    killed = stack.kill_at_barrier("notification_sent")  # after the first notice was sent and recorded
    result = pending.get(timeout=120)
    assert result["sent"] == 2  # the retry sent the two the killed run had not reached
    assert killed not in {0, os.getpid()}
    deliveries = [headers["x-kmi-delivery"] for headers, _ in webhook_receiver.calls]
    assert len(deliveries) == 3
    assert len(set(deliveries)) == 3
    assert set(NotificationRecord.objects.values_list("state", flat=True)) == {NotificationState.SENT}
    assert "exited with 'signal 9 (SIGKILL)'" in stack.worker.output()


def test_worker_killed_mid_auto_renewal_is_retried_without_a_duplicate(stack, issuing_ca, profile):
    keys = ["ec-p256", "ec-p256-b", "ec-p384"]
    olds = []
    for i, key_name in enumerate(keys):
        cert = issue(issuing_ca, profile, subject=f"CN=r{i}.example.test", key_name=key_name)
        hold_key(cert, key_name)
        olds.append(cert)
    Certificate.objects.filter(pk__in=[c.pk for c in olds]).update(not_after=utcnow() + dt.timedelta(days=3))
    stack.arm("certificate_issued")
    pending = stack.app.send_task("pki.signing.auto_renew")
    stack.kill_at_barrier("certificate_issued")  # the first renewal is committed, the rest not begun
    result = pending.get(timeout=120)
    assert len(result["renewed"]) == 2
    for old in olds:
        assert Certificate.objects.filter(renewed_from=old).count() == 1
    serials = list(Certificate.objects.filter(ca=issuing_ca).values_list("serial", flat=True))
    assert len(serials) == len(set(serials)) == 6


def test_whole_worker_killed_mid_job_is_redelivered_to_the_next_worker(
    stack, issuing_ca, profile, webhook_receiver
):
    certs = [
        issue(issuing_ca, profile, subject=f"CN=w{i}.example.test", owner_webhook_url=webhook_receiver.url)
        for i in range(2)
    ]
    Certificate.objects.filter(pk__in=[c.pk for c in certs]).update(not_after=utcnow() + dt.timedelta(days=3))
    stack.arm("notification_sent")
    pending = stack.app.send_task("pki.lifecycle.expiry_scan")
    wait_for((stack.barriers / "notification_sent.reached").exists, what="barrier")
    os.killpg(stack.worker.popen.pid, signal.SIGKILL)  # the whole worker: main process and child
    stack.worker.popen.wait()
    (stack.barriers / "notification_sent.release").touch()
    stack.replace_worker()

    def redelivered() -> bool:
        # What every live worker does on its own, but only every ~100 s (kombu's restore_visible
        # runs on every 10th 10-second tick): put back messages unacknowledged for longer than
        # the visibility timeout. Doing it here, sooner, keeps the test short.
        with stack.app.connection_for_write() as conn:
            conn.default_channel.qos.restore_visible(num=100)
        return pending.ready()

    wait_for(redelivered, timeout=90, interval=1.0, what="the job to come back to a worker")
    assert pending.get(timeout=60)["sent"] == 1  # the unacknowledged job came back and finished
    deliveries = [headers["x-kmi-delivery"] for headers, _ in webhook_receiver.calls]
    assert len(deliveries) == len(set(deliveries)) == 2
