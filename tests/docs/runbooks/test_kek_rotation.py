"""docs/runbooks/kek-rotation.md, run as written while gunicorn and a Celery signing worker serve
KMI from the same KEK file: both keep signing through the rotation and after the old KEK is gone,
without a restart (before, enrollment answered 503 "KEK … is not configured" and the worker's
signing failed until they were restarted)."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest
from django.contrib.auth.models import User

from pki.access import grant_role
from pki.issuance import submit_request
from pki.models import Role, SealedKey
from pki.signing_channel import create_job
from pki.tokens import create_token
from tests.conftest import make_csr
from tests.support.docs import run_blocks, sh_blocks
from tests.support.processes import (
    BIN,
    ROOT,
    TEST_KEK,
    base_env,
    client_app,
    delete_prefixed_keys,
    free_port_in,
    http,
    start_gunicorn,
    start_worker,
    worker_ports,
)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

PAGE = "docs/runbooks/kek-rotation.md"
STEPS = [
    "1. Keep a copy of the current file",
    "2. Add a new current KEK",
    "3. Rewrap every key",
    "4. Retire the old KEK",
    "5. Check",
]


def test_the_kek_rotation_runbook_on_a_live_system(issuing_ca, profile, settings, tmp_path: Path):
    from cryptography import x509

    kek_file = tmp_path / "kek"
    kek_file.write_text(TEST_KEK + "\n")
    kek_file.chmod(0o600)
    prefix = f"kmi-h3-kek-{uuid.uuid4().hex[:8]}:"
    redis_url = str(settings.REDIS_URL)
    env = base_env(redis_url=redis_url, prefix=prefix, data_dir=tmp_path, kek=False)
    # Every signature unseals its key again, so each one proves which KEKs the process holds.
    env.update(KMI_KEK_FILE=str(kek_file), KMI_KEY_CACHE_SECONDS="0")
    user = User.objects.create_user(username="rita", password="unused-password-123")
    grant_role(user=user, role=Role.REQUESTER, ca=issuing_ca, profile=profile("tls-server"), actor="test")
    token = create_token(user=user, actor="test").text
    port = free_port_in(*worker_ports(21250, 21289))
    url = f"http://127.0.0.1:{port}"
    web = start_gunicorn(env, tmp_path / "web.log", port)
    worker = start_worker(env, tmp_path / "worker.log")
    app = client_app(redis_url, prefix)

    def enroll(name: str) -> int:
        sans = [x509.DNSName(name)]
        body = json.dumps(
            {
                "csr": make_csr("ec-p256", subject=f"CN={name}", sans=sans).decode(),
                "ca": "issuing",
                "profile": "tls-server",
            }
        )
        status, _, answer = http(
            f"{url}/api/v1/enroll",
            method="POST",
            body=body.encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        assert status in (201, 503), answer
        return status

    def worker_issues(name: str) -> dict:
        request = submit_request(
            ca=issuing_ca,
            profile=profile("tls-server"),
            csr=make_csr("ec-p256-b", subject=f"CN={name}", sans=[x509.DNSName(name)]),
            actor="test",
        )
        # What a web process with KMI_SIGNING=worker sends: a committed job and its MAC.
        job, mac = create_job(
            use_case="issue_request", params={"request_id": request.pk}, actor="test", user=None
        )
        result = app.send_task("pki.signing.run", kwargs={"job": str(job.pk), "mac": mac}, queue="signing")
        envelope: dict = result.get(timeout=60)["envelope"]
        return envelope

    try:
        assert enroll("before.example.test") == 201
        assert worker_issues("before-worker.example.test")["ok"]
        work = tmp_path / "operator"
        work.mkdir()
        (work / "manage.py").symlink_to(ROOT / "manage.py")
        shell = {**env, "KMI_URL": url, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
        for step in STEPS:
            run_blocks(sh_blocks(PAGE, under=step), cwd=work, env=shell)
        after_web = enroll("after.example.test")
        after_worker = worker_issues("after-worker.example.test")
    finally:
        worker.stop()
        web.stop()
        delete_prefixed_keys(redis_url, prefix)
    lines = [line for line in kek_file.read_text().splitlines() if line and not line.startswith("#")]
    assert len(lines) == 1  # only the new KEK is left
    assert not lines[0].startswith("test-1:")
    new_id = lines[0].split(":", 1)[0]
    assert set(SealedKey.objects.values_list("kek_id", flat=True)) == {new_id}
    assert after_web == 201, web.output()[-3000:]
    assert after_worker["ok"], (after_worker, worker.output()[-3000:])
    assert "KMI_KEK_FILE changed" in web.output()
