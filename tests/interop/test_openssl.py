"""``openssl verify`` (the system OpenSSL 3.0) accepts what KMI issues: root -> issuing -> leaf."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from pki.authorities import create_intermediate_ca, create_root_ca
from pki.enrollment import sign_csr
from pki.x509.names import parse_subject
from tests.conftest import FIXTURES, NOW, make_csr

pytestmark = [pytest.mark.interop, pytest.mark.django_db]


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def openssl_verify(root: Path, untrusted: Path, leaf: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """Run ``openssl verify`` at the fixed test time (NOW), strict X.509 checks on."""
    return subprocess.run(
        [
            "openssl",
            "verify",
            "-x509_strict",
            "-attime",
            str(int(NOW.timestamp()) + 3600),
            "-CAfile",
            str(root),
            "-untrusted",
            str(untrusted),
            *extra,
            str(leaf),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize("leaf_key", ["rsa-2048", "ec-p256"])
@pytest.mark.parametrize("ca_key_type", ["ec-p256", "ec-p384", "ed25519"])
def test_openssl_verifies_root_issuing_leaf(tmp_path: Path, profile, ca_key_type, leaf_key):
    root = create_root_ca(
        name="root", subject=parse_subject("CN=Verify Root,O=KMI"), key_type=ca_key_type, actor="t", now=NOW
    )
    issuing = create_intermediate_ca(
        name="issuing",
        parent=root,
        subject=parse_subject("CN=Verify Issuing,O=KMI"),
        key_type=ca_key_type,
        path_length=0,
        actor="t",
        now=NOW,
    )
    cert = sign_csr(ca=issuing, profile=profile("tls-server"), csr=make_csr(leaf_key), actor="t", now=NOW)
    (tmp_path / "root.pem").write_bytes(_pem(root.x509_certificate()))
    (tmp_path / "issuing.pem").write_bytes(_pem(issuing.x509_certificate()))
    (tmp_path / "leaf.pem").write_bytes(_pem(cert.x509()))
    result = openssl_verify(
        tmp_path / "root.pem",
        tmp_path / "issuing.pem",
        tmp_path / "leaf.pem",
        "-purpose",
        "sslserver",
        "-verify_hostname",
        "www.example.test",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith(": OK")


def test_openssl_refuses_a_kmi_leaf_under_a_foreign_root(tmp_path: Path, issuing_ca, profile):
    """Negative control with the committed foreign chain: the check above can fail."""
    cert = sign_csr(ca=issuing_ca, profile=profile("tls-server"), csr=make_csr(), actor="t", now=NOW)
    (tmp_path / "issuing.pem").write_bytes(_pem(issuing_ca.x509_certificate()))
    (tmp_path / "leaf.pem").write_bytes(_pem(cert.x509()))
    foreign_root = FIXTURES / "chain" / "root.pem"
    refused = openssl_verify(foreign_root, tmp_path / "issuing.pem", tmp_path / "leaf.pem")
    assert refused.returncode != 0
    assert "error 20 at 1 depth lookup: unable to get local issuer certificate" in refused.stderr
    # The committed chain itself verifies: the refusal is about trust, not a broken command line.
    chain = FIXTURES / "chain"
    accepted = openssl_verify(chain / "root.pem", chain / "intermediate.pem", chain / "intermediate.pem")
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
