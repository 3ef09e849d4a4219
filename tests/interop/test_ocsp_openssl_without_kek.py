"""``openssl ocsp`` against a live web process that has no KEK (a ``KMI_SIGNING=worker`` web node):
every answer is a response the workers pre-signed, with or without the client's nonce."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from pki.enrollment import sign_csr
from pki.models import OCSPResponse, Profile
from pki.ocsp import STORE, ensure_ocsp_responder
from pki.revocation import revoke_certificate
from tests.conftest import make_csr

pytestmark = [
    pytest.mark.interop,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    # The live server's WhiteNoise warns when STATIC_ROOT (var/static) was never collected.
    pytest.mark.filterwarnings("ignore:No directory at:UserWarning"),
]


@pytest.fixture
def web_node(live_server, root_ca, issuing_ca, tmp_path, without_kek, private_key_loads) -> tuple[Path, str]:
    """Certificates of every status, pre-signed by the (eager) workers; then the KEK is gone."""
    ensure_ocsp_responder(ca=issuing_ca, actor="t")
    tls = Profile.objects.get(name="tls-server")
    certs = {
        name: sign_csr(ca=issuing_ca, profile=tls, csr=make_csr(key), actor="t")
        for name, key in (
            ("good", "ec-p256"),
            ("revoked", "ec-p384"),
            ("held", "ec-p521"),
            ("new", "ec-p256-b"),
        )
    }
    revoke_certificate(certificate=certs["revoked"], reason="keyCompromise", actor="t")
    revoke_certificate(certificate=certs["held"], reason="certificateHold", actor="t")
    # "new" was issued but its pre-signing task has not run yet.
    STORE.delete((issuing_ca.pk, certs["new"].serial, alg) for alg in ("sha1", "sha256"))
    OCSPResponse.objects.filter(certificate=certs["new"]).delete()
    assert OCSPResponse.objects.filter(certificate__in=certs.values()).count() == 6
    for name, cert in certs.items():
        (tmp_path / f"{name}.pem").write_bytes(cert.x509().public_bytes(serialization.Encoding.PEM))
    for name, ca in (("root", root_ca), ("issuing", issuing_ca)):
        (tmp_path / f"{name}.pem").write_bytes(ca.x509_certificate().public_bytes(serialization.Encoding.PEM))
    without_kek()
    private_key_loads.clear()  # what the workers unsealed above
    return tmp_path, f"{live_server.url}/ocsp/issuing"


def _openssl_ocsp(web_node: tuple[Path, str], *args: str) -> str:
    directory, url = web_node
    result = subprocess.run(
        [
            "openssl", "ocsp", "-issuer", "issuing.pem", "-url", url,
            "-CAfile", "root.pem", "-verify_other", "issuing.pem", "-resp_text", *args,
        ],
        cwd=directory, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    return result.stdout + result.stderr


def test_openssl_verifies_presigned_answers_with_and_without_nonce(web_node, private_key_loads):
    with_nonce = _openssl_ocsp(web_node, "-cert", "good.pem")
    assert "Response verify OK" in with_nonce
    assert "good.pem: good" in with_nonce
    assert "WARNING: no nonce in response" in with_nonce  # RFC 8954 §2.1: the nonce is left out
    without_nonce = _openssl_ocsp(web_node, "-cert", "good.pem", "-no_nonce")
    assert "Response verify OK" in without_nonce
    assert "good.pem: good" in without_nonce
    assert "WARNING" not in without_nonce
    assert private_key_loads == []


def test_openssl_sees_revoked_and_held_certificates_without_a_kek(web_node, private_key_loads):
    revoked = _openssl_ocsp(web_node, "-cert", "revoked.pem")
    assert "Response verify OK" in revoked
    assert "revoked.pem: revoked" in revoked
    assert "Reason: keyCompromise" in revoked
    held = _openssl_ocsp(web_node, "-sha256", "-cert", "held.pem", "-no_nonce")
    assert "Response verify OK" in held
    assert "held.pem: revoked" in held
    assert "Reason: certificateHold" in held
    assert private_key_loads == []


def test_openssl_is_told_to_try_later_for_a_certificate_not_presigned_yet(web_node, private_key_loads):
    out = _openssl_ocsp(web_node, "-cert", "new.pem", "-no_nonce")
    assert "Responder Error: trylater (3)" in out
    assert private_key_loads == []
