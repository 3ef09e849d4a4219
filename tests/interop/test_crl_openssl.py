"""Published CRLs checked by real programs: ``openssl verify -crl_check`` and pkilint's ``lint_crl``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from pkilint import loader, pkix, report
from pkilint.pkix import crl as pkilint_crl
from pkilint.pkix import extension, name

from pki.crl import pem, publish_crl, set_crl_shards
from pki.enrollment import sign_csr
from pki.models import Certificate, CertificateAuthority
from pki.revocation import revoke_certificate
from tests.conftest import NOW, make_csr

pytestmark = [pytest.mark.interop, pytest.mark.django_db]


def write_pem(path: Path, cert: Certificate | CertificateAuthority) -> Path:
    x = cert.x509_certificate() if isinstance(cert, CertificateAuthority) else cert.x509()
    path.write_bytes(x.public_bytes(serialization.Encoding.PEM))
    return path


def verify(
    tmp_path: Path, leaf: Certificate, crls: list[bytes], *, check_all: bool = False
) -> tuple[int, str]:
    """Run ``openssl verify -crl_check`` at the fixtures' time; return (exit code, output)."""
    assert leaf.ca is not None
    root = write_pem(tmp_path / "root.pem", leaf.ca.parent or leaf.ca)
    issuing = write_pem(tmp_path / "issuing.pem", leaf.ca)
    leaf_pem = write_pem(tmp_path / "leaf.pem", leaf)
    args = ["openssl", "verify", "-crl_check_all" if check_all else "-crl_check"]
    args += ["-attime", str(int(NOW.timestamp()) + 3600), "-CAfile", str(root), "-untrusted", str(issuing)]
    for i, data in enumerate(crls):
        path = tmp_path / f"crl{i}.pem"
        path.write_bytes(pem(data))
        args += ["-CRLfile", str(path)]
    done = subprocess.run([*args, str(leaf_pem)], capture_output=True, text=True, timeout=30, check=False)
    return done.returncode, done.stdout + done.stderr


@pytest.fixture
def leaf(issuing_ca, profile):
    return sign_csr(ca=issuing_ca, profile=profile("tls-server"), csr=make_csr(), actor="t", now=NOW)


def test_good_certificate_verifies_with_the_crl(tmp_path, root_ca, issuing_ca, leaf):
    crls = [bytes(publish_crl(ca=ca, actor="t", now=NOW).der) for ca in (issuing_ca, root_ca)]
    code, out = verify(tmp_path, leaf, crls, check_all=True)
    assert (code, out.strip()) == (0, f"{tmp_path / 'leaf.pem'}: OK")


def test_revoked_certificate_fails_with_error_23(tmp_path, issuing_ca, leaf):
    revoke_certificate(certificate=leaf, reason="keyCompromise", actor="t", now=NOW)
    code, out = verify(tmp_path, leaf, [bytes(publish_crl(ca=issuing_ca, actor="t", now=NOW).der)])
    assert code != 0
    assert "error 23" in out
    assert "certificate revoked" in out


def test_revoked_intermediate_fails_the_full_chain_check(tmp_path, root_ca, issuing_ca, leaf):
    revoke_certificate(certificate=issuing_ca.own_certificate(), reason="cACompromise", actor="t", now=NOW)
    crls = [bytes(publish_crl(ca=ca, actor="t", now=NOW).der) for ca in (issuing_ca, root_ca)]
    code, out = verify(tmp_path, leaf, crls, check_all=True)
    assert code != 0
    assert "error 23" in out


def test_sharded_crls_verify_without_scope_errors(tmp_path, issuing_ca, profile):
    set_crl_shards(ca=issuing_ca, shards=3, actor="t", now=NOW)
    good = sign_csr(ca=issuing_ca, profile=profile("tls-server"), csr=make_csr(), actor="t", now=NOW)
    bad = sign_csr(
        ca=issuing_ca, profile=profile("tls-server"), csr=make_csr("ec-p256-b"), actor="t", now=NOW
    )
    revoke_certificate(certificate=bad, reason="superseded", actor="t", now=NOW)
    for cert, expected in ((good, 0), (bad, 23)):
        assert cert.crl_shard is not None
        shard_crl = bytes(publish_crl(ca=issuing_ca, shard=cert.crl_shard, actor="t", now=NOW).der)
        code, out = verify(tmp_path, cert, [shard_crl])
        assert "error 44" not in out
        if expected == 0:
            assert code == 0, out
        else:
            assert "error 23" in out, out
        # The full CRL (no IssuingDistributionPoint) covers every partition too.
        full = bytes(publish_crl(ca=issuing_ca, actor="t", now=NOW).der)
        code, out = verify(tmp_path, cert, [full])
        assert (code == 0) == (expected == 0), out


