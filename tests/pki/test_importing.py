"""An existing CA brought into KMI: with its key (sealed on import), or its certificate only; its
issued certificates and revocations; its CRL numbering continued."""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import pytest
import time_machine
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from django.core.management import CommandError, call_command
from django.db import connection

from pki.crl import publish_crl
from pki.enrollment import sign_csr
from pki.exceptions import InvalidState, PolicyViolation
from pki.importing import import_ca, import_certificate, import_crl
from pki.issuance import chain_for
from pki.models import (
    AuditEvent,
    CAState,
    Certificate,
    CertificateAuthority,
    CertificateRevocationList,
    KeyState,
    SealedKey,
)
from tests.conftest import FIXTURES, NOW, load_key, make_csr

pytestmark = pytest.mark.django_db
CHAIN = FIXTURES / "chain"


def _load(name: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate((CHAIN / name).read_bytes())


def _key(name: str):
    return serialization.load_pem_private_key((CHAIN / name).read_bytes(), None)


def _leaf(serial: int, name: str) -> x509.Certificate:
    """A certificate the corporate CA (the fixture intermediate) signed before KMI."""
    issuer = _load("intermediate.pem")
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(issuer.subject)
        .public_key(load_key("ec-p256").public_key())  # type: ignore[arg-type]
        .serial_number(serial)
        .not_valid_before(NOW - dt.timedelta(days=30))
        .not_valid_after(NOW + dt.timedelta(days=300))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(_key("intermediate.key.pem"), hashes.SHA256())  # type: ignore[arg-type]
    )


def _crl(
    number: int, revoked: list[tuple[int, x509.ReasonFlags]], *, signer: str = "intermediate"
) -> x509.CertificateRevocationList:
    issuer = _load(f"{signer}.pem")
    entries = []
    for serial, reason in revoked:
        entry = (
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(NOW - dt.timedelta(days=2))
            .add_extension(x509.CRLReason(reason), critical=False)
            .add_extension(x509.InvalidityDate(NOW - dt.timedelta(days=3)), critical=False)
            .build()
        )
        entries.append(entry)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.subject)
        .last_update(NOW - dt.timedelta(hours=1))
        .next_update(NOW + dt.timedelta(days=7))
        .add_extension(x509.CRLNumber(number), critical=False)
    )
    for entry in entries:
        builder = builder.add_revoked_certificate(entry)
    return builder.sign(_key(f"{signer}.key.pem"), hashes.SHA256())  # type: ignore[arg-type]


@pytest.fixture
def corporate() -> CertificateAuthority:
    """The fixture intermediate imported with its key, under its root recorded as a certificate only."""
    return import_ca(
        name="corp",
        certificate=_load("intermediate.pem"),
        private_key=_key("intermediate.key.pem"),  # type: ignore[arg-type]
        chain=[_load("root.pem")],
        actor="t",
        now=NOW,
    )


def test_imported_ca_key_is_sealed_and_the_ca_issues(corporate, profile):
    assert corporate.state == CAState.ACTIVE
    assert corporate.key.state == KeyState.ACTIVE
    assert corporate.key.backend == "encrypted"
    assert SealedKey.objects.filter(key=corporate.key).exists()
    assert corporate.path_length == 0  # from the certificate's basicConstraints
    root = corporate.parent
    assert root is not None
    assert root.state == CAState.EXTERNAL
    assert root.name == "fixture-root-ca"
    # The plaintext key is nowhere in the database.
    pkcs8 = _key("intermediate.key.pem").private_bytes(  # type: ignore[union-attr]
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pki_sealedkey WHERE position(%s in ciphertext) > 0", [pkcs8[-32:]]
        )
        assert cursor.fetchone()[0] == 0
    leaf = sign_csr(
        ca=corporate,
        profile=profile("tls-server"),
        csr=make_csr(sans=[x509.DNSName("www.example.test")]),
        actor="t",
        now=NOW,
    )
    assert chain_for(leaf)[1:] == [_load("intermediate.pem"), _load("root.pem")]
    assert AuditEvent.objects.filter(action="ca.imported", details__key="sealed").exists()


