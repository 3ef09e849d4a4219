"""Issuing certificates from CSRs through the use cases."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from pki.enrollment import sign_csr
from pki.exceptions import (
    InvalidCSR,
    InvalidState,
    NameNotAllowed,
    PolicyViolation,
    UnsupportedExtension,
    WeakKey,
)
from pki.issuance import issue_certificate, submit_request
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


# --- every bad input: a clear domain error and nothing written -----------------------------------
def _oversized_csr() -> bytes:
    many = [x509.DNSName(f"host-{i:04d}.example.test") for i in range(800)]
    return make_csr(sans=many)


def _not_a_csr() -> bytes:
    from tests.conftest import FIXTURES

    return (FIXTURES / "chain" / "intermediate.pem").read_bytes()  # a certificate, not a CSR


def _bad_signature() -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding

    der = x509.load_pem_x509_csr(make_csr()).public_bytes(Encoding.DER)
    return der[:-5] + bytes([der[-5] ^ 0xFF]) + der[-4:]


UNKNOWN_CRITICAL = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.55555.7"), b"\x05\x00")

BAD_INPUTS = {
    "garbage": (lambda: b"\x30\x82 this is not DER", InvalidCSR, "CSR does not parse"),
    "broken-pem": (
        lambda: b"-----BEGIN CERTIFICATE REQUEST-----\nbm90IGEgQ1NS\n-----END CERTIFICATE REQUEST-----\n",
        InvalidCSR,
        "CSR does not parse",
    ),
    "certificate-not-csr": (_not_a_csr, InvalidCSR, "CSR does not parse"),
    "empty": (lambda: b"  \n", InvalidCSR, "CSR is empty"),
    "wrong-signature": (_bad_signature, InvalidCSR, "signature does not verify"),
    "rsa-1024": (lambda: make_csr("rsa-1024"), WeakKey, "RSA key of 1024 bits is too small"),
    "secp256k1": (lambda: make_csr("secp256k1"), WeakKey, "elliptic curve secp256k1 is not allowed"),
    "ed25519-for-tls-server": (lambda: make_csr("ed25519"), WeakKey, "does not allow ed25519 keys"),
    "name-not-allowed": (
        lambda: make_csr(subject="CN=x", sans=[x509.RFC822Name("a@example.test")]),
        NameNotAllowed,
        "email:a@example.test is not allowed by profile tls-server",
    ),
    "invalid-dns-name": (
        lambda: make_csr(sans=[x509.DNSName("bad_name.example.test")]),
        NameNotAllowed,
        "invalid label 'bad_name'",
    ),
    "unknown-critical-extension": (
        lambda: make_csr(extensions=[(UNKNOWN_CRITICAL, True)]),
        UnsupportedExtension,
        "unknown critical extension 1.3.6.1.4.1.55555.7",
    ),
    "oversized": (_oversized_csr, InvalidCSR, r"CSR is \d+ bytes; the limit is 16384"),
}


def _rows() -> tuple[int, int, int]:
    return Certificate.objects.count(), CertificateRequest.objects.count(), AuditEvent.objects.count()


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
@pytest.mark.parametrize("entry", ["submit_request", "sign_csr"])
def test_bad_input_gets_a_domain_error_and_writes_nothing(issuing_ca, profile, case, entry):
    build, error, message = BAD_INPUTS[case]
    csr = build()
    before = _rows()
    use_case = submit_request if entry == "submit_request" else sign_csr
    with pytest.raises(error, match=message):
        use_case(ca=issuing_ca, profile=profile("tls-server"), csr=csr, actor="t", now=NOW)
    assert _rows() == before


def test_validity_past_cap_writes_nothing(issuing_ca, profile):
    before = _rows()
    with pytest.raises(PolicyViolation, match="validity of 398 days exceeds profile tls-server's cap of 397"):
        sign_csr(
            ca=issuing_ca,
            profile=profile("tls-server"),
            csr=make_csr(),
            actor="t",
            validity_days=398,
            now=NOW,
        )
    assert _rows() == before


def test_known_critical_extension_is_accepted(issuing_ca, profile):
    bc = x509.BasicConstraints(ca=False, path_length=None)
    cert = sign_csr(
        ca=issuing_ca,
        profile=profile("tls-server"),
        csr=make_csr(extensions=[(bc, True)]),
        actor="t",
        now=NOW,
    )
    assert not cert.is_ca


def test_csr_asking_for_a_ca_is_refused(issuing_ca, profile):
    bc = x509.BasicConstraints(ca=True, path_length=None)
    with pytest.raises(PolicyViolation, match="the CSR asks for a CA"):
        sign_csr(
            ca=issuing_ca,
            profile=profile("tls-server"),
            csr=make_csr(extensions=[(bc, True)]),
            actor="t",
            now=NOW,
        )


def test_max_csr_bytes_comes_from_settings(issuing_ca, profile, settings):
    from pki import conf

    settings.KMI = {**settings.KMI, "MAX_CSR_BYTES": 300}
    conf.reset()
    try:
        with pytest.raises(InvalidCSR, match="the limit is 300"):
            submit_request(ca=issuing_ca, profile=profile("tls-server"), csr=make_csr(), actor="t", now=NOW)
    finally:
        settings.KMI = {**settings.KMI, "MAX_CSR_BYTES": 16384}
        conf.reset()


# --- requests and renewal -----------------------------------------------------------------------
def test_only_approved_requests_are_issued_and_only_pending_ones_reviewed(issuing_ca, profile):
    from pki.issuance import approve_request, reject_request

    req = submit_request(
        ca=issuing_ca,
        profile=profile("code-signing"),
        csr=make_csr("rsa-3072", subject="CN=Rel"),
        actor="t",
        now=NOW,
    )
    with pytest.raises(InvalidState, match=f"request {req.pk} is pending, not approved"):
        issue_certificate(request=req, actor="t", now=NOW)
    approved = approve_request(request=req, actor="officer", now=NOW)
    with pytest.raises(InvalidState, match="is approved, not pending"):
        approve_request(request=approved, actor="officer", now=NOW)
    with pytest.raises(InvalidState, match="is approved, not pending"):
        reject_request(request=approved, reason="late", actor="officer", now=NOW)
    cert = issue_certificate(request=approved, actor="officer", now=NOW)
    assert cert.request == approved
    with pytest.raises(ValueError, match="needs a request, or a ca, a profile and a csr"):
        issue_certificate(ca=issuing_ca, actor="t", now=NOW)


def test_approval_rechecks_the_current_policy(issuing_ca, profile):
    from pki.issuance import approve_request

    signing = profile("code-signing")
    req = submit_request(
        ca=issuing_ca, profile=signing, csr=make_csr("rsa-3072", subject="CN=Rel"), actor="t", now=NOW
    )
    signing.min_rsa_bits = 4096
    signing.save()
    with pytest.raises(WeakKey, match="below profile code-signing's minimum of 4096"):
        approve_request(request=req, actor="officer", now=NOW)
    req.refresh_from_db()
    assert req.state == RequestState.PENDING


def test_renewal_keeps_names_and_key_and_links_back(issuing_ca, profile):
    from pki.issuance import chain_for, renew_certificate

    old = sign_csr(ca=issuing_ca, profile=profile("tls-server"), csr=make_csr(), actor="t", now=NOW)
    later = NOW + dt.timedelta(days=60)
    new = renew_certificate(certificate=old, actor="t", now=later)
    assert (new.renewed_from, new.key_fingerprint, new.san_text) == (old, old.key_fingerprint, old.san_text)
    assert new.not_before > old.not_before
    assert [c.subject.rfc4514_string() for c in chain_for(new)] == [
        "CN=www.example.test",
        "CN=KMI Issuing CA,O=KMI",
        "CN=KMI Test Root,O=KMI",
    ]
    assert AuditEvent.objects.filter(action="certificate.renewed", object_id=str(new.pk)).exists()


def test_renewal_with_a_new_key_may_not_add_names(issuing_ca, profile):
    from pki.issuance import renew_certificate

    old = sign_csr(ca=issuing_ca, profile=profile("tls-server"), csr=make_csr(), actor="t", now=NOW)
    wider = make_csr("ec-p256-b", sans=[x509.DNSName("www.example.test"), x509.DNSName("admin.example.test")])
    before = _rows()
    with pytest.raises(PolicyViolation, match=r"renewal may not add names: dns:admin\.example\.test"):
        renew_certificate(certificate=old, csr=wider, actor="t", now=NOW)
    assert _rows() == before


def test_renewal_refuses_ca_certificates_and_names_the_policy_no_longer_allows(issuing_ca, profile):
    from pki.issuance import renew_certificate

    with pytest.raises(InvalidState, match="renewed by CA rollover"):
        renew_certificate(certificate=issuing_ca.own_certificate(), actor="t", now=NOW)
    server = profile("tls-server")
    old = sign_csr(ca=issuing_ca, profile=server, csr=make_csr(), actor="t", now=NOW)
    server.allowed_names = ["dns:*.internal.test"]
    server.save()
    with pytest.raises(
        PolicyViolation, match=r"dns:www\.example\.test is no longer allowed by profile tls-server"
    ):
        renew_certificate(certificate=old, actor="t", now=NOW)


@pytest.mark.parametrize(
    ("profile_name", "csr_args"),
    [
        ("tls-server", {}),  # auto-approved: enroll's one statement
        (
            "code-signing",
            {"key_name": "rsa-3072", "subject": "CN=Release Signing,O=KMI"},
        ),  # approved by the operator
    ],
)
def test_sign_csr_is_one_transaction_a_signing_failure_leaves_no_request(
    issuing_ca, profile, monkeypatch, profile_name, csr_args
):
    from pki.keys.encrypted import EncryptedKeyBackend

    def broken(*_args, **_kwargs):
        raise RuntimeError("the key backend failed while signing")

    requests, events = CertificateRequest.objects.count(), AuditEvent.objects.count()
    monkeypatch.setattr(EncryptedKeyBackend, "sign_certificate", broken)
    with pytest.raises(RuntimeError, match="while signing"):
        sign_csr(ca=issuing_ca, profile=profile(profile_name), csr=make_csr(**csr_args), actor="t")
    assert (CertificateRequest.objects.count(), AuditEvent.objects.count()) == (requests, events)
