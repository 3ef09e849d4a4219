"""PostgreSQL down: what can be served from storage is served (CRLs and CA certificates from
KMI_CRL_DIR, OCSP from the pre-signed responses in Redis); the rest is a clear 503 (OCSP
``tryLater``), never an HTML 500; the command line says so in one line."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from django.contrib.auth.models import User

from pki.crl import publish_crl
from pki.enrollment import sign_csr
from pki.tokens import create_token
from tests.conftest import make_csr
from tests.ocsp_support import request_der
from tests.support.processes import ROOT, base_env, delete_prefixed_keys

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def test_postgresql_down_serves_crls_ca_certificates_and_presigned_ocsp(
    issuing_ca, profile, kmi_settings, settings, tmp_path: Path
):
    user = User.objects.create_user(username="outage", password="unused-password-123")
    token = create_token(user=user, actor="test").text
    crl_dir = tmp_path / "repository"
    kmi_settings(CRL_DIR=str(crl_dir))
    # Issued now (the other process answers at the real time); "late" after the pre-signing.
    cert = _issue(issuing_ca, profile, "www.example.test", "ec-p256")
    crl = publish_crl(ca=issuing_ca, actor="test")
    issuer = issuing_ca.x509_certificate()
    (tmp_path / "req.der").write_bytes(request_der(cert.x509(), issuer))
    # A SHA-384 CertID is never pre-signed: only a live signature over database rows answers it.
    (tmp_path / "req384.der").write_bytes(request_der(cert.x509(), issuer, algorithm=hashes.SHA384()))
    prefix = "kmi-h3-outage:"
    env = base_env(redis_url=str(settings.REDIS_URL), prefix=prefix, data_dir=tmp_path, kek=True)
    env["KMI_CRL_DIR"] = str(crl_dir)
    env["PYTHONWARNINGS"] = "ignore"
    try:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "tests.support.outage_side",
                str(tmp_path / "req.der"),
                str(tmp_path / "req384.der"),
                token,
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            timeout=120,
            check=False,
        )
    finally:
        delete_prefixed_keys(str(settings.REDIS_URL), prefix)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    out = json.loads(done.stdout.decode().strip().splitlines()[-1])

    def body(name: str) -> bytes:
        return base64.b64decode(out[name]["body"])

    assert ocsp.load_der_ocsp_response(body("warm")).certificate_status == ocsp.OCSPCertStatus.GOOD
    # Pre-signed in Redis: answered although the database is gone (it was internalError).
    answer = ocsp.load_der_ocsp_response(body("ocsp"))
    assert answer.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
    assert answer.certificate_status == ocsp.OCSPCertStatus.GOOD
    # What only the database could answer: tryLater.
    late = ocsp.load_der_ocsp_response(body("ocsp_not_presigned"))
    assert late.response_status == ocsp.OCSPResponseStatus.TRY_LATER
    # CRL and CA certificate from KMI_CRL_DIR, with their content types.
    assert (out["crl"]["status"], out["crl"]["type"]) == (200, "application/pkix-crl")
    assert body("crl") == bytes(crl.der)
    assert x509.load_pem_x509_crl(body("crl_pem")).public_bytes(Encoding.DER) == bytes(crl.der)
    assert (out["ca"]["status"], out["ca"]["type"]) == (200, "application/pkix-cert")
    assert body("ca") == bytes(issuing_ca.own_certificate().der)
    assert out["chain"]["status"] == 200
    assert b"BEGIN CERTIFICATE" in body("chain")
    assert out["ca_pem"]["status"] == 200
    # What storage does not hold: 503 with Retry-After, plain text, no HTML error page.
    assert (out["missing"]["status"], out["missing"]["retry_after"]) == (503, "30")
    assert out["api"]["status"] == 503
    assert out["api"]["type"] == "application/problem+json"
    assert out["acme"]["status"] == 503
    assert out["acme"]["type"] == "application/problem+json"


def _issue(ca, profile, name: str, key: str):
    return sign_csr(
        ca=ca,
        profile=profile("tls-server"),
        csr=make_csr(key, subject=f"CN={name}", sans=[x509.DNSName(name)]),
        actor="t",
    )


def test_the_command_line_says_the_database_is_down_in_one_line(tmp_path: Path):
    env = base_env(redis_url=None, prefix="unused:", data_dir=tmp_path, kek=False)
    env["DATABASE_URL"] = "postgres://kmi:S3cretPassw0rd@127.0.0.1:21298/kmi"  # nothing listens there
    done = subprocess.run(
        [sys.executable, "manage.py", "list_certs"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("CommandError: the database is unavailable")
    assert "S3cretPassw0rd" not in done.stderr
