"""EST (RFC 7030) in process: labels, codes, enroll, re-enroll, csrattrs, serverkeygen, errors."""

from __future__ import annotations

import base64
import email
import email.policy
from collections.abc import Callable
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7
from django.core.management import call_command
from django.test import Client

from pki.enrollment import approve_and_issue
from pki.est.labels import IssuedCode, create_enrollment_codes, create_est_label
from pki.exceptions import AlreadyExists, PolicyViolation
from pki.issuance import approve_request
from pki.models import (
    AuditEvent,
    Certificate,
    CertificateAuthority,
    CertificateRequest,
    EnrollmentCode,
    EstLabel,
    Profile,
)
from pki.profile_changes import update_profile
from pki.revocation import revoke_certificate
from tests.conftest import make_csr
from tests.interop.pkix import pkix_findings
from web.protocols.devices import ENVIRON_CLIENT_CERT

pytestmark = pytest.mark.django_db

P10 = "application/pkcs10"


def basic(code: IssuedCode) -> dict[str, str]:
    token = base64.b64encode(f"{code.code_id}:{code.secret}".encode()).decode()
    return {"HTTP_AUTHORIZATION": f"Basic {token}"}


def b64_csr(pem: bytes) -> bytes:
    der = x509.load_pem_x509_csr(pem).public_bytes(serialization.Encoding.DER)
    return base64.encodebytes(der)


def certs_of(body: bytes) -> list[x509.Certificate]:
    return pkcs7.load_der_pkcs7_certificates(base64.b64decode(b"".join(body.split())))


@pytest.fixture
def label(issuing_ca: CertificateAuthority, profile: Callable[[str], Profile]) -> EstLabel:
    return create_est_label(
        name="devices", ca=issuing_ca, profile=profile("tls-client"), client_cas=[issuing_ca], actor="test"
    )


def code_for(label: EstLabel) -> IssuedCode:
    return create_enrollment_codes(label=label, actor="test")[0]


def test_cacerts_is_the_chain_as_base64_certs_only(label: EstLabel, issuing_ca: CertificateAuthority) -> None:
    response = Client().get("/.well-known/est/devices/cacerts")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pkcs7-mime"
    assert response["Content-Transfer-Encoding"] == "base64"
    certs = certs_of(response.content)
    # A SET OF in DER order: the issuing CA and its root.
    assert issuing_ca.x509_certificate() in certs
    assert len(certs) == 2
    assert any(c.subject == c.issuer for c in certs)


def test_simpleenroll_with_a_code_issues_once_and_audits_the_device(label: EstLabel) -> None:
    code = code_for(label)
    csr = b64_csr(make_csr("ec-p256", subject="CN=device-1.example.test"))
    response = Client().post("/.well-known/est/devices/simpleenroll", csr, content_type=P10, **basic(code))
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/pkcs7-mime; smime-type=certs-only"
    (cert,) = certs_of(response.content)
    assert pkix_findings(cert) == []
    row = Certificate.objects.get(serial=format(cert.serial_number, "x"))
    actor = f"est:devices/code:{code.code_id}"
    assert AuditEvent.objects.filter(action="certificate.issued", actor=actor, object_id=str(row.pk)).exists()
    assert EnrollmentCode.objects.get(pk=code.code_id).used_at is not None
    # The code is used up: another key is refused, the same request again gets the same certificate.
    again = Client().post("/.well-known/est/devices/simpleenroll", csr, content_type=P10, **basic(code))
    assert certs_of(again.content) == [cert]
    other = b64_csr(make_csr("ec-p384", subject="CN=device-2.example.test"))
    refused = Client().post("/.well-known/est/devices/simpleenroll", other, content_type=P10, **basic(code))
    assert refused.status_code == 401
    assert refused["WWW-Authenticate"].startswith("Basic")
    # Revocable like any other.
    revoke_certificate(certificate=row, reason="keyCompromise", actor="test")


