"""Every certificate KMI emits lints clean with pkilint (RFC 5280 at WARNING; CA/B advisory)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from pki.authorities import create_intermediate_ca, create_root_ca
from pki.enrollment import sign_csr
from pki.models import CertificateAuthority
from pki.x509.names import parse_subject
from tests.conftest import NOW, make_csr
from tests.interop.pkix import pkix_findings

pytestmark = [pytest.mark.interop, pytest.mark.django_db]

# profile -> (CSR key, subject, SANs)
PROFILE_REQUESTS: dict[str, tuple[str, str, list[x509.GeneralName]]] = {
    "tls-server": ("ec-p256", "CN=www.example.test", [x509.DNSName("www.example.test")]),
    "tls-client": ("ec-p256", "CN=alice,O=KMI", [x509.RFC822Name("alice@example.test")]),
    "tls-server-client": ("rsa-2048", "CN=api.example.test", [x509.DNSName("api.example.test")]),
    "code-signing": ("rsa-3072", "CN=Release Signing,O=KMI", []),
    "email-protection": ("ed25519", "CN=Alice,O=KMI", [x509.RFC822Name("alice@example.test")]),
    "ocsp-signing": ("ec-p256", "CN=KMI OCSP Responder,O=KMI", []),
}


def _hierarchy(key_type: str) -> CertificateAuthority:
    root = create_root_ca(
        name=f"root-{key_type}",
        subject=parse_subject(f"CN=Lint Root {key_type},O=KMI"),
        key_type=key_type,
        actor="test",
        now=NOW,
    )
    return create_intermediate_ca(
        name=f"issuing-{key_type}",
        parent=root,
        subject=parse_subject(f"CN=Lint Issuing {key_type},O=KMI"),
        key_type=key_type,
        path_length=0,
        actor="test",
        now=NOW,
    )


@pytest.mark.parametrize("key_type", ["ec-p256", "ec-p384", "ed25519", "rsa-2048", "ml-dsa-65"])
def test_root_and_intermediate_certificates_lint_clean(key_type):
    issuing = _hierarchy(key_type)
    assert issuing.parent is not None
    assert pkix_findings(issuing.parent.x509_certificate()) == []
    assert pkix_findings(issuing.x509_certificate()) == []


@pytest.mark.parametrize("profile_name", sorted(PROFILE_REQUESTS))
@pytest.mark.parametrize("ca_key_type", ["ec-p256", "ed25519"])
def test_every_profile_output_lints_clean(issuing_ca, profile, profile_name, ca_key_type):
    ca = issuing_ca if ca_key_type == "ec-p256" else _hierarchy(ca_key_type)
    key, subject, sans = PROFILE_REQUESTS[profile_name]
    cert = sign_csr(
        ca=ca,
        profile=profile(profile_name),
        csr=make_csr(key, subject=subject, sans=sans),
        actor="t",
        now=NOW,
    )
    assert pkix_findings(cert.x509()) == []


def _run(program: str, *args: str) -> subprocess.CompletedProcess[str]:
    # pkilint's scripts sit beside the interpreter running the tests (the virtualenv's bin/).
    path = Path(sys.executable).parent / program
    return subprocess.run([str(path), *args], capture_output=True, text=True, timeout=60, check=False)


def test_lint_pkix_cert_cli_agrees(issuing_ca, profile, tmp_path: Path):
    cert = sign_csr(ca=issuing_ca, profile=profile("tls-server"), csr=make_csr(), actor="t", now=NOW)
    path = tmp_path / "leaf.pem"
    path.write_bytes(cert.x509().public_bytes(serialization.Encoding.PEM))
    result = _run("lint_pkix_cert", "lint", "-s", "WARNING", str(path))
    # The exit code counts findings at or above -s: 0 means clean.
    assert result.returncode == 0, result.stdout + result.stderr


# What the CA/Browser Forum's TLS rules say about a private CA's tls-server certificate. Each is
# expected, not a defect; a new finding fails the test.
EXPECTED_CABF_FINDINGS = {
    # BR §7.1.2.7.6: subscriber certificates MUST assert a reserved BR policy OID (DV/OV/IV/EV).
    # A private CA issues under no CA/B certificate policy, so it asserts none.
    "cabf.serverauth.subscriber.certificate_policies_extension_absent",
    # BR §7.1.2.7.6 makes the SKI "NOT RECOMMENDED" for subscribers; RFC 5280 §4.2.1.2 says
    # end-entity certificates SHOULD carry it. KMI follows RFC 5280 (pkilint's PKIX rules).
    "cabf.serverauth.subscriber.subject_key_identifier_extension_present",
    # BR §7.1.2.7.2 discourages a CN; KMI keeps the subject exactly as the CSR gives it.
    "cabf.serverauth.dv.common_name_attribute_present",
    # The names (www.example.test, and pki.example.test in CDP/AIA) are under a reserved TLD:
    # internal names are what a private CA is for.
    "cabf.internal_domain_name",
}


def test_tls_server_certificate_has_only_the_cabf_findings_of_a_private_ca(
    issuing_ca, profile, tmp_path: Path
):
    cert = sign_csr(ca=issuing_ca, profile=profile("tls-server"), csr=make_csr(), actor="t", now=NOW)
    path = tmp_path / "leaf.pem"
    path.write_bytes(cert.x509().public_bytes(serialization.Encoding.PEM))
    result = _run("lint_cabf_serverauth_cert", "lint", "-d", "-s", "WARNING", "-f", "JSON", str(path))
    report = json.loads(result.stdout)
    codes = {f["code"] for r in report["results"] for f in r["finding_descriptions"]}
    assert codes == EXPECTED_CABF_FINDINGS, result.stdout


def test_linter_reports_a_real_defect(tmp_path: Path):
    """Negative control: keyEncipherment on an EC key (signed with the fixture chain) is found."""
    import datetime as dt

    from cryptography.hazmat.primitives import hashes

    from tests.conftest import FIXTURES, load_key

    issuer = x509.load_pem_x509_certificate((FIXTURES / "chain" / "intermediate.pem").read_bytes())
    issuer_key = serialization.load_pem_private_key(
        (FIXTURES / "chain" / "intermediate.key.pem").read_bytes(), None
    )
    leaf_key = load_key("ec-p256")
    bad_usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=True,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(parse_subject("CN=www.example.test"))
        .issuer_name(issuer.subject)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
        .not_valid_after(dt.datetime(2026, 3, 1, tzinfo=dt.UTC))
        .add_extension(bad_usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("www.example.test")]), critical=False)
        .sign(issuer_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    assert any("key_usage_value_prohibited_for_ec" in f for f in pkix_findings(cert))
