"""CAs certified from outside: a CSR out, the signed certificate in; and a KMI CA signing another CA's CSR."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from pki.authorities import create_root_ca, ensure_can_sign
from pki.enrollment import sign_csr
from pki.exceptions import CAUnavailable, InvalidCSR, InvalidState, PolicyViolation
from pki.issuance import chain_for
from pki.models import AuditEvent, CAGeneration, CAState, CertificateAuthority, KeyState
from pki.offline import install_ca_certificate, record_external_ca, request_ca_certificate, sign_ca_request
from pki.x509.names import parse_subject
from tests.conftest import FIXTURES, NOW, load_key, make_csr
from tests.interop.pkix import pkix_findings

pytestmark = pytest.mark.django_db
SUBJECT = "CN=Online Issuing CA,O=KMI"


def _foreign_root() -> tuple[x509.Certificate, object]:
    cert = x509.load_pem_x509_certificate((FIXTURES / "chain" / "root.pem").read_bytes())
    key = serialization.load_pem_private_key((FIXTURES / "chain" / "root.key.pem").read_bytes(), None)
    return cert, key


def _sign_outside(
    csr: x509.CertificateSigningRequest,
    *,
    path_length: int | None = 0,
    subject: x509.Name | None = None,
    ca: bool = True,
    not_after: dt.datetime | None = None,
    public_key: object | None = None,
) -> x509.Certificate:
    """What an issuer outside KMI (the fixture root, with cryptography alone) signs for a CSR."""
    root, root_key = _foreign_root()
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject or csr.subject)
        .issuer_name(root.subject)
        .public_key(public_key or csr.public_key())  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(hours=1))
        .not_valid_after(not_after or NOW + dt.timedelta(days=800))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(csr.public_key()), critical=False)  # type: ignore[arg-type]
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(root.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
    )
    try:  # a faithful issuer grants the name constraints the request asks for
        asked = csr.extensions.get_extension_for_class(x509.NameConstraints).value
        builder = builder.add_extension(asked, critical=True)
    except x509.ExtensionNotFound:
        pass
    return builder.sign(root_key, hashes.SHA256())  # type: ignore[arg-type]


@pytest.fixture
def waiting() -> tuple[CertificateAuthority, x509.CertificateSigningRequest]:
    return request_ca_certificate(
        name="issuing",
        subject=parse_subject(SUBJECT),
        path_length=0,
        name_constraints={"permitted": ["dns:example.test"]},
        actor="t",
        now=NOW,
    )


def test_a_csr_out_ca_waits_with_a_pre_activation_key(waiting):
    ca, csr = waiting
    assert ca.state == CAState.PENDING
    assert ca.certificate is None
    assert ca.key.state == KeyState.PRE_ACTIVATION
    assert csr.is_signature_valid
    assert csr.subject == parse_subject(SUBJECT)
    basic = csr.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical
    assert basic.value.ca
    assert basic.value.path_length == 0
    usage = csr.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign
    assert usage.crl_sign
    constraints = csr.extensions.get_extension_for_class(x509.NameConstraints).value
    assert constraints.permitted_subtrees == [x509.DNSName("example.test")]
    with pytest.raises(CAUnavailable, match="pending"):
        ensure_can_sign(ca, now=NOW)
    assert AuditEvent.objects.filter(action="ca.requested").exists()


def test_an_offline_root_outside_kmi_signs_and_the_certificate_is_installed(waiting, profile):
    ca, csr = waiting
    root, _ = _foreign_root()
    cert = _sign_outside(csr, path_length=0)
    with pytest.raises(PolicyViolation, match="not signed by any CA KMI knows"):
        install_ca_certificate(ca=ca, certificate=cert, actor="t", now=NOW)
    ca = install_ca_certificate(ca=ca, certificate=cert, chain=[root], actor="t", now=NOW)
    assert ca.state == CAState.ACTIVE
    assert ca.key.state == KeyState.ACTIVE
    parent = ca.parent
    assert parent is not None
    assert parent.state == CAState.EXTERNAL
    assert parent.name == "fixture-root-ca"
    assert ca.name_constraints["permitted"] == ["dns:example.test"]
    leaf = sign_csr(
        ca=ca,
        profile=profile("tls-server"),
        csr=make_csr(sans=[x509.DNSName("www.example.test")]),
        actor="t",
        now=NOW,
    )
    chain = chain_for(leaf)
    assert chain[1] == cert
    assert chain[2] == root
    generation = CAGeneration.objects.get(ca=ca)
    assert generation.state == "current"
    assert generation.certificate_id == ca.certificate_id
    # The external root signs nothing in KMI.
    with pytest.raises(CAUnavailable):
        ensure_can_sign(parent, now=NOW)
    with pytest.raises(InvalidState, match="not waiting"):
        install_ca_certificate(ca=ca, certificate=cert, chain=[root], actor="t", now=NOW)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"path_length": 1}, "path length 1, the CA asked for 0"),
        ({"subject": parse_subject("CN=Someone Else")}, "the CA asked for"),
        ({"ca": False}, "cA=FALSE"),
        ({"not_after": NOW - dt.timedelta(minutes=1)}, "expired"),
        ({"public_key": load_key("ec-p256-b").public_key()}, "another key"),
    ],
)
def test_a_certificate_that_does_not_fit_the_request_is_refused(waiting, change, message):
    ca, csr = waiting
    root, _ = _foreign_root()
    with pytest.raises(PolicyViolation, match=message):
        install_ca_certificate(
            ca=ca, certificate=_sign_outside(csr, **change), chain=[root], actor="t", now=NOW
        )
    ca.refresh_from_db()
    assert ca.state == CAState.PENDING
    assert not CertificateAuthority.objects.filter(state=CAState.EXTERNAL).exists()


def test_a_kmi_root_signs_another_cas_request(root_ca, profile):
    ca, csr = request_ca_certificate(name="online", subject=parse_subject(SUBJECT), actor="t", now=NOW)
    pem = csr.public_bytes(serialization.Encoding.PEM)
    signed = sign_ca_request(parent=root_ca, csr=pem, actor="offline-officer", path_length=0, now=NOW)
    assert signed.is_ca
    assert signed.ca_id == root_ca.pk
    cert = signed.x509()
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 0
    assert pkix_findings(cert) == []
    ca = install_ca_certificate(ca=ca, certificate=cert, actor="t", now=NOW)
    assert ca.parent_id == root_ca.pk  # KMI knew the issuer: no chain needed
    leaf = sign_csr(
        ca=ca,
        profile=profile("tls-server"),
        csr=make_csr(sans=[x509.DNSName("www.example.test")]),
        actor="t",
        now=NOW,
    )
    assert chain_for(leaf)[2] == root_ca.x509_certificate()


def test_sign_ca_request_refuses_what_the_parent_does_not_allow(root_ca):
    leaf_root = create_root_ca(
        name="tight", subject=parse_subject("CN=Tight"), path_length=0, actor="t", now=NOW
    )
    _, csr = request_ca_certificate(name="sub", subject=parse_subject("CN=Sub"), actor="t", now=NOW)
    pem = csr.public_bytes(serialization.Encoding.PEM)
    with pytest.raises(PolicyViolation, match="path length 0"):
        sign_ca_request(parent=leaf_root, csr=pem, actor="t", now=NOW)
    # An end-entity CSR is not a CA request; a CSR whose signature fails is refused.
    end_entity = make_csr(extensions=[(x509.BasicConstraints(ca=False, path_length=None), True)])
    with pytest.raises(PolicyViolation, match="cA=FALSE"):
        sign_ca_request(parent=root_ca, csr=end_entity, actor="t", now=NOW)
    tampered = bytearray(csr.public_bytes(serialization.Encoding.DER))
    tampered[-3] ^= 0x55
    with pytest.raises(InvalidCSR):
        sign_ca_request(parent=root_ca, csr=bytes(tampered), actor="t", now=NOW)


def test_an_external_ca_is_recorded_once_and_needs_a_known_issuer():
    root, _ = _foreign_root()
    intermediate = x509.load_pem_x509_certificate((FIXTURES / "chain" / "intermediate.pem").read_bytes())
    with pytest.raises(PolicyViolation, match="does not know the issuer"):
        record_external_ca(certificate=intermediate, actor="t", now=NOW)
    anchor = record_external_ca(certificate=root, actor="t", name="corp-root", now=NOW)
    assert record_external_ca(certificate=root, actor="t", now=NOW).pk == anchor.pk
    child = record_external_ca(certificate=intermediate, actor="t", now=NOW)
    assert child.parent_id == anchor.pk
    assert child.state == CAState.EXTERNAL
    assert child.chain() == [intermediate, root]


def test_rollover_under_an_offline_parent_goes_through_a_csr(waiting, profile):
    from pki.rotation import rollover_ca

    ca, csr = waiting
    root, _ = _foreign_root()
    ca = install_ca_certificate(ca=ca, certificate=_sign_outside(csr), chain=[root], actor="t", now=NOW)
    old_leaf = sign_csr(
        ca=ca,
        profile=profile("tls-server"),
        csr=make_csr(sans=[x509.DNSName("old.example.test")]),
        actor="t",
        now=NOW,
    )
    generation = rollover_ca(ca=ca, actor="t", now=NOW)
    assert generation.certificate is None
    assert generation.key.state == KeyState.PRE_ACTIVATION
    request = x509.load_der_x509_csr(bytes(generation.request_der))
    assert request.is_signature_valid
    assert request.subject == parse_subject(SUBJECT)
    ca.refresh_from_db()
    assert ca.generation == 1  # issuance stays with the first key until the certificate is in
    cert = _sign_outside(request)
    ca = install_ca_certificate(ca=ca, certificate=cert, actor="t", now=NOW)
    assert ca.generation == 2
    assert ca.own_certificate().x509() == cert
    new_leaf = sign_csr(
        ca=ca,
        profile=profile("tls-server"),
        csr=make_csr(sans=[x509.DNSName("new.example.test")]),
        actor="t",
        now=NOW,
    )
    assert (old_leaf.issuer_generation, new_leaf.issuer_generation) == (1, 2)
    assert chain_for(new_leaf)[1:] == [cert, root]
    assert CAGeneration.objects.get(ca=ca, number=1).state == "previous"


def test_a_ca_request_for_a_key_on_the_blocklist_is_refused_and_audited(root_ca):
    from pki.blocklist import REFUSED_ACTION
    from pki.exceptions import KeyBlocked
    from pki.models import Certificate
    from pki.revocation import revoke_key
    from pki.x509.csr import spki_fingerprint

    _, csr = request_ca_certificate(name="online", subject=parse_subject(SUBJECT), actor="t", now=NOW)
    revoke_key(spki_sha256=spki_fingerprint(csr.public_key()), actor="ops", now=NOW)  # e.g. a stolen backup
    before = Certificate.objects.count()
    with pytest.raises(KeyBlocked, match="never certified again"):
        sign_ca_request(
            parent=root_ca, csr=csr.public_bytes(serialization.Encoding.PEM), actor="officer", now=NOW
        )
    assert Certificate.objects.count() == before
    refusal = AuditEvent.objects.get(action=REFUSED_ACTION)
    assert (refusal.actor, refusal.details["path"]) == ("officer", "sign_ca_certificate")
