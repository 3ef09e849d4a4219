"""A web process with no KEK (``KMI_SIGNING=worker`` deployments): OCSP and the repository serve
what workers signed, never load a key, and ask the signing queue for what is missing."""

from __future__ import annotations

import datetime as dt
import io
from dataclasses import dataclass
from wsgiref.util import setup_testing_defaults

import pytest
import time_machine
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from pki.crl import publish_crl
from pki.enrollment import sign_csr
from pki.models import Certificate, CertificateAuthority, OCSPResponse
from pki.ocsp import Issuer, ensure_ocsp_responder, presign_responses
from pki.revocation import revoke_certificate
from pki.tasks import ocsp_presign
from tests.conftest import NOW, make_csr
from tests.ocsp_support import multi_request_der, request_der

pytestmark = pytest.mark.django_db

LATER = NOW + dt.timedelta(minutes=1)


@dataclass
class Leaves:
    ca: CertificateAuthority
    good: Certificate
    revoked: Certificate
    held: Certificate
    unsigned: Certificate  # issued after the workers last pre-signed


@pytest.fixture
def leaves(issuing_ca, profile, ocsp_env) -> Leaves:
    """Certificates of every status, pre-signed at NOW while the process still had its KEK."""
    tls = profile("tls-server")
    good, revoked, held = (
        sign_csr(ca=issuing_ca, profile=tls, csr=make_csr(key), actor="t", now=NOW)
        for key in ("ec-p256", "ec-p384", "ec-p521")
    )
    revoke_certificate(certificate=revoked, reason="keyCompromise", actor="t", now=NOW)
    revoke_certificate(certificate=held, reason="certificateHold", actor="t", now=NOW)
    assert presign_responses(ca=issuing_ca, actor="t", now=NOW) == 4  # three leaves + the responder
    unsigned = sign_csr(ca=issuing_ca, profile=tls, csr=make_csr("ec-p256-b"), actor="t", now=NOW)
    return Leaves(issuing_ca, good, revoked, held, unsigned)


def _post(request: bytes) -> tuple[int, bytes]:
    """POST through web.wsgi.application (the raw OCSP path in front of Django), as gunicorn does."""
    from web.wsgi import application

    environ: dict[str, object] = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/ocsp/issuing",
        "CONTENT_LENGTH": str(len(request)),
        "wsgi.input": io.BytesIO(request),
    }
    setup_testing_defaults(environ)
    started: list[str] = []
    body = b"".join(application(environ, lambda status, _headers: started.append(status)))
    return int(started[0].split()[0]), body


def _ask(leaves: Leaves, cert: Certificate, **kwargs) -> ocsp.OCSPResponse:
    with time_machine.travel(LATER, tick=False):
        status, body = _post(request_der(cert.x509(), leaves.ca.x509_certificate(), **kwargs))
    assert status == 200
    return ocsp.load_der_ocsp_response(body)


def _presign_requests(published) -> list[tuple[list[int], str]]:
    """(certificate ids, routing key) of every pki.ocsp_presign sent to the broker."""
    return [(body[0][0], routing_key) for name, routing_key, body in published if name == "pki.ocsp_presign"]


def test_nonce_request_gets_the_presigned_response_without_loading_a_key(
    leaves, without_kek, private_key_loads
):
    without_kek()
    plain = _ask(leaves, leaves.good)
    with_nonce = _ask(leaves, leaves.good, nonce=b"0123456789abcdef")
    assert with_nonce.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
    assert with_nonce.certificate_status == ocsp.OCSPCertStatus.GOOD
    # RFC 8954 §2.1: the nonce is left out; the answer is the response the workers signed.
    assert x509.OCSPNonce not in [type(e.value) for e in with_nonce.extensions]
    der = serialization.Encoding.DER
    assert with_nonce.public_bytes(der) == plain.public_bytes(der)
    assert with_nonce.this_update_utc == NOW
    assert private_key_loads == []


def test_revoked_and_held_certificates_are_answered_from_presigned_responses(
    leaves, without_kek, private_key_loads
):
    without_kek()
    revoked = _ask(leaves, leaves.revoked, nonce=b"n" * 16)
    held = _ask(leaves, leaves.held, algorithm=hashes.SHA256())
    assert revoked.certificate_status == held.certificate_status == ocsp.OCSPCertStatus.REVOKED
    assert revoked.revocation_reason == x509.ReasonFlags.key_compromise
    assert held.revocation_reason == x509.ReasonFlags.certificate_hold
    assert private_key_loads == []


def test_miss_answers_try_later_and_enqueues_presigning_on_the_signing_queue(
    leaves, without_kek, private_key_loads, published_tasks
):
    without_kek()
    for _ in range(3):  # a burst of requests for it sends one message
        assert _ask(leaves, leaves.unsigned).response_status == ocsp.OCSPResponseStatus.TRY_LATER
    assert _ask(leaves, leaves.unsigned, nonce=b"x" * 8).response_status == ocsp.OCSPResponseStatus.TRY_LATER
    assert _presign_requests(published_tasks) == [([leaves.unsigned.pk], "signing")]
    assert private_key_loads == []


def test_presigning_the_miss_on_a_worker_makes_the_web_process_answer_it(
    leaves, without_kek, use_keks, settings, private_key_loads
):
    kek = settings.KMI["KEK"]
    without_kek()
    assert _ask(leaves, leaves.unsigned).response_status == ocsp.OCSPResponseStatus.TRY_LATER
    use_keks(kek)  # what the signing worker that took pki.ocsp_presign holds
    with time_machine.travel(LATER, tick=False):
        assert ocsp_presign.run([leaves.unsigned.pk]) == 1
    assert len(private_key_loads) == 2  # the worker signed a SHA-1 and a SHA-256 response
    without_kek()
    assert _ask(leaves, leaves.unsigned).certificate_status == ocsp.OCSPCertStatus.GOOD
    assert len(private_key_loads) == 2