def test_bad_credentials_and_bad_bodies_write_nothing(label: EstLabel) -> None:
    code = code_for(label)
    csr = b64_csr(make_csr("ec-p256", subject="CN=device-1.example.test"))
    wrong = IssuedCode(code.code_id, "not-the-code", code.not_after)
    client = Client()
    assert client.post("/.well-known/est/devices/simpleenroll", csr, content_type=P10).status_code == 401
    assert (
        client.post(
            "/.well-known/est/devices/simpleenroll", csr, content_type=P10, **basic(wrong)
        ).status_code
        == 401
    )
    bad = client.post("/.well-known/est/devices/simpleenroll", b"%%%", content_type=P10, **basic(code))
    assert bad.status_code == 400
    garbage = client.post(
        "/.well-known/est/devices/simpleenroll",
        base64.b64encode(b"0\x03\x02\x01"),
        content_type=P10,
        **basic(code),
    )
    assert garbage.status_code == 400
    assert client.get("/.well-known/est/nope/cacerts").status_code == 404
    assert client.get("/.well-known/est/devices/simpleenroll").status_code == 405
    assert client.get("/.well-known/est/devices/fullcmc").status_code == 501
    assert Certificate.objects.filter(ca=label.ca, is_ca=False).count() == 0
    assert EnrollmentCode.objects.get(pk=code.code_id).used_at is None


def test_expired_code_is_refused(label: EstLabel) -> None:
    code = code_for(label)
    EnrollmentCode.objects.filter(pk=code.code_id).update(not_after="2000-01-01T00:00:00Z")
    csr = b64_csr(make_csr("ec-p256", subject="CN=device-1.example.test"))
    response = Client().post("/.well-known/est/devices/simpleenroll", csr, content_type=P10, **basic(code))
    assert response.status_code == 401
    assert "expired" in response.content.decode()


def test_approval_profile_answers_202_then_the_certificate(
    issuing_ca: CertificateAuthority, profile: Callable[[str], Profile]
) -> None:
    label = create_est_label(name="signing", ca=issuing_ca, profile=profile("code-signing"), actor="test")
    code = code_for(label)
    csr = b64_csr(make_csr("rsa-3072", subject="CN=Build Robot"))
    client = Client()
    first = client.post("/.well-known/est/signing/simpleenroll", csr, content_type=P10, **basic(code))
    assert first.status_code == 202
    assert int(first["Retry-After"]) > 0
    request = EnrollmentCode.objects.get(pk=code.code_id).request
    assert request is not None
    assert (
        client.post("/.well-known/est/signing/simpleenroll", csr, content_type=P10, **basic(code)).status_code
        == 202
    )
    from pki.issuance import issue_certificate

    issue_certificate(request=approve_request(request=request, actor="ops"), actor="ops")
    done = client.post("/.well-known/est/signing/simpleenroll", csr, content_type=P10, **basic(code))
    assert done.status_code == 200
    assert certs_of(done.content)[0].subject.rfc4514_string() == "CN=Build Robot"


def _enroll(label: EstLabel, key: str, subject: str) -> x509.Certificate:
    csr = b64_csr(make_csr(key, subject=subject))
    response = Client().post(
        f"/.well-known/est/{label.name}/simpleenroll", csr, content_type=P10, **basic(code_for(label))
    )
    assert response.status_code == 200, response.content
    return certs_of(response.content)[0]


def tls(cert: x509.Certificate) -> dict[str, Any]:
    return {ENVIRON_CLIENT_CERT: cert.public_bytes(serialization.Encoding.DER)}


def test_simplereenroll_with_the_old_certificate_keeps_the_subject(label: EstLabel) -> None:
    old = _enroll(label, "ec-p256", "CN=device-1.example.test")
    client = Client()
    same = b64_csr(make_csr("ec-p384", subject="CN=device-1.example.test"))
    response = client.post("/.well-known/est/devices/simplereenroll", same, content_type=P10, **tls(old))
    assert response.status_code == 200, response.content
    (new,) = certs_of(response.content)
    assert new.subject == old.subject
    assert new.serial_number != old.serial_number
    row = Certificate.objects.get(serial=format(new.serial_number, "x"))
    assert row.renewed_from is not None
    assert row.renewed_from.serial == format(old.serial_number, "x")
    fp = row.renewed_from.fingerprint_sha256[:16]
    assert AuditEvent.objects.filter(action="certificate.renewed", actor=f"est:devices/cert:{fp}").exists()
    other = b64_csr(make_csr("ec-p384", subject="CN=someone-else.example.test"))
    refused = client.post("/.well-known/est/devices/simplereenroll", other, content_type=P10, **tls(new))
    assert refused.status_code == 403
    assert client.post("/.well-known/est/devices/simplereenroll", same, content_type=P10).status_code == 401