def test_issued_certificates_and_revocations_come_along_and_crl_numbers_continue(corporate):
    leaves = [_leaf(1000 + i, f"host{i}.example.test") for i in range(3)]
    for leaf in leaves:
        import_certificate(ca=corporate, certificate=leaf, actor="t", now=NOW)
    done = import_crl(
        ca=corporate, crl=_crl(41, [(1001, x509.ReasonFlags.key_compromise)]), actor="t", now=NOW
    )
    assert (done.crl_number, done.revoked, done.stored) == (41, 1, False)
    row = Certificate.objects.get(ca=corporate, serial=format(1001, "x"))
    assert row.revocation_reason == "keyCompromise"
    assert row.revoked_at == NOW - dt.timedelta(days=2)
    assert row.invalidity_date == NOW - dt.timedelta(days=3)
    crl = publish_crl(ca=corporate, actor="t", now=NOW)
    assert crl.crl_number == 42
    listed = x509.load_der_x509_crl(bytes(crl.der))
    assert [e.serial_number for e in listed] == [1001]
    assert listed.is_signature_valid(_load("intermediate.pem").public_key())  # type: ignore[arg-type]
    # An older (or the same) CRL cannot be imported again: numbers only go up.
    with pytest.raises(InvalidState, match="CRL number 42"):
        import_crl(ca=corporate, crl=_crl(41, []), actor="t", now=NOW)


def test_a_crl_naming_certificates_kmi_does_not_have_is_refused_whole(corporate):
    import_certificate(ca=corporate, certificate=_leaf(1000, "a.example.test"), actor="t", now=NOW)
    crl = _crl(7, [(1000, x509.ReasonFlags.superseded), (2000, x509.ReasonFlags.key_compromise)])
    with pytest.raises(PolicyViolation, match="1 serial"):
        import_crl(ca=corporate, crl=crl, actor="t", now=NOW)
    assert not Certificate.objects.filter(ca=corporate, revoked_at__isnull=False).exists()


def test_a_crl_of_another_issuer_or_a_delta_is_refused(corporate):
    with pytest.raises(PolicyViolation, match="not signed by CA corp"):
        import_crl(ca=corporate, crl=_crl(3, [], signer="root"), actor="t", now=NOW)


def test_the_crl_of_a_certificate_only_ca_is_served(corporate, client):
    root = corporate.parent
    assert root is not None
    done = import_crl(ca=root, crl=_crl(5, [], signer="root"), actor="t", now=NOW)
    assert done.stored
    stored = CertificateRevocationList.objects.latest_for(root.pk)
    assert stored is not None
    assert stored.crl_number == 5
    response = client.get(f"/crl/{root.name}.crl")
    assert response.status_code == 200
    assert response.content == bytes(stored.der)
    with pytest.raises(InvalidState):
        import_crl(ca=root, crl=_crl(5, [], signer="root"), actor="t", now=NOW)


def test_bad_imports_leave_nothing_behind():
    intermediate, key = _load("intermediate.pem"), _key("intermediate.key.pem")
    with pytest.raises(PolicyViolation, match="does not match"):
        import_ca(
            name="x",
            certificate=intermediate,
            private_key=load_key("ec-p256"),
            chain=[_load("root.pem")],
            actor="t",
            now=NOW,
        )
    with pytest.raises(PolicyViolation, match="not signed by any CA KMI knows"):
        import_ca(name="x", certificate=intermediate, private_key=key, actor="t", now=NOW)  # type: ignore[arg-type]
    with pytest.raises(PolicyViolation, match="expired"):
        import_ca(
            name="x",
            certificate=intermediate,
            private_key=key,  # type: ignore[arg-type]
            chain=[_load("root.pem")],
            actor="t",
            now=dt.datetime(2046, 1, 1, tzinfo=dt.UTC),
        )
    assert not CertificateAuthority.objects.exists()
    assert not SealedKey.objects.exists()


