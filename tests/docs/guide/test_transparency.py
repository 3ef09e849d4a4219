"""docs/guide/transparency.md: every command on the page, run as written against gunicorn serving
a KMI whose log ``kmi`` holds a certificate for www.example.test."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest
from cryptography import x509
from django.conf import settings as django_settings
from django.contrib.auth.models import User

from pki.access import grant_role
from pki.enrollment import sign_csr
from pki.models import Profile, Role
from pki.tokens import create_token
from pki.transparency.log import create_log, get_log, sign_tree_head
from tests.conftest import make_csr
from tests.support.docs import run_blocks, sh_blocks
from tests.support.processes import BIN, ROOT, base_env, free_port_in, start_gunicorn, worker_ports

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

PAGE = "docs/guide/transparency.md"
PORTS = worker_ports(22300, 22399)


def test_the_transparency_page_runs_as_written(issuing_ca, tmp_path: Path):
    create_log(name="kmi", actor="test")
    csr = make_csr(subject="CN=www.example.test", sans=[x509.DNSName("www.example.test")])
    cert = sign_csr(ca=issuing_ca, profile=Profile.objects.get(name="tls-server"), csr=csr, actor="test")
    sign_tree_head(log=get_log("kmi"), actor="test")
    auditor = User.objects.create_user(username="auditor", password="unused-password-123")
    grant_role(user=auditor, role=Role.AUDITOR, actor="test")
    token = create_token(user=auditor, actor="test").text

    port = free_port_in(*PORTS)
    env = base_env(
        redis_url=str(django_settings.REDIS_URL),
        prefix=f"kmi-test-{uuid.uuid4().hex[:10]}:",
        data_dir=tmp_path,
        kek=True,
    )
    env["KMI_BASE_URL"] = f"http://127.0.0.1:{port}"
    web = start_gunicorn(env, tmp_path / "web.log", port)
    work = tmp_path / "reader"
    work.mkdir()
    (work / "manage.py").symlink_to(ROOT / "manage.py")
    (work / "docker").symlink_to(ROOT / "docker")
    shell = {
        **env,
        "KMI_URL": f"http://127.0.0.1:{port}",
        "KMI_TOKEN": token,
        "CERT_ID": str(cert.pk),
        "HOME": str(tmp_path),
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
    }
    try:
        out = run_blocks(sh_blocks(PAGE), cwd=work, env=shell).stdout
    finally:
        web.stop()
    lines = out.splitlines()
    sth = json.loads(lines[0])
    assert sth["tree_size"] == 3
    assert "DNS Name = www.example.test" in out
    receipt = json.loads(next(line for line in lines if line.startswith('{"certificate"')))
    assert (receipt["log"], receipt["tree_head"]["tree_size"]) == ("kmi", 3)
    assert "kmi: 3 leaves, 2 tree heads: OK" in out
    assert "SUCCESS: 8 rules found" in out + (work / "certspotter.log").read_text()