def test_simplereenroll_under_approval_is_202_until_approved_then_the_successor(label: EstLabel) -> None:
    old = _enroll(label, "ec-p256", "CN=device-1.example.test")
    update_profile(profile=label.profile, changes={"requires_approval": True}, actor="test")
    client = Client()
    csr = b64_csr(make_csr("ec-p384", subject="CN=device-1.example.test"))
    url = "/.well-known/est/devices/simplereenroll"
    first = client.post(url, csr, content_type=P10, **tls(old))
    assert first.status_code == 202, first.content
    assert int(first["Retry-After"]) > 0
    # The device repeats its request (RFC 7030 §4.2.3): the same pending request, not a second.
    assert client.post(url, csr, content_type=P10, **tls(old)).status_code == 202
    (pending,) = CertificateRequest.objects.filter(renews__isnull=False)
    assert Certificate.objects.filter(renewed_from__isnull=False).count() == 0
    approve_and_issue(request=pending, actor="ops")
    done = client.post(url, csr, content_type=P10, **tls(old))
    assert done.status_code == 200, done.content
    (new,) = certs_of(done.content)
    assert new.subject == old.subject
    assert new.public_key() == x509.load_pem_x509_csr(make_csr("ec-p384")).public_key()
    row = Certificate.objects.get(serial=format(new.serial_number, "x"))
    assert row.renewed_from is not None
    assert row.renewed_from.serial == format(old.serial_number, "x")
    assert CertificateRequest.objects.filter(renews__isnull=False).count() == 1


def test_a_revoked_client_certificate_no_longer_authenticates(label: EstLabel) -> None:
    old = _enroll(label, "ec-p256", "CN=device-1.example.test")
    revoke_certificate(
        certificate=Certificate.objects.get(serial=format(old.serial_number, "x")),
        reason="superseded",
        actor="t",
    )
    csr = b64_csr(make_csr("ec-p256", subject="CN=device-1.example.test"))
    response = Client().post("/.well-known/est/devices/simplereenroll", csr, content_type=P10, **tls(old))
    assert response.status_code == 401


def test_simpleenroll_with_a_trusted_client_certificate(label: EstLabel) -> None:
    old = _enroll(label, "ec-p256", "CN=device-1.example.test")
    csr = b64_csr(make_csr("ed25519", subject="CN=device-1-second.example.test"))
    response = Client().post("/.well-known/est/devices/simpleenroll", csr, content_type=P10, **tls(old))
    assert response.status_code == 200, response.content


def test_proxy_header_is_trusted_only_with_the_proxy_secret(label: EstLabel, settings: Any) -> None:
    from urllib.parse import quote

    old = _enroll(label, "ec-p256", "CN=device-1.example.test")
    header = quote(old.public_bytes(serialization.Encoding.PEM).decode())
    csr = b64_csr(make_csr("ec-p256", subject="CN=device-1.example.test"))
    settings.KMI_DEVICES = {"EST_PROXY_SECRET": "s3cret-from-the-proxy", "RETRY_AFTER": 60}
    client = Client()
    url = "/.well-known/est/devices/simplereenroll"
    forged = client.post(url, csr, content_type=P10, HTTP_X_KMI_CLIENT_CERT=header)
    assert forged.status_code == 401
    wrong = client.post(
        url, csr, content_type=P10, HTTP_X_KMI_CLIENT_CERT=header, HTTP_X_KMI_PROXY_SECRET="guess"
    )
    assert wrong.status_code == 401
    ok = client.post(
        url,
        csr,
        content_type=P10,
        HTTP_X_KMI_CLIENT_CERT=header,
        HTTP_X_KMI_PROXY_SECRET="s3cret-from-the-proxy",
    )
    assert ok.status_code == 200, ok.content


def test_csrattrs_follow_the_profile(label: EstLabel) -> None:
    response = Client().get("/.well-known/est/devices/csrattrs")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/csrattrs"
    der = base64.b64decode(b"".join(response.content.split()))
    from asn1crypto import core

    parsed = core.Sequence.load(der)
    assert len(parsed) >= 3