def test_partition_crl_does_not_vouch_for_another_partition(tmp_path, issuing_ca, profile):
    set_crl_shards(ca=issuing_ca, shards=2, actor="t", now=NOW)
    cert = sign_csr(ca=issuing_ca, profile=profile("tls-server"), csr=make_csr(), actor="t", now=NOW)
    assert cert.crl_shard is not None
    other = 1 if cert.crl_shard == 2 else 2
    wrong = bytes(publish_crl(ca=issuing_ca, shard=other, actor="t", now=NOW).der)
    code, out = verify(tmp_path, cert, [wrong])
    assert code != 0
    assert "error 44" in out  # "different CRL scope": the IDP names the other partition


def _lint(data: bytes) -> list[str]:
    validator = pkilint_crl.create_pkix_crl_validator_container(
        [
            pkix.create_attribute_decoder(name.ATTRIBUTE_TYPE_MAPPINGS),
            pkix.create_extension_decoder(extension.EXTENSION_MAPPINGS),
        ],
        [
            pkilint_crl.create_issuer_validator_container([]),
            pkilint_crl.create_validity_validator_container([]),
            pkilint_crl.create_extensions_validator_container([]),
        ],
    )
    doc = loader.RFC5280CertificateListDocumentLoader().load_der_document(data, "crl")
    results = validator.validate(doc.root)
    return [
        f"{fd.finding.code} ({fd.finding.severity})"
        for r in results
        for fd in r.finding_descriptions
        if fd.finding.severity >= report.ValidationFindingSeverity.WARNING
    ]


@pytest.fixture
def revoked_in_every_way(fixture_ca):
    """An RSA CA (committed key) with one revoked entry per reason, some with invalidity dates."""
    from tests.pki.test_crl import REASONS, revoked_row

    ca = fixture_ca("lint-rsa", "rsa-2048")
    for i, reason in enumerate(REASONS):
        revoked_row(ca, revoked_at=NOW, reason=reason, invalidity_date=NOW if i % 2 else None)
    return ca


def test_full_and_partition_crls_lint_clean_in_process(issuing_ca, revoked_in_every_way, profile):
    set_crl_shards(ca=issuing_ca, shards=2, actor="t", now=NOW)
    cert = sign_csr(ca=issuing_ca, profile=profile("tls-server"), csr=make_csr(), actor="t", now=NOW)
    revoke_certificate(certificate=cert, reason="keyCompromise", actor="t", now=NOW)
    crls = [
        publish_crl(ca=revoked_in_every_way, actor="t", now=NOW),
        publish_crl(ca=issuing_ca, actor="t", now=NOW),
        publish_crl(ca=issuing_ca, shard=1, actor="t", now=NOW),
        publish_crl(ca=issuing_ca, shard=2, actor="t", now=NOW),
    ]
    assert sum(c.entry_count for c in crls) == 9 + 2
    for row in crls:
        assert _lint(bytes(row.der)) == [], f"CRL {row.crl_number} shard {row.shard}"


def test_lint_crl_cli_passes_a_partition_crl(tmp_path, issuing_ca, profile):
    set_crl_shards(ca=issuing_ca, shards=2, actor="t", now=NOW)
    cert = sign_csr(ca=issuing_ca, profile=profile("tls-server"), csr=make_csr(), actor="t", now=NOW)
    revoke_certificate(certificate=cert, reason="superseded", actor="t", now=NOW)
    assert cert.crl_shard is not None
    path = tmp_path / "shard.crl"
    path.write_bytes(bytes(publish_crl(ca=issuing_ca, shard=cert.crl_shard, actor="t", now=NOW).der))
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "lint_crl"),
            "lint",
            "-s",
            "WARNING",
            "-t",
            "CRL",
            "-p",
            "PKIX",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
