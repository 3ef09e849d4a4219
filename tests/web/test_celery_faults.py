"""Celery without Redis (embedded broker, beat) and with Redis stopped under a running set.

The Redis here is a private ``redis-server`` on a port of this engineer's range, never the shared
one; the embedded set uses kombu's filesystem transport in a temporary folder.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from pki.clock import utcnow
from pki.issuance import submit_request
from pki.models import Certificate, NotificationRecord, NotificationState, RequestState
from tests.conftest import make_csr
from tests.support.certs import issue
from tests.support.processes import (
    base_env,
    free_port_in,
    start_beat,
    start_redis,
    start_worker,
    wait_for,
    web_side_issue,
)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

PORTS = (18600, 18699)


def test_beat_on_the_embedded_broker_schedules_jobs_that_a_worker_runs(
    issuing_ca, profile, webhook_receiver, tmp_path: Path
):
    cert = issue(issuing_ca, profile, owner_webhook_url=webhook_receiver.url)
    Certificate.objects.filter(pk=cert.pk).update(not_after=utcnow() + dt.timedelta(days=2))
    env = base_env(redis_url=None, prefix="unused:", data_dir=tmp_path, kek=True)
    env["KMI_TEST_BEAT_SECONDS"] = "1"
    worker = start_worker(env, tmp_path / "worker.log")
    beat = start_beat(env, tmp_path / "beat.log", tmp_path / "beat-schedule")
    try:
        wait_for(lambda: webhook_receiver.calls, timeout=90, what="a notice sent by the beat-driven scan")
        # Beat keeps ticking and the worker keeps scanning; the notice stays sent once.
        wait_for(lambda: beat.output().count("Sending due task test-expiry-scan") >= 3, what="beat ticks")
    finally:
        beat.stop()
        worker.stop()
    assert "filesystem://" in worker.output()
    assert len(webhook_receiver.calls) == 1
    assert NotificationRecord.objects.get().state == NotificationState.SENT
    assert "Task pki.lifecycle.expiry_scan" in worker.output()


def test_redis_stopped_makes_enrollment_fail_clearly_and_loses_nothing(issuing_ca, profile, tmp_path: Path):
    port = free_port_in(*PORTS)
    redis_url = f"redis://127.0.0.1:{port}/0"
    redis = start_redis(port, tmp_path / "redis")
    env = base_env(redis_url=redis_url, prefix="kmi:", data_dir=tmp_path, kek=True)
    worker = start_worker(env, tmp_path / "worker.log")
    web_env = base_env(redis_url=redis_url, prefix="kmi:", data_dir=tmp_path, kek=False)
    web_env.update({"KMI_SIGNING": "worker", "KMI_SIGNING_TIMEOUT": "60"})
    try:
        first = submit_request(ca=issuing_ca, profile=profile("tls-server"), csr=make_csr(), actor="api:t")
        code, issued = web_side_issue(web_env, first.pk)
        assert code == 0, issued

        redis.stop()
        second = submit_request(
            ca=issuing_ca, profile=profile("tls-server"), csr=make_csr("ec-p256-b"), actor="api:t"
        )
        code, failed = web_side_issue(web_env, second.pk, timeout=60)
        assert code == 3
        assert failed["error"] == "SigningUnavailable"
        assert failed["code"] == "signing_unavailable"  # what the API maps to 503
        assert "signing queue is unreachable" in failed["message"]
        second.refresh_from_db()
        assert second.state == RequestState.APPROVED  # acknowledged, kept, not half-issued

        redis = start_redis(port, tmp_path / "redis")  # the same data directory: the same Redis
        outage_log = worker.output()
        if worker.popen.poll() is not None:
            # kombu's Redis transport can exit the worker when the connection drops while it holds
            # unacknowledged messages (they are redelivered): the supervisor starts it again, as
            # docker/compose.yaml's `restart: unless-stopped` does.
            worker = start_worker(env, tmp_path / "worker-restarted.log")
        code, retried = web_side_issue(web_env, second.pk)
        assert code == 0, json.dumps(retried)
    finally:
        worker.stop()
        redis.stop()
    assert Certificate.objects.filter(request=first).count() == 1
    assert Certificate.objects.filter(request=second).count() == 1
    assert "Connection to broker lost" in outage_log or "Cannot connect" in outage_log


def test_a_hung_redis_gives_503_after_the_signing_timeout_not_a_blocked_worker(
    issuing_ca, profile, tmp_path: Path
):
    """``kill -STOP`` on Redis: it accepts connections and never answers. The throttle, the
    broker and the result backend all time out (KMI_REDIS_TIMEOUT), and the enrollment is the
    documented 503 problem document after about KMI_SIGNING_TIMEOUT, with its request kept."""
    import os
    import signal

    from django.contrib.auth.models import User

    from pki.access import grant_role
    from pki.models import CertificateRequest, Role
    from pki.tokens import create_token
    from tests.support.processes import web_side_api, worker_ports

    port = free_port_in(*worker_ports(21250, 21289))  # this engineer's range, this worker's slice
    redis = start_redis(port, tmp_path / "redis")
    user = User.objects.create_user(username="hung", password="unused-password-123")
    grant_role(user=user, role=Role.REQUESTER, ca=issuing_ca, profile=profile("tls-server"), actor="test")
    token = create_token(user=user, actor="test").text
    web_env = base_env(redis_url=f"redis://127.0.0.1:{port}/0", prefix="kmi:", data_dir=tmp_path, kek=False)
    web_env.update({"KMI_SIGNING": "worker", "KMI_SIGNING_TIMEOUT": "4", "KMI_REDIS_TIMEOUT": "1"})
    body = json.dumps({"csr": make_csr().decode(), "ca": "issuing", "profile": "tls-server"})
    os.kill(redis.popen.pid, signal.SIGSTOP)
    try:
        # The subprocess timeout is the bound: before, this call hung until Redis came back.
        answer = web_side_api(web_env, token, "POST", "/api/v1/enroll", body, timeout=45)
    finally:
        os.kill(redis.popen.pid, signal.SIGCONT)
        redis.stop()
    assert answer["status"] == 503, answer["body"]
    assert answer["headers"]["Content-Type"] == "application/problem+json"
    assert json.loads(answer["body"])["code"] == "signing_unavailable"
    assert answer["headers"]["Retry-After"]
    assert CertificateRequest.objects.get().state == RequestState.APPROVED  # kept for a retry
