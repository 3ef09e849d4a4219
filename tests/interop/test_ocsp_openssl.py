"""``openssl ocsp`` and pkilint's CLI against the live responder (POST and GET, with and without nonce)."""

from __future__ import annotations

import base64
import datetime as dt
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from pki.enrollment import sign_csr
from pki.models import OCSPResponse, Profile
from pki.ocsp import ensure_ocsp_responder
from pki.revocation import revoke_certificate
from tests.conftest import load_key, make_csr
from tests.ocsp_support import request_der

pytestmark = [
    pytest.mark.interop,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    # The live server's WhiteNoise warns when STATIC_ROOT (var/static) was never collected.
    pytest.mark.filterwarnings("ignore:No directory at:UserWarning"),
]

PEM = serialization.Encoding.PEM


@dataclass
class Setup:
    """Files for openssl and the responder URL."""

    dir: Path
    url: str


@pytest.fixture
def setup(live_server, root_ca, issuing_ca, ocsp_env, tmp_path) -> Setup:
    """Root, issuing CA, a good and a revoked leaf (real clock: openssl checks the dates)."""
    ensure_ocsp_responder(ca=issuing_ca, actor="t")
    tls = Profile.objects.get(name="tls-server")
    good = sign_csr(ca=issuing_ca, profile=tls, csr=make_csr(), actor="t")
    revoked = sign_csr(ca=issuing_ca, profile=tls, csr=make_csr("ec-p384"), actor="t")
    revoke_certificate(certificate=revoked, reason="keyCompromise", actor="t")
    # The receivers pre-signed both at once (eager Celery in tests).
    assert OCSPResponse.objects.filter(serial__in=[good.serial, revoked.serial]).count() == 4
    files = {
        "root.pem": root_ca.x509_certificate(),
        "issuing.pem": issuing_ca.x509_certificate(),
        "good.pem": good.x509(),
        "revoked.pem": revoked.x509(),
    }
    for name, cert in files.items():
        (tmp_path / name).write_bytes(cert.public_bytes(PEM))
    return Setup(dir=tmp_path, url=f"{live_server.url}/ocsp/issuing")


def _openssl_ocsp(setup: Setup, *args: str) -> str:
    result = subprocess.run(
        [
            "openssl", "ocsp", "-issuer", "issuing.pem", "-url", setup.url,
            "-CAfile", "root.pem", "-verify_other", "issuing.pem", "-resp_text", *args,
        ],
        cwd=setup.dir, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    return result.stdout + result.stderr


@pytest.mark.parametrize("nonce", [[], ["-no_nonce"]], ids=["nonce", "no-nonce"])
def test_openssl_verifies_good_certificate_over_post(setup, nonce):
    out = _openssl_ocsp(setup, "-cert", "good.pem", *nonce)
    assert "Response verify OK" in out
    assert "good.pem: good" in out
    assert "WARNING" not in out  # e.g. "no nonce in response"
    assert ("OCSP Nonce" in out) == (not nonce)
    assert "Responder Id: " in out


def test_openssl_verifies_revoked_certificate_with_reason(setup):
    out = _openssl_ocsp(setup, "-cert", "revoked.pem")
    assert "Response verify OK" in out
    assert "revoked.pem: revoked" in out
    assert "Reason: keyCompromise" in out


def test_openssl_gets_unknown_for_a_serial_kmi_never_issued(setup):
    out = _openssl_ocsp(setup, "-serial", "0x1234abcd", "-no_nonce")
    assert "Response verify OK" in out
    assert "0x1234abcd: unknown" in out


def test_openssl_gets_unauthorized_for_a_foreign_issuer(setup):
    key = load_key("ec-p256-b")
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Foreign CA")])
    now = dt.datetime.now(dt.UTC)
    foreign = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(99)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())  # type: ignore[arg-type]
    )
    (setup.dir / "foreign.pem").write_bytes(foreign.public_bytes(PEM))
    result = subprocess.run(
        ["openssl", "ocsp", "-issuer", "foreign.pem", "-serial", "0x42", "-url", setup.url],
        cwd=setup.dir, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert "Responder Error: unauthorized (6)" in result.stdout + result.stderr


def test_get_response_verifies_with_openssl_and_lints_clean(setup, issuing_ca):
    leaf = x509.load_pem_x509_certificate((setup.dir / "revoked.pem").read_bytes())
    request = request_der(leaf, issuing_ca.x509_certificate(), algorithm=hashes.SHA256())
    url = setup.url + "/" + quote(base64.b64encode(request).decode(), safe="")
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.headers["Content-Type"] == "application/ocsp-response"
        assert "max-age=" in response.headers["Cache-Control"]
        body = response.read()
    (setup.dir / "response.der").write_bytes(body)
    result = subprocess.run(
        [
            "openssl", "ocsp", "-respin", "response.der", "-issuer", "issuing.pem",
            "-sha256", "-cert", "revoked.pem",
            "-CAfile", "root.pem", "-verify_other", "issuing.pem", "-no_nonce",
        ],
        cwd=setup.dir, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    out = result.stdout + result.stderr
    assert "Response verify OK" in out
    assert "revoked.pem: revoked" in out
    lint = subprocess.run(
        [str(Path(sys.executable).parent / "lint_ocsp_response"), "lint", "-s", "WARNING", "response.der"],
        cwd=setup.dir, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert (lint.returncode, lint.stdout.strip()) == (0, "")
