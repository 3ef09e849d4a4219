"""A root and an intermediate rolled over, checked by real programs: ``openssl verify`` across the
link certificates in both directions, CRLs of both generations, pkilint on everything emitted."""

from __future__ import annotations

import datetime as dt
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from pki.crl import pem, publish_crl
from pki.enrollment import sign_csr
from pki.models import CAGeneration, Certificate, CertificateAuthority
from pki.ocsp import ensure_ocsp_responder
from pki.revocation import revoke_certificate
from pki.rotation import rollover_ca
from tests.conftest import NOW, make_csr
from tests.interop.pkix import pkix_findings
from tests.interop.test_crl_openssl import _lint as lint_crl

pytestmark = [pytest.mark.interop, pytest.mark.django_db]
LATER = NOW + dt.timedelta(hours=1)
CHECK_AT = NOW + dt.timedelta(hours=3)


@dataclass
class Rolled:
    """Both generations of a root and an intermediate, and a leaf from each intermediate generation."""

    root: CertificateAuthority
    issuing: CertificateAuthority
    root1: x509.Certificate
    root2: x509.Certificate
    issuing1: x509.Certificate
    issuing2: x509.Certificate
    new_with_old: Certificate  # root key 2 signed by root key 1
    old_with_new: Certificate  # root key 1 signed by root key 2
    old_leaf: Certificate
    new_leaf: Certificate


def _leaf(ca: CertificateAuthority, profile, name: str, now: dt.datetime) -> Certificate:
    csr = make_csr(subject=f"CN={name}.example.test", sans=[x509.DNSName(f"{name}.example.test")])
    return sign_csr(ca=ca, profile=profile("tls-server"), csr=csr, actor="t", now=now)


@pytest.fixture
def rolled(root_ca, issuing_ca, profile) -> Rolled:
    old_leaf = _leaf(issuing_ca, profile, "old", NOW)
    root1, issuing1 = root_ca.x509_certificate(), issuing_ca.x509_certificate()
    root_generation = rollover_ca(ca=root_ca, actor="t", now=LATER)
    root_ca.refresh_from_db()
    issuing_ca.refresh_from_db()
    rollover_ca(ca=issuing_ca, actor="t", now=LATER)
    issuing_ca.refresh_from_db()
    assert root_generation.link_from_previous is not None
    assert root_generation.link_to_previous is not None
    return Rolled(
        root=root_ca,
        issuing=issuing_ca,
        root1=root1,
        root2=root_ca.x509_certificate(),
        issuing1=issuing1,
        issuing2=issuing_ca.x509_certificate(),
        new_with_old=root_generation.link_from_previous,
        old_with_new=root_generation.link_to_previous,
        old_leaf=old_leaf,
        new_leaf=_leaf(issuing_ca, profile, "new", LATER),
    )


def _write(path: Path, *certs: x509.Certificate | Certificate) -> str:
    data = b"".join(
        (c if isinstance(c, x509.Certificate) else c.x509()).public_bytes(serialization.Encoding.PEM)
        for c in certs
    )
    path.write_bytes(data)
    return str(path)


def _verify(
    tmp_path: Path,
    *,
    trusted: x509.Certificate,
    untrusted: list[x509.Certificate | Certificate],
    leaf: Certificate,
    crls: list[bytes] = (),  # type: ignore[assignment]
) -> tuple[int, str]:
    args = ["openssl", "verify", "-attime", str(int(CHECK_AT.timestamp()))]
    args += ["-CAfile", _write(tmp_path / "trusted.pem", trusted)]
    args += ["-untrusted", _write(tmp_path / "untrusted.pem", *untrusted)]
    if crls:
        args.append("-crl_check_all")
        for i, data in enumerate(crls):
            path = tmp_path / f"crl{i}.pem"
            path.write_bytes(pem(data))
            args += ["-CRLfile", str(path)]
    done = subprocess.run(
        [*args, _write(tmp_path / "leaf.pem", leaf)], capture_output=True, text=True, timeout=30, check=False
    )
    return done.returncode, done.stdout + done.stderr


