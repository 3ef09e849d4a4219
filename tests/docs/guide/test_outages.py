"""docs/guide/outages.md: each section's commands, run as written against gunicorn serving KMI with
that dependency down (Redis on a port where nothing listens, PostgreSQL likewise, a CA whose HSM
this process has no settings for)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from pki.acme.endpoints import create_endpoint
from pki.crl import publish_crl
from pki.models import Key
from tests.support.docs import run_blocks, sh_blocks
from tests.support.processes import BIN, ROOT, base_env, free_port_in, start_gunicorn, worker_ports

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

PAGE = "docs/guide/outages.md"
PORTS = worker_ports(21200, 21247)
NOBODY = "21297"  # nothing listens on this port of this engineer's range (21290-21299 are never bound)


@pytest.fixture
def published(issuing_ca, profile, kmi_settings, tmp_path: Path) -> Path:
    """The issuing CA's CRL published into a KMI_CRL_DIR, and the ACME endpoint ``demo``."""
    crl_dir = tmp_path / "repository"
    kmi_settings(CRL_DIR=str(crl_dir))
    publish_crl(ca=issuing_ca, actor="test")
    create_endpoint(name="demo", ca=issuing_ca, profile=profile("tls-server"), actor="test")
    return crl_dir


def _reader(tmp_path: Path, env: dict[str, str], url: str) -> tuple[Path, dict[str, str]]:
    """A reader's shell: the venv's python first on PATH, manage.py in the working directory."""
    work = tmp_path / "reader"
    work.mkdir(exist_ok=True)
    if not (work / "manage.py").exists():
        (work / "manage.py").symlink_to(ROOT / "manage.py")
    shell = {**env, "KMI_URL": url, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    return work, shell


def _run_section(
    tmp_path: Path, env: dict[str, str], heading: str
) -> tuple[subprocess.CompletedProcess[str], str]:
    """Serve KMI with ``env`` (gunicorn), run the section's blocks against it; (result, gunicorn's log)."""
    port = free_port_in(*PORTS)
    web = start_gunicorn(env, tmp_path / "web.log", port)
    try:
        work, shell = _reader(tmp_path, env, f"http://127.0.0.1:{port}")
        result = run_blocks(sh_blocks(PAGE, under=heading), cwd=work, env=shell)
    finally:
        web.stop()
    return result, web.output()


def test_checking_a_running_kmi_shows_a_ca_whose_hsm_is_unreachable(issuing_ca, published, tmp_path):
    Key.objects.filter(pk=issuing_ca.key_id).update(backend="pkcs11")  # this process has no HSM settings
    env = base_env(redis_url=None, prefix="unused:", data_dir=tmp_path, kek=True)
    result, log = _run_section(tmp_path, env, "Checking a running KMI")
    out = result.stdout
    health = json.loads(out.splitlines()[0])
    assert health["ok"] is False
    assert {
        k: v
        for k, v in next(s for s in health["key_backends"] if s["ca"] == "issuing").items()
        if k != "problem"
    } == {"ca": "issuing", "backend": "pkcs11", "ok": False}
    assert 'kmi_ca_key_backend_up{backend="pkcs11",ca="issuing"} 0.0' in out
    assert "CA issuing cannot sign here" in log  # the loud start-up line


def test_when_redis_is_down_crls_and_acme_keep_working(published, tmp_path):
    env = base_env(redis_url=f"redis://127.0.0.1:{NOBODY}/0", prefix="unused:", data_dir=tmp_path, kek=True)
    env["KMI_REDIS_TIMEOUT"] = "1"
    out = _run_section(tmp_path, env, "When Redis is down")[0].stdout
    assert "CRL 200" in out
    assert "HTTP/1.1 200" in out
    assert "replay-nonce:" in out.lower()


def test_when_postgresql_is_down_the_repository_serves_from_storage(published, tmp_path):
    env = base_env(redis_url=None, prefix="unused:", data_dir=tmp_path, kek=True)
    env["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:{NOBODY}/kmi"
    env["KMI_CRL_DIR"] = str(published)
    result, _ = _run_section(tmp_path, env, "When PostgreSQL is down")
    out = result.stdout
    assert "CRL 200 application/pkix-crl" in out
    assert "issuer=O = KMI, CN = KMI Issuing CA" in out
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("CommandError: the database is unavailable (OperationalError")
    assert "CA certificate 200" in out
    assert "healthz 503" in out
    assert "exit 1" in out


def test_when_the_signing_workers_are_down_the_reconciler_issues_what_waits(issuing_ca, profile, tmp_path):
    import datetime as dt

    from pki.clock import utcnow
    from pki.issuance import submit_request
    from pki.models import CertificateRequest, RequestState
    from tests.conftest import make_csr

    request = submit_request(ca=issuing_ca, profile=profile("tls-server"), csr=make_csr(), actor="api:gone")
    CertificateRequest.objects.filter(pk=request.pk).update(reviewed_at=utcnow() - dt.timedelta(minutes=10))
    env = base_env(redis_url=None, prefix="unused:", data_dir=tmp_path, kek=True)
    work, shell = _reader(tmp_path, env, "http://unused")
    run_blocks(sh_blocks(PAGE, under="When the signing workers are down"), cwd=work, env=shell)
    assert CertificateRequest.objects.get(pk=request.pk).state == RequestState.ISSUED
