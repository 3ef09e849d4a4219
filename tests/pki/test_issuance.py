"""Issuing certificates from CSRs through the use cases."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from pki.exceptions import InvalidCSR, NameNotAllowed, PolicyViolation, WeakKey
from pki.issuance import issue_certificate, sign_csr, submit_request
from pki.models import AuditEvent, Certificate, CertificateRequest, RequestState
from tests.conftest import NOW, make_csr

pytestmark = pytest.mark.django_db


def test_tls_server_certificate_carries_names_and_distribution_points(issuing_ca, profile):
    cert = sign_csr(ca=issuing_ca, profile=profile("tls-server"), csr=make_csr(), actor="test", now=NOW)
    c = cert.x509()
    san = c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["www.example.test"]
    eku = c.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    ku = c.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature
    assert not ku.key_encipherment
    cdp = c.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert cdp[0].full_name[0].value == "http://pki.example.test/crl/issuing.crl"
    assert c.not_valid_after_utc - c.not_valid_before_utc == dt.timedelta(days=90, seconds=-1)
    assert cert.serial == format(c.serial_number, "x")
    assert c.serial_number >= 1 << 64
    assert len(c.serial_number.to_bytes(20, "big")) <= 20


def test_bad_signature_csr_is_refused_and_nothing_written(issuing_ca, profile):
    pem = make_csr()
    der = x509.load_pem_x509_csr(pem).public_bytes(
        __import__("cryptography").hazmat.primitives.serialization.Encoding.DER
    )
    tampered = der[:-5] + bytes([der[-5] ^ 0xFF]) + der[-4:]
    before = (Certificate.objects.count(), CertificateRequest.objects.count(), AuditEvent.objects.count())
    with pytest.raises(InvalidCSR):
        submit_request(ca=issuing_ca, profile=profile("tls-server"), csr=tampered, actor="t", now=NOW)
    assert (
        Certificate.objects.count(),
        CertificateRequest.objects.count(),
        AuditEvent.objects.count(),
    ) == before


@pytest.mark.parametrize(
    ("key", "kwargs", "error"),
    [
        ("rsa-1024", {}, WeakKey),
        (
            "ec-p256",
            {"subject": "CN=www.example.test", "sans": [x509.DNSName("bad_name.test")]},
            NameNotAllowed,
        ),
    ],
)
def test_policy_violations_are_refused(issuing_ca, profile, key, kwargs, error):
    with pytest.raises(error):
        issue_certificate(
            ca=issuing_ca, profile=profile("tls-server"), csr=make_csr(key, **kwargs), actor="t", now=NOW
        )
    assert not Certificate.objects.filter(ca=issuing_ca).exists()


def test_validity_past_cap_is_refused(issuing_ca, profile):
    with pytest.raises(PolicyViolation, match="exceeds"):
        submit_request(
            ca=issuing_ca,
            profile=profile("tls-server"),
            csr=make_csr(),
            actor="t",
            validity_days=398,
            now=NOW,
        )


def test_code_signing_request_waits_for_approval(issuing_ca, profile):
    req = submit_request(
        ca=issuing_ca,
        profile=profile("code-signing"),
        csr=make_csr("rsa-3072", subject="CN=Release signing,O=KMI"),
        actor="t",
        now=NOW,
    )
    assert req.state == RequestState.PENDING
