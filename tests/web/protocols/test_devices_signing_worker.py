"""EST and SCEP with KMI_SIGNING=worker: web processes without a KEK enroll through a real signing worker.

One Celery worker (holding the KEK) and a private ``redis-server`` in this engineer's port range run
for the module; every EST or SCEP call is made by a fresh web-side process (``web.settings``, no
KEK, ``KMI_SIGNING=worker``). Labels, codes and approvals are made here, as the CLI makes them.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7

from pki.est.labels import IssuedCode, create_enrollment_codes, create_est_label
from pki.issuance import approve_request
from pki.models import (
    AuditEvent,
    Certificate,
    CertificateAuthority,
    CertificateRequest,
    EnrollmentCode,
    EstLabel,
    Profile,
    RequestState,
)
from tests.conftest import make_csr
from tests.support.processes import SigningWorker, delete_prefixed_keys, web_side_http
from web.protocols.devices import ENVIRON_CLIENT_CERT

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

PORTS = (25000, 25049)
P10 = "application/pkcs10"


@pytest.fixture
def label(issuing_ca: CertificateAuthority, profile: Callable[[str], Profile]) -> EstLabel:
    return create_est_label(name="devices", ca=issuing_ca, profile=profile("tls-client"), actor="test")


def _est(
    env: dict[str, str],
    operation: str,
    csr: bytes,
    *,
    code: IssuedCode | None = None,
    client_cert: x509.Certificate | None = None,
    label: str = "devices",
) -> dict[str, Any]:
    der = x509.load_pem_x509_csr(csr).public_bytes(serialization.Encoding.DER)
    spec: dict[str, Any] = {
        "method": "POST",
        "path": f"/.well-known/est/{label}/{operation}",
        "content_type": P10,
        "body_b64": base64.b64encode(base64.encodebytes(der)).decode(),
    }
    if code is not None:
        basic = base64.b64encode(f"{code.code_id}:{code.secret}".encode()).decode()
        spec["headers"] = {"Authorization": f"Basic {basic}"}
    if client_cert is not None:
        pem = client_cert.public_bytes(serialization.Encoding.DER)
        spec["environ_b64"] = {ENVIRON_CLIENT_CERT: base64.b64encode(pem).decode()}
    return web_side_http(env, spec)


def _certificate(response: dict[str, Any]) -> x509.Certificate:
    assert response["status"] == 200, response["body"]
    (cert,) = pkcs7.load_der_pkcs7_certificates(base64.b64decode(b"".join(response["body"].split())))
    return cert


def test_est_enrolls_and_reenrolls_through_the_signing_worker(
    signing_set: SigningWorker, label: EstLabel
) -> None:
    env = signing_set.web_env()
    code, other = create_enrollment_codes(label=label, actor="test", count=2)
    csr = make_csr("ec-p256", subject="CN=device-1.example.test")
    first = _est(env, "simpleenroll", csr, code=code)
    assert first["web_has_kek"] is False
    cert = _certificate(first)
    row = Certificate.objects.get(serial=format(cert.serial_number, "x"))
    assert EnrollmentCode.objects.get(pk=code.code_id).request_id == row.request_id
    actor = f"est:devices/code:{code.code_id}"
    assert sorted(AuditEvent.objects.filter(actor=actor).values_list("action", flat=True)) == [
        "certificate.issued",
        "request.submitted",
    ]
    # One-time: another key with the used code is refused, the same request again is answered.
    assert (
        _est(env, "simpleenroll", make_csr("ec-p384", subject="CN=x.example.test"), code=code)["status"]
        == 401
    )
    assert _certificate(_est(env, "simpleenroll", csr, code=code)) == cert
    assert Certificate.objects.filter(profile=label.profile).count() == 1

    renewed = _certificate(
        _est(env, "simplereenroll", make_csr("ec-p384", subject="CN=device-1.example.test"), client_cert=cert)
    )
    assert Certificate.objects.get(serial=format(renewed.serial_number, "x")).renewed_from_id == row.pk
    assert other.code_id  # unused: a second device's code stays valid
    assert EnrollmentCode.objects.get(pk=other.code_id).used_at is None


def test_est_request_approved_by_an_operator_is_issued_by_the_worker_on_the_repeat(
    signing_set: SigningWorker, issuing_ca: CertificateAuthority, profile: Callable[[str], Profile]
) -> None:
    env = signing_set.web_env()
    create_est_label(name="signing", ca=issuing_ca, profile=profile("code-signing"), actor="test")
    label = EstLabel.objects.get(name="signing")
    (code,) = create_enrollment_codes(label=label, actor="test")
    csr = make_csr("rsa-3072", subject="CN=Build Robot")
    pending = _est(env, "simpleenroll", csr, code=code, label="signing")
    assert pending["status"] == 202, pending["body"]
    assert int(pending["headers"]["Retry-After"]) > 0
    request = CertificateRequest.objects.get()
    approve_request(request=request, actor="ops")  # approved; nobody has issued it yet
    done = _certificate(_est(env, "simpleenroll", csr, code=code, label="signing"))
    assert done.subject.rfc4514_string() == "CN=Build Robot"
    assert CertificateRequest.objects.get().state == RequestState.ISSUED


def test_est_with_no_signing_worker_answering_is_503_and_the_repeat_issues_the_stored_request(
    signing_set: SigningWorker, label: EstLabel
) -> None:
    (code,) = create_enrollment_codes(label=label, actor="test")
    csr = make_csr("ec-p256", subject="CN=device-1.example.test")
    lonely = f"kmi-test-{uuid.uuid4().hex[:10]}:"  # a broker namespace no worker listens on
    env = signing_set.web_env(KMI_SIGNING_TIMEOUT="1", KMI_REDIS_KEY_PREFIX=lonely)
    try:
        failed = _est(env, "simpleenroll", csr, code=code)
    finally:
        delete_prefixed_keys(signing_set.redis_url, lonely)
    assert failed["status"] == 503, failed["body"]
    assert failed["headers"]["Retry-After"]
    stored = CertificateRequest.objects.get()
    assert stored.state == RequestState.APPROVED  # acknowledged and kept, the code used by it
    assert EnrollmentCode.objects.get(pk=code.code_id).request_id == stored.pk
    retried = _certificate(_est(signing_set.web_env(), "simpleenroll", csr, code=code))
    assert Certificate.objects.get(serial=format(retried.serial_number, "x")).request_id == stored.pk
    assert CertificateRequest.objects.count() == 1


def test_scep_on_a_web_process_without_the_kek_is_answered_by_the_signer(
    signing_set: SigningWorker, issuing_ca: CertificateAuthority, profile: Callable[[str], Profile]
) -> None:
    """The web process cannot open the RA envelope nor sign a CertRep: the signer answers the
    PKIOperation (a ``scep_operation`` job); a body that is no pkiMessage is still a 400."""
    from pki.models import SigningJob
    from pki.scep import messages as m
    from pki.scep.labels import create_scep_challenge, create_scep_label
    from tests.conftest import load_key
    from tests.support import scep as client

    label = create_scep_label(name="mdm", ca=issuing_ca, profile=profile("tls-client"), actor="t")
    challenge = create_scep_challenge(label=label, actor="t")
    ra = label.ra_certificate.x509()
    key = load_key("rsa-2048")
    signer = client.self_signed(key)
    body = client.pki_message(
        message_type=m.MessageType.PKCS_REQ,
        transaction_id="tx-1",
        content=client.csr_der(key, "device-1", challenge),
        recipient=ra,
        signer=signer,
        key=key,
    )

    def post(payload: bytes) -> Any:
        spec = {
            "method": "POST",
            "path": "/scep/mdm?operation=PKIOperation",
            "content_type": "application/x-pki-message",
            "body_b64": base64.b64encode(payload).decode(),
        }
        return web_side_http(signing_set.web_env(), spec)

    response = post(body)
    assert response["status"] == 200, response["body"]
    assert response["web_has_kek"] is False
    reply = client.read_cert_rep(response["body"], ra=ra, recipient=signer, key=key)
    assert reply.status == m.PkiStatus.SUCCESS
    (cert,) = reply.certificates
    row = Certificate.objects.get(serial=format(cert.serial_number, "x"))
    assert row.request is not None
    assert row.request.requested_by.startswith("scep:mdm/challenge:")
    assert SigningJob.objects.filter(use_case="scep_operation").exists()

    garbage = post(b"not a pkiMessage")
    assert garbage["status"] == 400, garbage["body"]
    assert Certificate.objects.filter(ca=issuing_ca, profile__name="tls-client").count() == 1


def test_scep_enrolls_and_renews_through_the_signing_worker(
    signing_set: SigningWorker, issuing_ca: CertificateAuthority, profile: Callable[[str], Profile]
) -> None:
    """A web process without the KEK: PKCSReq and RenewalReq go to the signer, which opens the
    envelope, issues and signs the CertRep."""
    from pki.scep import messages as m
    from pki.scep.labels import create_scep_challenge, create_scep_label
    from tests.conftest import load_key
    from tests.support import scep as client

    label = create_scep_label(name="mdm", ca=issuing_ca, profile=profile("tls-client"), actor="t")
    ra = label.ra_certificate.x509()
    env = signing_set.web_env()

    def operation(message_type: int, content: bytes, signer: x509.Certificate, key: Any, tx: str) -> Any:
        body = client.pki_message(
            message_type=message_type,
            transaction_id=tx,
            content=content,
            recipient=ra,
            signer=signer,
            key=key,
        )
        spec = {
            "method": "POST",
            "path": "/scep/mdm?operation=PKIOperation",
            "content_type": "application/x-pki-message",
            "body_b64": base64.b64encode(body).decode(),
        }
        response = web_side_http(env, spec)
        assert response["status"] == 200, response["body"]
        return client.read_cert_rep(response["body"], ra=ra, recipient=signer, key=key)

    key = load_key("rsa-2048")
    signer = client.self_signed(key)
    challenge = create_scep_challenge(label=label, actor="t")
    first = operation(m.MessageType.PKCS_REQ, client.csr_der(key, "device-1", challenge), signer, key, "tx-1")
    assert first.status == m.PkiStatus.SUCCESS
    (cert,) = first.certificates
    row = Certificate.objects.get(serial=format(cert.serial_number, "x"))
    assert AuditEvent.objects.filter(action="certificate.issued", object_id=str(row.pk)).exists()

    new_key = load_key("rsa-3072")
    renewed = operation(m.MessageType.RENEWAL_REQ, client.csr_der(new_key, "device-1"), cert, key, "tx-2")
    assert renewed.status == m.PkiStatus.SUCCESS
    (successor,) = renewed.certificates
    assert successor.public_key() == new_key.public_key()
    assert Certificate.objects.get(serial=format(successor.serial_number, "x")).renewed_from_id == row.pk
