"""SCEP (RFC 8894) in process: GetCACaps, GetCACert, PKIOperation and its refusals, and a
hypothesis fuzz of malformed messages (never a 500, nothing issued)."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Callable
from typing import Any, cast

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs7
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pki.crl import publish_crl
from pki.enrollment import approve_and_issue
from pki.exceptions import AlreadyExists, PolicyViolation
from pki.models import AuditEvent, Certificate, CertificateAuthority, CertificateRequest, Profile, ScepLabel
from pki.profile_changes import update_profile
from pki.scep import messages as m
from pki.scep.labels import create_scep_challenge, create_scep_label
from tests.conftest import load_key
from tests.interop.pkix import pkix_findings
from tests.support import scep as client

pytestmark = pytest.mark.django_db

STATIC = "a-static-secret-of-the-fleet"


@pytest.fixture
def label(issuing_ca: CertificateAuthority, profile: Callable[[str], Profile]) -> ScepLabel:
    return create_scep_label(
        name="mdm", ca=issuing_ca, profile=profile("tls-client"), challenge=STATIC, actor="test"
    )


def rsa_key(name: str = "rsa-2048") -> rsa.RSAPrivateKey:
    return cast(rsa.RSAPrivateKey, load_key(name))


def post(label: ScepLabel, body: bytes) -> Any:
    return Client().post(
        f"/scep/{label.name}?operation=PKIOperation", body, content_type="application/x-pki-message"
    )


def enroll(
    label: ScepLabel,
    *,
    challenge: str,
    key: rsa.RSAPrivateKey | None = None,
    transaction_id: str = "tx-1",
    cn: str = "device-1",
    signer: x509.Certificate | None = None,
    **extra: Any,
) -> client.CertRep:
    key = key or rsa_key()
    # A device keeps its self-signed certificate for the whole transaction (retransmissions, polls).
    signer = signer or client.self_signed(key)
    ra = label.ra_certificate.x509()
    body = client.pki_message(
        message_type=m.MessageType.PKCS_REQ,
        transaction_id=transaction_id,
        content=client.csr_der(key, cn, challenge),
        recipient=ra,
        signer=signer,
        key=key,
        **extra,
    )
    response = post(label, body)
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/x-pki-message"
    return client.read_cert_rep(response.content, ra=ra, recipient=signer, key=key)


def test_getcacaps_and_getcacert_name_the_ra(label: ScepLabel, issuing_ca: CertificateAuthority) -> None:
    caps = Client().get("/scep/mdm?operation=GetCACaps")
    assert caps.status_code == 200
    assert {"AES", "SHA-256", "POSTPKIOperation", "Renewal"} <= set(caps.content.decode().split())
    certs = Client().get("/scep/mdm?operation=GetCACert")
    assert certs["Content-Type"] == "application/x-x509-ca-ra-cert"
    found = pkcs7.load_der_pkcs7_certificates(certs.content)
    ra = label.ra_certificate.x509()
    assert issuing_ca.x509_certificate() in found
    assert ra in found
    # The CA is EC: the RA certificate requests are encrypted to is RSA (RFC 8894 §2.1).
    assert isinstance(ra.public_key(), rsa.RSAPublicKey)
    assert pkix_findings(ra) == []
    assert label.ra_key.backend  # held by a KeyBackend like every KMI key
    assert Client().get("/scep/nope?operation=GetCACaps").status_code == 404
    assert Client().get("/scep/mdm?operation=Nonsense").status_code == 400


def test_pkcsreq_with_a_one_time_challenge_issues_once(label: ScepLabel) -> None:
    secret = create_scep_challenge(label=label, actor="test")
    signer = client.self_signed(rsa_key())
    reply = enroll(label, challenge=secret, signer=signer)
    assert reply.status == m.PkiStatus.SUCCESS
    assert reply.transaction_id == "tx-1"
    (cert,) = reply.certificates
    assert pkix_findings(cert) == []
    row = Certificate.objects.get(serial=format(cert.serial_number, "x"))
    assert AuditEvent.objects.filter(
        action="certificate.issued", actor__startswith="scep:mdm/challenge:", object_id=str(row.pk)
    ).exists()
    # A retransmission gets the same certificate; the used challenge does not enroll another key.
    assert enroll(label, challenge=secret, signer=signer).certificates == [cert]
    again = enroll(label, challenge=secret, key=rsa_key("rsa-3072"), transaction_id="tx-2")
    assert (again.status, again.fail_info) == (m.PkiStatus.FAILURE, m.FailInfo.BAD_REQUEST)
    assert Certificate.objects.filter(ca=label.ca, profile__name="tls-client").count() == 1


def test_static_challenge_and_wrong_challenge(label: ScepLabel) -> None:
    wrong = enroll(label, challenge="not-the-secret-at-all")
    assert (wrong.status, wrong.fail_info) == (m.PkiStatus.FAILURE, m.FailInfo.BAD_REQUEST)
    none = enroll(label, challenge="", transaction_id="tx-0")
    assert none.fail_info == m.FailInfo.BAD_REQUEST
    assert not Certificate.objects.filter(ca=label.ca, profile__name="tls-client").exists()
    ok = enroll(label, challenge=STATIC, transaction_id="tx-9")
    assert ok.status == m.PkiStatus.SUCCESS
    assert AuditEvent.objects.filter(action="certificate.issued", actor="scep:mdm/static").exists()


def test_renewalreq_signed_with_the_issued_certificate(label: ScepLabel) -> None:
    key = rsa_key()
    (cert,) = enroll(label, challenge=STATIC, key=key).certificates
    new_key = rsa_key("rsa-3072")
    ra = label.ra_certificate.x509()
    body = client.pki_message(
        message_type=m.MessageType.RENEWAL_REQ,
        transaction_id="tx-1",  # clients derive it from the key: the same as the first request
        content=client.csr_der(new_key, "device-1"),
        recipient=ra,
        signer=cert,
        key=key,
    )
    reply = client.read_cert_rep(post(label, body).content, ra=ra, recipient=cert, key=key)
    assert reply.status == m.PkiStatus.SUCCESS
    (renewed,) = reply.certificates
    assert renewed.public_key() == new_key.public_key()
    row = Certificate.objects.get(serial=format(renewed.serial_number, "x"))
    assert row.renewed_from is not None
    assert AuditEvent.objects.filter(
        action="certificate.renewed", actor__startswith="scep:mdm/cert:"
    ).exists()


def test_pending_request_is_polled_until_approved(
    issuing_ca: CertificateAuthority, profile: Callable[[str], Profile]
) -> None:
    label = create_scep_label(
        name="signing", ca=issuing_ca, profile=profile("code-signing"), challenge=STATIC, actor="t"
    )
    key = rsa_key("rsa-3072")
    signer = client.self_signed(key)
    ra = label.ra_certificate.x509()
    first = enroll(label, challenge=STATIC, key=key, transaction_id="poll-1", cn="Build Robot", signer=signer)
    assert first.status == m.PkiStatus.PENDING

    def poll() -> client.CertRep:
        body = client.pki_message(
            message_type=m.MessageType.CERT_POLL,
            transaction_id="poll-1",
            content=m._IssuerAndSubject(
                {
                    "issuer": m.asn1_x509.Name.load(issuing_ca.x509_certificate().subject.public_bytes()),
                    "subject": m.asn1_x509.Name.load(signer.subject.public_bytes()),
                }
            ).dump(),
            recipient=ra,
            signer=signer,
            key=key,
        )
        return client.read_cert_rep(post(label, body).content, ra=ra, recipient=signer, key=key)

    assert poll().status == m.PkiStatus.PENDING
    request = CertificateRequest.objects.get(requested_by="scep:signing/static")
    approve_and_issue(request=request, actor="ops")
    done = poll()
    assert done.status == m.PkiStatus.SUCCESS
    assert done.certificates[0].subject.rfc4514_string() == "CN=Build Robot"


def _poll(
    label: ScepLabel, transaction_id: str, signer: x509.Certificate, key: rsa.RSAPrivateKey
) -> client.CertRep:
    ra = label.ra_certificate.x509()
    body = client.pki_message(
        message_type=m.MessageType.CERT_POLL,
        transaction_id=transaction_id,
        content=m._IssuerAndSubject(
            {
                "issuer": m.asn1_x509.Name.load(label.ca.x509_certificate().subject.public_bytes()),
                "subject": m.asn1_x509.Name.load(signer.subject.public_bytes()),
            }
        ).dump(),
        recipient=ra,
        signer=signer,
        key=key,
    )
    return client.read_cert_rep(post(label, body).content, ra=ra, recipient=signer, key=key)


def test_renewalreq_under_approval_is_pending_until_approved_then_polled(label: ScepLabel) -> None:
    key = rsa_key()
    (cert,) = enroll(label, challenge=STATIC, key=key).certificates
    update_profile(profile=label.profile, changes={"requires_approval": True}, actor="test")
    ra = label.ra_certificate.x509()
    body = client.pki_message(
        message_type=m.MessageType.RENEWAL_REQ,
        transaction_id="renew-1",
        content=client.csr_der(rsa_key("rsa-3072"), "device-1"),
        recipient=ra,
        signer=cert,
        key=key,
    )
    first = client.read_cert_rep(post(label, body).content, ra=ra, recipient=cert, key=key)
    assert first.status == m.PkiStatus.PENDING
    assert _poll(label, "renew-1", cert, key).status == m.PkiStatus.PENDING
    (pending,) = CertificateRequest.objects.filter(renews__isnull=False)
    approve_and_issue(request=pending, actor="ops")
    done = _poll(label, "renew-1", cert, key)
    assert done.status == m.PkiStatus.SUCCESS
    (renewed,) = done.certificates
    assert renewed.public_key() == rsa_key("rsa-3072").public_key()
    assert Certificate.objects.get(serial=format(renewed.serial_number, "x")).renewed_from is not None
    assert CertificateRequest.objects.filter(renews__isnull=False).count() == 1


def _query(label: ScepLabel, message_type: int, serial: int) -> client.CertRep:
    key = rsa_key()
    signer = client.self_signed(key)
    ra = label.ra_certificate.x509()
    issuer = label.ca.x509_certificate().subject.public_bytes()
    content = m.cms.IssuerAndSerialNumber(
        {"issuer": m.asn1_x509.Name.load(issuer), "serial_number": serial}
    ).dump()
    body = client.pki_message(
        message_type=message_type,
        transaction_id=f"q-{message_type}-{serial}",
        content=content,
        recipient=ra,
        signer=signer,
        key=key,
    )
    return client.read_cert_rep(post(label, body).content, ra=ra, recipient=signer, key=key)


def test_getcert_and_getcrl(label: ScepLabel) -> None:
    (cert,) = enroll(label, challenge=STATIC).certificates
    assert _query(label, m.MessageType.GET_CERT, cert.serial_number).certificates == [cert]
    missing = _query(label, m.MessageType.GET_CERT, 12345)
    assert (missing.status, missing.fail_info) == (m.PkiStatus.FAILURE, m.FailInfo.BAD_CERT_ID)
    assert _query(label, m.MessageType.GET_CRL, cert.serial_number).fail_info == m.FailInfo.BAD_CERT_ID
    publish_crl(ca=label.ca, actor="test")
    (crl,) = _query(label, m.MessageType.GET_CRL, cert.serial_number).crls
    assert x509.load_der_x509_crl(crl).issuer == label.ca.x509_certificate().subject


def test_bad_time_bad_alg_and_bad_message_check(label: ScepLabel) -> None:
    stale = enroll(label, challenge=STATIC, signing_time=dt.datetime.now(dt.UTC) - dt.timedelta(days=3))
    assert stale.fail_info == m.FailInfo.BAD_TIME
    ec_key = cast(ec.EllipticCurvePrivateKey, load_key("ec-p256"))
    ec_signer = client.self_signed(ec_key)
    ra = label.ra_certificate.x509()
    body = client.pki_message(
        message_type=m.MessageType.PKCS_REQ,
        transaction_id="ec-1",
        content=b"unused",
        recipient=ra,
        signer=ec_signer,
        key=ec_key,
    )
    bad_alg = post(label, body)
    assert bad_alg.status_code == 200
    key = rsa_key()
    good = client.pki_message(
        message_type=m.MessageType.PKCS_REQ,
        transaction_id="t-1",
        content=client.csr_der(key, "device-1", STATIC),
        recipient=ra,
        signer=client.self_signed(key),
        key=key,
    )
    tampered = good[:-5] + bytes(b ^ 0xFF for b in good[-5:])  # the end of the signature
    for reply, expected in (
        (bad_alg.content, m.FailInfo.BAD_ALG),
        (post(label, tampered).content, m.FailInfo.BAD_MESSAGE_CHECK),
    ):
        info = m.cms.ContentInfo.load(reply)["content"]["signer_infos"][0]["signed_attrs"]
        attrs = {a["type"].dotted: a["values"][0] for a in info}
        assert int(attrs[m.FAIL_INFO].parse(m.core.PrintableString).native) == expected
    assert not Certificate.objects.filter(ca=label.ca, profile__name="tls-client").exists()


def test_garbage_is_400_and_get_with_base64_works(label: ScepLabel) -> None:
    assert post(label, b"").status_code == 400
    assert post(label, b"\x30\x03\x02\x01\x01").status_code == 400
    key = rsa_key()
    signer = client.self_signed(key)
    ra = label.ra_certificate.x509()
    body = client.pki_message(
        message_type=m.MessageType.PKCS_REQ,
        transaction_id="get-1",
        content=client.csr_der(key, "device-1", STATIC),
        recipient=ra,
        signer=signer,
        key=key,
    )
    message = base64.b64encode(body).decode()
    response = Client().get("/scep/mdm", {"operation": "PKIOperation", "message": message})
    assert response.status_code == 200
    assert (
        client.read_cert_rep(response.content, ra=ra, recipient=signer, key=key).status == m.PkiStatus.SUCCESS
    )


def test_label_creation_refuses_bad_input(
    label: ScepLabel, issuing_ca: CertificateAuthority, profile: Callable[[str], Profile]
) -> None:
    with pytest.raises(AlreadyExists):
        create_scep_label(name="mdm", ca=issuing_ca, profile=profile("tls-client"), actor="t")
    with pytest.raises(PolicyViolation):
        create_scep_label(
            name="short", ca=issuing_ca, profile=profile("tls-client"), challenge="short", actor="t"
        )
    with pytest.raises(PolicyViolation):
        create_scep_label(name="Bad Name", ca=issuing_ca, profile=profile("tls-client"), actor="t")
    assert ScepLabel.objects.count() == 1


@pytest.fixture
def valid_message(label: ScepLabel) -> bytes:
    key = rsa_key()
    return client.pki_message(
        message_type=m.MessageType.PKCS_REQ,
        transaction_id="fuzz-1",
        content=client.csr_der(key, "device-1", STATIC),
        recipient=label.ra_certificate.x509(),
        signer=client.self_signed(key),
        key=key,
    )


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_envelopes_never_500_and_issue_nothing(
    label: ScepLabel, valid_message: bytes, data: Any
) -> None:
    body = bytearray(valid_message)
    how = data.draw(st.sampled_from(["flip", "truncate", "splice", "random"]))
    if how == "flip":
        for _ in range(data.draw(st.integers(1, 8))):
            i = data.draw(st.integers(0, len(body) - 1))
            body[i] ^= data.draw(st.integers(1, 255))
    elif how == "truncate":
        body = body[: data.draw(st.integers(0, len(body) - 1))]
    elif how == "splice":
        i = data.draw(st.integers(0, len(body) - 1))
        body[i:i] = data.draw(st.binary(min_size=1, max_size=64))
    else:
        body = bytearray(data.draw(st.binary(max_size=512)))
    response = post(label, bytes(body))
    assert response.status_code in (200, 400)
    if bytes(body) != valid_message:
        issued = Certificate.objects.filter(ca=label.ca, profile__name="tls-client")
        # A flip inside the unsigned parts (e.g. the certificate's own signature bits the
        # message does not depend on) may still verify; anything issued must be the device's key.
        for row in issued:
            assert row.x509().public_key() == rsa_key().public_key()