def test_serial_never_issued_is_unauthorized_and_enqueues_nothing(leaves, without_kek, published_tasks):
    without_kek()
    issuer = Issuer.of(leaves.ca)
    for serial in (0x1234ABCD, 0):
        with time_machine.travel(LATER, tick=False):
            status, body = _post(multi_request_der([issuer.cert_id(serial, "sha1")]))
        assert status == 200
        assert ocsp.load_der_ocsp_response(body).response_status == ocsp.OCSPResponseStatus.UNAUTHORIZED
    assert _presign_requests(published_tasks) == []


def test_expired_certificate_is_unauthorized_without_a_key(leaves, without_kek, published_tasks):
    without_kek()
    after_expiry = leaves.good.not_after + dt.timedelta(hours=2)  # past its pre-signed responses too
    with time_machine.travel(after_expiry, tick=False):
        status, body = _post(request_der(leaves.good.x509(), leaves.ca.x509_certificate()))
    assert status == 200
    assert ocsp.load_der_ocsp_response(body).response_status == ocsp.OCSPResponseStatus.UNAUTHORIZED
    assert _presign_requests(published_tasks) == []


def test_what_only_a_live_signature_answers_is_try_later_without_a_key(
    leaves, without_kek, private_key_loads
):
    without_kek()
    issuer = Issuer.of(leaves.ca)
    good, revoked = int(leaves.good.serial, 16), int(leaves.revoked.serial, 16)
    several = multi_request_der([issuer.cert_id(good, "sha1"), issuer.cert_id(revoked, "sha1")])
    with time_machine.travel(LATER, tick=False):
        answers = [_post(several), _post(multi_request_der([issuer.cert_id(good, "sha512")]))]
    for status, body in answers:
        assert status == 200
        assert ocsp.load_der_ocsp_response(body).response_status == ocsp.OCSPResponseStatus.TRY_LATER
    assert private_key_loads == []


def test_worker_signing_never_signs_live_even_with_a_kek(leaves, lifecycle_conf, private_key_loads):
    from pki import ocsp as responder

    lifecycle_conf(SIGNING="worker")
    responder.reset_caches()
    answer = _ask(leaves, leaves.good, nonce=b"0123456789abcdef")
    assert answer.certificate_status == ocsp.OCSPCertStatus.GOOD
    assert x509.OCSPNonce not in [type(e.value) for e in answer.extensions]
    assert private_key_loads == []


def test_with_a_kek_a_nonce_is_signed_live_with_the_responder_key(leaves, private_key_loads):
    # The control for the tests above: the instrumented method is the one live signing goes through.
    answer = _ask(leaves, leaves.good, nonce=b"0123456789abcdef")
    assert answer.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == b"0123456789abcdef"
    responder = ensure_ocsp_responder(ca=leaves.ca, actor="t", now=LATER)
    assert private_key_loads == [responder.key.handle]


# --- the HTTP repository --------------------------------------------------------------------------


def test_repository_serves_stored_crls_and_ca_certificates_without_a_kek(
    client, leaves, without_kek, private_key_loads
):
    crl = publish_crl(ca=leaves.ca, actor="t", now=NOW)  # on a signing worker
    loads_by_the_worker = len(private_key_loads)
    without_kek()
    with time_machine.travel(LATER, tick=False):
        der = client.get("/crl/issuing.crl")
        pem = client.get("/crl/issuing.crl.pem")
        ca_cert = client.get("/ca/issuing.cer")
        chain = client.get("/ca/issuing-chain.pem")
    assert der.status_code == pem.status_code == ca_cert.status_code == chain.status_code == 200
    assert der.content == bytes(crl.der)
    listed = x509.load_der_x509_crl(der.content)
    assert listed.get_revoked_certificate_by_serial_number(int(leaves.revoked.serial, 16)) is not None
    assert ca_cert.content == leaves.ca.x509_certificate().public_bytes(serialization.Encoding.DER)
    assert len(private_key_loads) == loads_by_the_worker
    assert OCSPResponse.objects.filter(ca=leaves.ca).exists()


def test_repository_without_a_published_crl_is_503_and_signs_nothing(
    client, root_ca, without_kek, private_key_loads
):
    without_kek()
    response = client.get("/crl/root.crl")
    assert response.status_code == 503
    assert private_key_loads == []


def test_beat_refresh_keeps_every_status_presigned_for_web_processes(leaves, without_kek, private_key_loads):
    from pki.ocsp import refresh_responses

    half_life = NOW + dt.timedelta(minutes=31)
    with time_machine.travel(half_life, tick=False):
        # On a worker: every response past half its validity, and the one never signed.
        assert refresh_responses(actor="t")["issuing"] == 5  # 3 leaves, the responder, the new one
    without_kek()
    private_key_loads.clear()
    statuses = {}
    for name in ("good", "revoked", "held", "unsigned"):
        with time_machine.travel(half_life + dt.timedelta(seconds=5), tick=False):
            _, body = _post(request_der(getattr(leaves, name).x509(), leaves.ca.x509_certificate()))
        answer = ocsp.load_der_ocsp_response(body)
        assert answer.this_update_utc == half_life
        statuses[name] = answer.certificate_status
    assert statuses == {
        "good": ocsp.OCSPCertStatus.GOOD,
        "revoked": ocsp.OCSPCertStatus.REVOKED,
        "held": ocsp.OCSPCertStatus.REVOKED,
        "unsigned": ocsp.OCSPCertStatus.GOOD,
    }
    assert private_key_loads == []