def _pkcs12(tmp_path: Path, password: bytes) -> Path:
    data = pkcs12.serialize_key_and_certificates(
        b"corp",
        _key("intermediate.key.pem"),  # type: ignore[arg-type]
        _load("intermediate.pem"),
        [_load("root.pem")],
        serialization.BestAvailableEncryption(password),
    )
    path = tmp_path / "corp.p12"
    path.write_bytes(data)
    return path


@time_machine.travel(NOW, tick=False)
def test_import_ca_command_with_pkcs12_issued_certificates_and_crl(tmp_path):
    p12 = _pkcs12(tmp_path, b"correct horse battery")
    (tmp_path / "password").write_text("correct horse battery\n")
    issued = tmp_path / "issued"
    issued.mkdir()
    for i in range(2):
        (issued / f"{i}.pem").write_bytes(
            _leaf(500 + i, f"h{i}.example.test").public_bytes(serialization.Encoding.PEM)
        )
    (tmp_path / "last.crl").write_bytes(
        _crl(99, [(501, x509.ReasonFlags.superseded)]).public_bytes(serialization.Encoding.PEM)
    )
    out = io.StringIO()
    call_command(
        "import_ca",
        "--name", "corp",
        "--pkcs12", str(p12),
        "--password-file", str(tmp_path / "password"),
        "--issued", str(issued),
        "--crl", str(tmp_path / "last.crl"),
        stdout=out,
    )  # fmt: skip
    text = out.getvalue()
    assert "imported CA corp under fixture-root-ca" in text
    assert "2 certificate(s) it issued recorded" in text
    assert "KMI's next CRL of corp is number 100" in text
    assert Certificate.objects.get(serial=format(501, "x")).revocation_reason == "superseded"


@time_machine.travel(NOW, tick=False)
def test_import_ca_command_refuses_a_wrong_password_and_leaves_nothing(tmp_path):
    p12 = _pkcs12(tmp_path, b"correct horse battery")
    (tmp_path / "password").write_text("wrong\n")
    with pytest.raises(CommandError, match="wrong password"):
        call_command(
            "import_ca", "--name", "corp", "--pkcs12", str(p12), "--password-file", str(tmp_path / "password")
        )
    bad_crl = tmp_path / "bad.crl"
    bad_crl.write_bytes(_crl(3, [(77, x509.ReasonFlags.superseded)]).public_bytes(serialization.Encoding.PEM))
    (tmp_path / "password").write_text("correct horse battery\n")
    with pytest.raises(CommandError, match="KMI has no certificate for"):
        call_command(
            "import_ca", "--name", "corp", "--pkcs12", str(p12),
            "--password-file", str(tmp_path / "password"), "--crl", str(bad_crl),
        )  # fmt: skip
    assert not CertificateAuthority.objects.exists()


@time_machine.travel(NOW, tick=False)
def test_certificate_only_import_and_its_crl(tmp_path):
    (tmp_path / "root.pem").write_bytes(_load("root.pem").public_bytes(serialization.Encoding.PEM))
    (tmp_path / "root.crl").write_bytes(_crl(12, [], signer="root").public_bytes(serialization.Encoding.DER))
    out = io.StringIO()
    call_command("import_ca", "--name", "anchor", "--cert", str(tmp_path / "root.pem"), stdout=out)
    assert "imported CA anchor: CN=Fixture Root CA,O=Fixture Org, certificate only" in out.getvalue()
    call_command("import_crl", str(tmp_path / "root.crl"), "--ca", "anchor", stdout=out)
    assert "CRL 12 of CA anchor imported: served at http://pki.example.test/crl/anchor.crl" in out.getvalue()
    with pytest.raises(CommandError, match="certificate only"):
        call_command("publish_crl", "--ca", "anchor")