def test_serverkeygen_returns_key_and_certificate_over_tls_only(
    issuing_ca: CertificateAuthority, profile: Callable[[str], Profile]
) -> None:
    label = create_est_label(
        name="keys", ca=issuing_ca, profile=profile("tls-client"), serverkeygen=True, actor="test"
    )
    csr = b64_csr(make_csr("ec-p256", subject="CN=sensor-7.example.test"))
    plain = Client().post(
        "/.well-known/est/keys/serverkeygen", csr, content_type=P10, **basic(code_for(label))
    )
    assert plain.status_code == 403
    response = Client().post(
        "/.well-known/est/keys/serverkeygen", csr, content_type=P10, secure=True, **basic(code_for(label))
    )
    assert response.status_code == 200, response.content
    message = email.message_from_bytes(
        f"Content-Type: {response['Content-Type']}\r\n\r\n".encode() + response.content,
        policy=email.policy.HTTP,
    )
    key_part, cert_part = list(message.iter_parts())
    assert key_part.get_content_type() == "application/pkcs8"
    key = serialization.load_der_private_key(base64.b64decode(key_part.get_payload()), None)
    (cert,) = pkcs7.load_der_pkcs7_certificates(base64.b64decode(cert_part.get_payload()))
    assert cert.public_key() == key.public_key()
    no = create_est_label(name="nokeys", ca=issuing_ca, profile=profile("tls-client"), actor="test")
    refused = Client().post(
        "/.well-known/est/nokeys/serverkeygen", csr, content_type=P10, secure=True, **basic(code_for(no))
    )
    assert refused.status_code == 403


def test_label_names_and_duplicates_are_refused(
    label: EstLabel, issuing_ca: CertificateAuthority, profile: Callable[[str], Profile]
) -> None:
    with pytest.raises(AlreadyExists):
        create_est_label(name="devices", ca=issuing_ca, profile=profile("tls-client"), actor="t")
    for bad in ("simpleenroll", "Upper", "a/b", ""):
        with pytest.raises(PolicyViolation):
            create_est_label(name=bad, ca=issuing_ca, profile=profile("tls-client"), actor="t")
    with pytest.raises(PolicyViolation):
        create_est_label(name="cas", ca=issuing_ca, profile=profile("sub-ca"), actor="t")
    with pytest.raises(PolicyViolation):
        create_enrollment_codes(label=label, actor="t", count=0)
    assert EstLabel.objects.count() == 1


def test_commands_create_a_label_and_print_codes(issuing_ca: CertificateAuthority, capsys: Any) -> None:
    call_command(
        "create_est_label", "--name", "fleet", "--ca", "issuing", "--profile", "tls-client", "--default"
    )
    call_command("create_enrollment_code", "--label", "fleet", "--expires-days", "2", "--count", "3")
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("created EST label fleet:")
    assert len(lines) == 4
    code_id, secret = lines[1].split()
    csr = b64_csr(make_csr("ec-p256", subject="CN=device-9.example.test"))
    token = base64.b64encode(f"{code_id}:{secret}".encode()).decode()
    response = Client().post(
        "/.well-known/est/simpleenroll", csr, content_type=P10, HTTP_AUTHORIZATION=f"Basic {token}"
    )
    assert response.status_code == 200, response.content


def test_a_csr_bound_to_another_tls_connection_is_refused(label: EstLabel) -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import AttributeOID

    from tests.conftest import load_key
    from web.protocols.devices import ENVIRON_TLS_UNIQUE

    def bound(value: bytes) -> bytes:
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "device-1.example.test")]))
            .add_attribute(AttributeOID.CHALLENGE_PASSWORD, base64.b64encode(value))
            .sign(load_key("ec-p256"), hashes.SHA256())  # type: ignore[arg-type]
        )
        return base64.encodebytes(csr.public_bytes(serialization.Encoding.DER))

    url = "/.well-known/est/devices/simpleenroll"
    tls_unique = {ENVIRON_TLS_UNIQUE: b"finished-message-1"}
    other = Client().post(
        url, bound(b"finished-message-2"), content_type=P10, **basic(code_for(label)), **tls_unique
    )
    assert other.status_code == 401
    assert "tls-unique" in other.content.decode()
    same = Client().post(
        url, bound(b"finished-message-1"), content_type=P10, **basic(code_for(label)), **tls_unique
    )
    assert same.status_code == 200, same.content