def _all_crls(rolled: Rolled) -> list[bytes]:
    return [
        bytes(publish_crl(ca=ca, generation=number, actor="t", now=CHECK_AT).der)
        for ca in (rolled.root, rolled.issuing)
        for number in (1, 2)
    ]


def test_old_generation_leaf_verifies_under_the_new_root_through_the_link(tmp_path, rolled):
    untrusted = [rolled.issuing1, rolled.old_with_new]
    code, out = _verify(tmp_path, trusted=rolled.root2, untrusted=untrusted, leaf=rolled.old_leaf)
    assert code == 0, out
    # Without the link the new root alone does not vouch for the old generation.
    code, out = _verify(tmp_path, trusted=rolled.root2, untrusted=[rolled.issuing1], leaf=rolled.old_leaf)
    assert code != 0


def test_new_generation_leaf_verifies_under_the_old_root_through_the_link(tmp_path, rolled):
    untrusted = [rolled.issuing2, rolled.new_with_old]
    code, out = _verify(tmp_path, trusted=rolled.root1, untrusted=untrusted, leaf=rolled.new_leaf)
    assert code == 0, out
    code, out = _verify(tmp_path, trusted=rolled.root1, untrusted=[rolled.issuing2], leaf=rolled.new_leaf)
    assert code != 0


def test_each_generation_verifies_under_its_own_root(tmp_path, rolled):
    for root, issuing, leaf in (
        (rolled.root1, rolled.issuing1, rolled.old_leaf),
        (rolled.root2, rolled.issuing2, rolled.new_leaf),
    ):
        code, out = _verify(tmp_path, trusted=root, untrusted=[issuing], leaf=leaf)
        assert code == 0, out


def test_crls_of_both_generations_verify_and_list_the_right_serials(tmp_path, rolled):
    revoke_certificate(certificate=rolled.old_leaf, reason="keyCompromise", actor="t", now=LATER)
    crls = _all_crls(rolled)
    listed = [{r.serial_number for r in x509.load_der_x509_crl(c)} for c in crls]
    root1_crl, root2_crl, issuing1_crl, issuing2_crl = listed
    assert issuing1_crl == {rolled.old_leaf.serial_int}
    assert issuing2_crl == set()
    assert root1_crl == root2_crl == set()
    # Every chain checked against every CRL: the new leaf is good through the link to the old root
    # (CRLs of issuing gen 2, root gen 1 for the link), the revoked old leaf fails with error 23.
    code, out = _verify(
        tmp_path,
        trusted=rolled.root1,
        untrusted=[rolled.issuing2, rolled.new_with_old],
        leaf=rolled.new_leaf,
        crls=crls,
    )
    assert code == 0, out
    code, out = _verify(
        tmp_path,
        trusted=rolled.root2,
        untrusted=[rolled.issuing1, rolled.old_with_new],
        leaf=rolled.old_leaf,
        crls=crls,
    )
    assert code != 0, out
    assert "error 23" in out, out
    # A revoked link certificate is caught on the CRL of the generation that signed it.
    revoke_certificate(certificate=rolled.new_with_old, reason="superseded", actor="t", now=LATER)
    crls = _all_crls(rolled)
    code, out = _verify(
        tmp_path,
        trusted=rolled.root1,
        untrusted=[rolled.issuing2, rolled.new_with_old],
        leaf=rolled.new_leaf,
        crls=crls,
    )
    assert code != 0, out
    assert "error 23" in out, out


def test_everything_a_rollover_emits_lints_clean(rolled):
    responders = [
        ensure_ocsp_responder(ca=ca, generation=g, actor="t", now=LATER).certificate
        for ca in (rolled.root, rolled.issuing)
        for g in CAGeneration.objects.filter(ca=ca)
    ]
    for cert in [
        rolled.root2,
        rolled.issuing2,
        rolled.new_with_old.x509(),
        rolled.old_with_new.x509(),
        rolled.new_leaf.x509(),
        *(r.x509() for r in responders),
    ]:
        assert pkix_findings(cert) == [], cert.subject.rfc4514_string()
    for data in _all_crls(rolled):
        assert lint_crl(data) == []
