"""CA use cases: roots and intermediates, path length, name constraints, validity capping."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509

from pki.authorities import create_intermediate_ca, create_root_ca, ensure_can_sign
from pki.enrollment import sign_csr
from pki.exceptions import CAUnavailable, InvalidState, NameNotAllowed, PolicyViolation
from pki.models import AuditEvent, Certificate, CertificateAuthority, CertificateRequest, KeyState
from pki.models.authority import CAState
from pki.revocation import revoke_certificate
from pki.x509.names import parse_subject
from tests.conftest import NOW, make_csr

pytestmark = pytest.mark.django_db


def root(name: str = "r", **kwargs: object) -> CertificateAuthority:
    return create_root_ca(name=name, subject=parse_subject(f"CN={name}"), actor="t", now=NOW, **kwargs)  # type: ignore[arg-type]


def child(parent: CertificateAuthority, name: str, **kwargs: object) -> CertificateAuthority:
    return create_intermediate_ca(
        name=name,
        parent=parent,
        subject=parse_subject(f"CN={name}"),
        actor="t",
        now=NOW,
        **kwargs,  # type: ignore[arg-type]
    )


def test_root_and_intermediate_certificates_are_well_formed(root_ca, issuing_ca):
    r, i = root_ca.x509_certificate(), issuing_ca.x509_certificate()
    i.verify_directly_issued_by(r)
    r.verify_directly_issued_by(r)
    bc = i.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical
    assert (bc.value.ca, bc.value.path_length) == (True, 0)
    ku = i.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical
    assert ku.value.key_cert_sign
    assert ku.value.crl_sign
    aki = i.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = r.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    # The intermediate names its parent's CRL; a root names none (nothing above it revokes it).
    cdp = i.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert cdp[0].full_name[0].value == "http://pki.example.test/crl/root.crl"
    with pytest.raises(x509.ExtensionNotFound):
        r.extensions.get_extension_for_class(x509.CRLDistributionPoints)
    assert issuing_ca.own_certificate().ca == root_ca
    assert root_ca.own_certificate().ca == root_ca
    assert issuing_ca.chain() == [i, r]


def test_creating_a_ca_is_audited(root_ca, issuing_ca):
    actions = list(AuditEvent.objects.order_by("id").values_list("action", flat=True))
    assert actions == ["key.generated", "ca.created", "key.generated", "ca.created", "certificate.issued"]


def test_path_length_is_inherited_and_enforced():
    top = root("top", path_length=1)
    mid = child(top, "mid")
    assert mid.path_length == 0
    assert (
        mid.x509_certificate().extensions.get_extension_for_class(x509.BasicConstraints).value.path_length
        == 0
    )
    before = CertificateAuthority.objects.count()
    with pytest.raises(PolicyViolation, match="CA mid has path length 0: it cannot sign a CA"):
        child(mid, "low")
    with pytest.raises(PolicyViolation, match=r"path length 1 exceeds what top allows \(0\)"):
        child(top, "wide", path_length=1)
    assert CertificateAuthority.objects.count() == before


def test_unconstrained_root_allows_a_deeper_hierarchy():
    a = child(root("top"), "a")
    b = child(a, "b")
    assert b.path_length is None
    assert [c.subject.rfc4514_string() for c in b.chain()] == ["CN=b", "CN=a", "CN=top"]


def test_parent_name_constraints_bind_the_child_and_its_leaves(profile):
    top = root(
        "top", name_constraints={"permitted": ["dns:example.test"], "excluded": ["dns:secret.example.test"]}
    )
    sub = child(top, "sub", name_constraints={"permitted": ["dns:eng.example.test"]}, path_length=0)
    assert sub.name_constraints == {
        "permitted": ["dns:eng.example.test"],
        "excluded": ["dns:secret.example.test"],
    }
    with pytest.raises(NameNotAllowed, match="outside the parent CA's permitted names"):
        child(top, "wider", name_constraints={"permitted": ["dns:example.org"]})
    inherits = child(top, "plain", path_length=0)
    assert inherits.name_constraints == top.name_constraints
    with pytest.raises(NameNotAllowed, match="excluded by the CA's name constraints"):
        sign_csr(
            ca=inherits,
            profile=profile("tls-server"),
            csr=make_csr(subject="CN=db.secret.example.test"),
            actor="t",
            now=NOW,
        )


def test_ca_expiry_caps_the_validity_of_what_it_signs(profile):
    short = root("short", validity_days=30)
    root_end = short.own_certificate().not_after
    inter = child(short, "inter", validity_days=1825)
    assert inter.own_certificate().not_after == root_end
    later = NOW + dt.timedelta(days=20)
    leaf = sign_csr(ca=inter, profile=profile("tls-server"), csr=make_csr(), actor="t", now=later)
    assert leaf.not_after == root_end  # 90 days asked, 10 left
    before = (Certificate.objects.count(), CertificateRequest.objects.count(), AuditEvent.objects.count())
    expired = NOW + dt.timedelta(days=31)
    with pytest.raises(CAUnavailable, match="CA inter expired at"):
        sign_csr(ca=inter, profile=profile("tls-server"), csr=make_csr(), actor="t", now=expired)
    assert (
        Certificate.objects.count(),
        CertificateRequest.objects.count(),
        AuditEvent.objects.count(),
    ) == before


def test_ca_validity_counts_whole_days():
    cert = root("exact", validity_days=10).own_certificate()
    assert cert.not_after - cert.not_before == dt.timedelta(days=10, seconds=-1)


@pytest.mark.parametrize(
    ("name", "error", "message"),
    [
        ("Root CA", PolicyViolation, "must be 1-63 lower-case letters"),
        ("-root", PolicyViolation, "must be 1-63 lower-case letters"),
        ("root", InvalidState, "a CA named 'root' already exists"),
    ],
)
def test_bad_ca_names_are_refused(root_ca, name, error, message):
    with pytest.raises(error, match=message):
        root(name)


def test_zero_validity_is_refused(root_ca):
    with pytest.raises(PolicyViolation, match="at least one day"):
        root("zero", validity_days=0)
    with pytest.raises(PolicyViolation, match="at least one day"):
        child(root_ca, "zero", validity_days=0)
    assert not CertificateAuthority.objects.filter(name="zero").exists()


def test_a_ca_that_cannot_sign_says_why(issuing_ca):
    ensure_can_sign(issuing_ca, now=NOW)
    issuing_ca.key.state = KeyState.SUSPENDED
    with pytest.raises(CAUnavailable, match="CA issuing's key is suspended"):
        ensure_can_sign(issuing_ca, now=NOW)
    issuing_ca.key.state = KeyState.ACTIVE
    revoke_certificate(certificate=issuing_ca.own_certificate(), reason="cACompromise", actor="t", now=NOW)
    issuing_ca.certificate = Certificate.objects.get(pk=issuing_ca.certificate_id)
    with pytest.raises(CAUnavailable, match="CA issuing's certificate is revoked"):
        ensure_can_sign(issuing_ca, now=NOW)
    issuing_ca.state = CAState.DISABLED
    with pytest.raises(CAUnavailable, match="CA issuing is disabled"):
        ensure_can_sign(issuing_ca, now=NOW)


def test_disabled_parent_cannot_create_a_child(root_ca):
    root_ca.state = CAState.DISABLED
    root_ca.save()
    with pytest.raises(CAUnavailable, match="CA root is disabled"):
        child(root_ca, "sub")


@pytest.mark.parametrize(("parent_type", "child_type"), [("ed25519", "ec-p256"), ("ec-p384", "ed448")])
def test_mixed_key_types_chain(parent_type, child_type):
    top = root("top", key_type=parent_type)
    sub = child(top, "sub", key_type=child_type)
    sub.x509_certificate().verify_directly_issued_by(top.x509_certificate())
    assert sub.key.key_type == child_type
