"""The OCSP responder's domain: delegated responders, statuses, pre-signing, storage."""

from __future__ import annotations

import datetime as dt

import pytest
import redis
import time_machine
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from django.conf import settings

from pki import ocsp as responder
from pki.enrollment import sign_csr
from pki.models import AuditEvent, OCSPResponder, OCSPResponse
from pki.models.key import KeyState
from pki.ocsp import answer, build_response, ensure_ocsp_responder, presign_responses, refresh_responses
from pki.revocation import revoke_certificate
from pki.x509.ocsp_der import SingleStatus
from tests.conftest import NOW, load_key, make_csr
from tests.ocsp_support import lint_ocsp_response, lint_pkix_cert, multi_request_der, request_der

pytestmark = pytest.mark.django_db


@pytest.fixture
def leaf(issuing_ca, profile, ocsp_env):
    """A TLS server certificate from the issuing CA."""
    return sign_csr(ca=issuing_ca, profile=profile("tls-server"), csr=make_csr(), actor="t", now=NOW)


@pytest.fixture
def revoked_leaf(issuing_ca, profile, ocsp_env):
    """A certificate revoked for keyCompromise an hour after NOW."""
    cert = sign_csr(ca=issuing_ca, profile=profile("tls-server"), csr=make_csr("ec-p384"), actor="t", now=NOW)
    return revoke_certificate(
        certificate=cert, reason="keyCompromise", actor="t", now=NOW + dt.timedelta(hours=1)
    )


def _load(der: bytes) -> ocsp.OCSPResponse:
    return ocsp.load_der_ocsp_response(der)


def _foreign_ca() -> tuple[x509.Certificate, x509.Certificate]:
    """A CA certificate and a leaf it signed, neither known to KMI (committed keys, no keygen)."""
    key = load_key("ec-p256-b")
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Foreign CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1000)
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())  # type: ignore[arg-type]
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "www.example.test")]))
        .issuer_name(name)
        .public_key(load_key("ec-p256").public_key())
        .serial_number(2000)
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())  # type: ignore[arg-type]
    )
    return ca, leaf


# --- the delegated responder ------------------------------------------------------------------


def test_responder_certificate_is_delegated_short_lived_and_lints_clean(issuing_ca, ocsp_env):
    r = ensure_ocsp_responder(ca=issuing_ca, actor="t", now=NOW)
    cert = r.certificate.x509()
    assert cert.issuer == issuing_ca.x509_certificate().subject
    assert cert.subject.rfc4514_string() == "CN=KMI Issuing CA OCSP Responder,O=KMI"
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.OCSP_SIGNING]
    assert cert.extensions.get_extension_for_class(x509.OCSPNoCheck).critical is False
    assert cert.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == dt.timedelta(days=7, seconds=-1)
    assert r.key.purpose == "ocsp"
    assert r.key.pk != issuing_ca.key.pk
    assert lint_pkix_cert(bytes(r.certificate.der)) == []
    assert AuditEvent.objects.filter(action="ocsp.responder_issued", object_id=str(r.pk)).exists()


def test_responder_is_kept_until_half_its_validity_then_renewed_with_a_new_key(issuing_ca, ocsp_env):
    first = ensure_ocsp_responder(ca=issuing_ca, actor="t", now=NOW)
    first_serial, first_key = first.certificate.serial, first.key
    with time_machine.travel(NOW + dt.timedelta(days=3), tick=False):
        assert ensure_ocsp_responder(ca=issuing_ca, actor="t").certificate.serial == first_serial
    with time_machine.travel(NOW + dt.timedelta(days=3, hours=13), tick=False):
        renewed = ensure_ocsp_responder(ca=issuing_ca, actor="t")
    assert renewed.certificate.serial != first_serial
    assert renewed.key.pk != first_key.pk
    # Renewed before the old certificate expired, and the old key signs no more.
    assert renewed.certificate.not_before < first.certificate.not_after
    first_key.refresh_from_db()
    assert first_key.state == KeyState.DEACTIVATED
    assert OCSPResponder.objects.filter(ca=issuing_ca).count() == 1


def test_revoked_responder_is_replaced_at_once(issuing_ca, ocsp_env):
    first = ensure_ocsp_responder(ca=issuing_ca, actor="t", now=NOW)
    revoke_certificate(certificate=first.certificate, reason="keyCompromise", actor="t", now=NOW)
    replaced = ensure_ocsp_responder(ca=issuing_ca, actor="t", now=NOW + dt.timedelta(minutes=1))
    assert replaced.certificate.serial != first.certificate.serial


# --- statuses ---------------------------------------------------------------------------------


def test_good_certificate_is_answered_good_signed_by_the_responder(issuing_ca, leaf):
    ensure_ocsp_responder(ca=issuing_ca, actor="t", now=NOW)
    result = answer(request_der(leaf.x509(), issuing_ca.x509_certificate()), ca_name="issuing", now=NOW)
    resp = _load(result.der)
    assert resp.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
    assert resp.certificate_status == ocsp.OCSPCertStatus.GOOD
    assert resp.serial_number == leaf.serial_int
    assert resp.next_update_utc - resp.this_update_utc == dt.timedelta(hours=1)
    responder_cert = OCSPResponder.objects.get(ca=issuing_ca).certificate.x509()
    assert resp.certificates == [responder_cert]
    assert (
        resp.responder_key_hash
        == x509.SubjectKeyIdentifier.from_public_key(responder_cert.public_key()).digest
    )
    public_key = responder_cert.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    public_key.verify(resp.signature, resp.tbs_response_bytes, ec.ECDSA(hashes.SHA256()))
    assert lint_ocsp_response(result.der) == []


def test_revoked_certificate_is_answered_with_time_and_reason(issuing_ca, revoked_leaf):
    ensure_ocsp_responder(ca=issuing_ca, actor="t", now=NOW)
    request = request_der(revoked_leaf.x509(), issuing_ca.x509_certificate(), algorithm=hashes.SHA256())
    result = answer(request, ca_name="issuing", now=NOW + dt.timedelta(hours=2))
    resp = _load(result.der)
    assert resp.certificate_status == ocsp.OCSPCertStatus.REVOKED
    assert resp.revocation_time_utc == NOW + dt.timedelta(hours=1)
    assert resp.revocation_reason == x509.ReasonFlags.key_compromise
    assert isinstance(resp.hash_algorithm, hashes.SHA256)
    assert lint_ocsp_response(result.der) == []


def test_unknown_serial_of_a_kmi_ca_is_answered_unknown(issuing_ca, leaf):
    ensure_ocsp_responder(ca=issuing_ca, actor="t", now=NOW)
    request = (
        ocsp.OCSPRequestBuilder()
        .add_certificate_by_hash(
            _load_issuer_hashes(issuing_ca)[0], _load_issuer_hashes(issuing_ca)[1], 12345, hashes.SHA1()
        )
        .build()
        .public_bytes(serialization.Encoding.DER)
    )
    result = answer(request, ca_name="issuing", now=NOW)
    assert _load(result.der).certificate_status == ocsp.OCSPCertStatus.UNKNOWN
    assert lint_ocsp_response(result.der) == []


def _load_issuer_hashes(ca) -> tuple[bytes, bytes]:
    issuer = responder.Issuer.of(ca)
    return issuer.name_hashes["sha1"], issuer.key_hashes["sha1"]


def test_nonce_is_echoed_in_a_live_signed_response(issuing_ca, leaf):
    presign_responses(ca=issuing_ca, actor="t", now=NOW)
    request = request_der(leaf.x509(), issuing_ca.x509_certificate(), nonce=b"0123456789abcdef")
    later = NOW + dt.timedelta(minutes=5)
    result = answer(request, ca_name="issuing", now=later)
    resp = _load(result.der)
    assert resp.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == b"0123456789abcdef"
    assert resp.this_update_utc == later  # signed now, not the pre-signed copy
    assert not result.cacheable


def test_oversized_nonce_is_a_malformed_request(issuing_ca, leaf):
    request = request_der(leaf.x509(), issuing_ca.x509_certificate(), nonce=b"x" * 33)
    result = answer(request, ca_name="issuing", now=NOW)
    assert _load(result.der).response_status == ocsp.OCSPResponseStatus.MALFORMED_REQUEST


def test_several_requests_in_one_are_answered_in_one_response(issuing_ca, leaf, revoked_leaf):
    ensure_ocsp_responder(ca=issuing_ca, actor="t", now=NOW)
    issuer = responder.Issuer.of(issuing_ca)
    ids = [
        issuer.cert_id(leaf.serial_int, "sha1"),
        issuer.cert_id(revoked_leaf.serial_int, "sha256"),
        issuer.cert_id(424242, "sha1"),
    ]
    result = answer(
        multi_request_der(ids, nonce=b"n" * 16), ca_name="issuing", now=NOW + dt.timedelta(hours=2)
    )
    singles = list(_load(result.der).responses)
    assert [s.certificate_status for s in singles] == [
        ocsp.OCSPCertStatus.GOOD,
        ocsp.OCSPCertStatus.REVOKED,
        ocsp.OCSPCertStatus.UNKNOWN,
    ]
    assert [s.serial_number for s in singles] == [leaf.serial_int, revoked_leaf.serial_int, 424242]
    assert lint_ocsp_response(result.der) == []


def test_cert_ids_of_two_cas_in_one_request_are_unauthorized(root_ca, issuing_ca, leaf):
    ids = [
        responder.Issuer.of(issuing_ca).cert_id(leaf.serial_int, "sha1"),
        responder.Issuer.of(root_ca).cert_id(issuing_ca.own_certificate().serial_int, "sha1"),
    ]
    result = answer(multi_request_der(ids), ca_name="issuing", now=NOW)
    assert _load(result.der).response_status == ocsp.OCSPResponseStatus.UNAUTHORIZED


def test_issuer_kmi_does_not_serve_is_unauthorized(issuing_ca, ocsp_env):
    foreign_ca, foreign_leaf = _foreign_ca()
    result = answer(request_der(foreign_leaf, foreign_ca), ca_name="issuing", now=NOW)
    assert _load(result.der).response_status == ocsp.OCSPResponseStatus.UNAUTHORIZED


def test_unknown_ca_name_is_unauthorized(issuing_ca, leaf):
    result = answer(request_der(leaf.x509(), issuing_ca.x509_certificate()), ca_name="nope", now=NOW)
    assert _load(result.der).response_status == ocsp.OCSPResponseStatus.UNAUTHORIZED


@pytest.mark.parametrize("body", [b"", b"garbage", b"\x30\x03\x02\x01\x00", b"\x30\x80\x00\x00"])
def test_garbage_is_a_malformed_request(body, issuing_ca, ocsp_env):
    result = answer(body, ca_name="issuing", now=NOW)
    assert _load(result.der).response_status == ocsp.OCSPResponseStatus.MALFORMED_REQUEST


def test_ca_without_a_responder_answers_try_later(issuing_ca, leaf):
    result = answer(
        request_der(leaf.x509(), issuing_ca.x509_certificate(), nonce=b"0" * 8), ca_name="issuing", now=NOW
    )
    assert _load(result.der).response_status == ocsp.OCSPResponseStatus.TRY_LATER


def test_next_update_must_be_after_this_update(issuing_ca, ocsp_env):
    signer = responder.Signer.of(ensure_ocsp_responder(ca=issuing_ca, actor="t", now=NOW))
    single = SingleStatus(cert_id_der=responder.Issuer.of(issuing_ca).cert_id(7, "sha1"), status="good")
    with pytest.raises(ValueError, match="nextUpdate"):
        build_response(signer=signer, singles=[single], now=NOW, validity=dt.timedelta(0))


# --- pre-signing and storage ------------------------------------------------------------------


def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL)


def test_presigned_responses_are_in_redis_and_the_database(issuing_ca, leaf, ocsp_env):
    assert presign_responses(ca=issuing_ca, actor="t", now=NOW) == 2  # the leaf and the responder
    rows = OCSPResponse.objects.filter(ca=issuing_ca, serial=leaf.serial)
    assert sorted(rows.values_list("hash_algorithm", flat=True)) == ["sha1", "sha256"]
    client = _redis()
    for algorithm in ("sha1", "sha256"):
        key = f"{ocsp_env}:{issuing_ca.pk}:{leaf.serial}:{algorithm}"
        stored = rows.get(hash_algorithm=algorithm)
        assert client.get(key).endswith(bytes(stored.der))
        assert 0 < client.ttl(key) <= 3600
        assert lint_ocsp_response(bytes(stored.der)) == []
    client.close()


def test_presigned_response_is_served_from_redis_without_a_query(
    issuing_ca, leaf, ocsp_env, django_assert_num_queries
):
    presign_responses(ca=issuing_ca, actor="t", now=NOW)
    request = request_der(leaf.x509(), issuing_ca.x509_certificate())
    answer(request, ca_name="issuing", now=NOW)  # loads the CA index once
    responder.LOCAL.clear()
    stored = OCSPResponse.objects.get(ca=issuing_ca, serial=leaf.serial, hash_algorithm="sha1")
    with django_assert_num_queries(0):
        result = answer(request, ca_name="issuing", now=NOW + dt.timedelta(minutes=1))
    assert result.der == bytes(stored.der)
    assert result.this_update == NOW
    assert result.next_update == NOW + dt.timedelta(hours=1)


def test_database_copy_answers_when_redis_lost_the_response(
    issuing_ca, leaf, ocsp_env, django_assert_num_queries
):
    presign_responses(ca=issuing_ca, actor="t", now=NOW)
    request = request_der(leaf.x509(), issuing_ca.x509_certificate(), algorithm=hashes.SHA256())
    answer(request, ca_name="issuing", now=NOW)
    key = f"{ocsp_env}:{issuing_ca.pk}:{leaf.serial}:sha256"
    client = _redis()
    client.delete(key)
    responder.LOCAL.clear()
    with django_assert_num_queries(1):
        result = answer(request, ca_name="issuing", now=NOW + dt.timedelta(minutes=1))
    stored = OCSPResponse.objects.get(ca=issuing_ca, serial=leaf.serial, hash_algorithm="sha256")
    assert result.der == bytes(stored.der)
    assert client.get(key).endswith(bytes(stored.der))  # put back for the next request
    client.close()


def test_revocation_resigns_the_presigned_response_at_once(
    issuing_ca, leaf, ocsp_env, django_capture_on_commit_callbacks
):
    presign_responses(ca=issuing_ca, actor="t", now=NOW)
    request = request_der(leaf.x509(), issuing_ca.x509_certificate())
    assert (
        _load(answer(request, ca_name="issuing", now=NOW).der).certificate_status == ocsp.OCSPCertStatus.GOOD
    )
    with time_machine.travel(NOW + dt.timedelta(minutes=10), tick=False):
        with django_capture_on_commit_callbacks(execute=True):
            revoke_certificate(certificate=leaf, reason="superseded", actor="t")
        responder.LOCAL.clear()
        resp = _load(answer(request, ca_name="issuing").der)
    assert resp.certificate_status == ocsp.OCSPCertStatus.REVOKED
    assert resp.revocation_reason == x509.ReasonFlags.superseded


def test_issued_certificate_is_presigned_at_once(
    issuing_ca, profile, ocsp_env, django_capture_on_commit_callbacks
):
    with time_machine.travel(NOW, tick=False), django_capture_on_commit_callbacks(execute=True):
        cert = sign_csr(ca=issuing_ca, profile=profile("tls-client"), csr=make_csr("ed25519"), actor="t")
    assert OCSPResponse.objects.filter(ca=issuing_ca, serial=cert.serial).count() == 2


def test_refresh_resigns_past_half_life_and_drops_expired_responses(issuing_ca, leaf, ocsp_env):
    presign_responses(ca=issuing_ca, actor="t", now=NOW)
    assert refresh_responses(actor="t", now=NOW + dt.timedelta(minutes=29))["issuing"] == 0
    assert refresh_responses(actor="t", now=NOW + dt.timedelta(minutes=31))["issuing"] == 2
    row = OCSPResponse.objects.get(ca=issuing_ca, serial=leaf.serial, hash_algorithm="sha1")
    assert row.this_update == NOW + dt.timedelta(minutes=31)
    # After the leaf expires nothing re-signs it, and its responses leave once past nextUpdate.
    after = leaf.not_after + dt.timedelta(hours=2)
    with time_machine.travel(after, tick=False):
        refresh_responses(actor="t", now=after)
    assert not OCSPResponse.objects.filter(serial=leaf.serial).exists()
    assert _redis().get(f"{ocsp_env}:{issuing_ca.pk}:{leaf.serial}:sha1") is None


def test_refresh_skips_a_ca_that_cannot_sign_and_serves_the_others(root_ca, issuing_ca, ocsp_env, caplog):
    later = issuing_ca.own_certificate().not_after + dt.timedelta(days=1)
    signed = refresh_responses(actor="t", now=later)
    assert "issuing" not in signed
    assert signed["root"] == 2  # the root's certificate and its new responder's
    assert "cannot pre-sign responses of CA issuing" in caplog.text


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("RESPONSE_VALIDITY_SECONDS", 10),
        ("RESPONDER_VALIDITY_DAYS", 31),
        ("RESPONDER_RENEW_FRACTION", "1.5"),
        ("RESPONDER_RENEW_FRACTION", "half"),
        ("RESPONDER_KEY_TYPE", "dsa-1024"),
        ("REDIS_PREFIX", "has space"),
        ("MAX_REQUEST_BYTES", 10),
        ("LOCAL_CACHE_SECONDS", "-1"),
    ],
)
def test_bad_ocsp_settings_stop_start_up(key, value):
    from django.core.exceptions import ImproperlyConfigured

    from pki.conf import build_ocsp_settings

    assert build_ocsp_settings({}, redis_url="").response_validity_seconds == 3600
    with pytest.raises(ImproperlyConfigured, match=f"KMI_OCSP_{key}"):
        build_ocsp_settings({key: value}, redis_url="")


def test_lost_revocation_signal_is_caught_by_the_next_refresh(issuing_ca, leaf, ocsp_env):
    presign_responses(ca=issuing_ca, actor="t", now=NOW)
    # No on_commit callbacks run here: as if the broker had been down when the signal fired.
    revoke_certificate(certificate=leaf, reason="keyCompromise", actor="t", now=NOW + dt.timedelta(minutes=1))
    assert refresh_responses(actor="t", now=NOW + dt.timedelta(minutes=2))["issuing"] == 1
    responder.LOCAL.clear()
    request = request_der(leaf.x509(), issuing_ca.x509_certificate())
    resp = _load(answer(request, ca_name="issuing", now=NOW + dt.timedelta(minutes=3)).der)
    assert resp.certificate_status == ocsp.OCSPCertStatus.REVOKED


def test_released_hold_is_good_again_at_once(issuing_ca, leaf, ocsp_env, django_capture_on_commit_callbacks):
    from pki.revocation import release_hold

    request = request_der(leaf.x509(), issuing_ca.x509_certificate())
    with time_machine.travel(NOW + dt.timedelta(minutes=10), tick=False):
        with django_capture_on_commit_callbacks(execute=True):
            revoke_certificate(certificate=leaf, reason="certificateHold", actor="t")
        held = _load(answer(request, ca_name="issuing").der)
        assert held.revocation_reason == x509.ReasonFlags.certificate_hold
        with django_capture_on_commit_callbacks(execute=True):
            release_hold(certificate=leaf, actor="t")
        responder.LOCAL.clear()
        assert _load(answer(request, ca_name="issuing").der).certificate_status == ocsp.OCSPCertStatus.GOOD


@pytest.mark.parametrize("key_type", ["ec-p384", "ed25519"])
def test_responder_key_type_is_configurable(issuing_ca, leaf, ocsp_env, settings, key_type):
    from pki import conf

    settings.KMI_OCSP = {**settings.KMI_OCSP, "RESPONDER_KEY_TYPE": key_type}
    conf.reset()
    r = ensure_ocsp_responder(ca=issuing_ca, actor="t", now=NOW)
    assert r.key.key_type == key_type
    request = request_der(leaf.x509(), issuing_ca.x509_certificate(), nonce=b"k" * 16)
    result = answer(request, ca_name="issuing", now=NOW)
    resp = _load(result.der)
    assert resp.certificate_status == ocsp.OCSPCertStatus.GOOD
    public_key = r.certificate.x509().public_key()
    if key_type == "ed25519":
        assert resp.signature_hash_algorithm is None
        public_key.verify(resp.signature, resp.tbs_response_bytes)
    else:
        assert isinstance(resp.signature_hash_algorithm, hashes.SHA384)
        public_key.verify(resp.signature, resp.tbs_response_bytes, ec.ECDSA(hashes.SHA384()))
    assert lint_ocsp_response(result.der) == []


def test_issuance_burst_is_presigned_by_one_task_per_ca(
    issuing_ca, profile, ocsp_env, settings, django_capture_on_commit_callbacks
):
    from pki import conf, tasks

    settings.KMI_OCSP = {**settings.KMI_OCSP, "PRESIGN_DELAY_SECONDS": 30}
    conf.reset()
    ensure_ocsp_responder(ca=issuing_ca, actor="t", now=NOW)
    tls = profile("tls-server")
    try:
        with time_machine.travel(NOW, tick=False):
            # The first certificate queues a task (eager Celery here runs it at once; in
            # production it runs after the delay and so also covers what follows)...
            with django_capture_on_commit_callbacks(execute=True):
                first = sign_csr(ca=issuing_ca, profile=tls, csr=make_csr(), actor="t")
            assert OCSPResponse.objects.filter(serial=first.serial).count() == 2
            # ...the second, inside the window, sends no message of its own...
            with django_capture_on_commit_callbacks(execute=True):
                second = sign_csr(ca=issuing_ca, profile=tls, csr=make_csr("ec-p384"), actor="t")
            assert not OCSPResponse.objects.filter(serial=second.serial).exists()
            # ...because the queued task signs every new certificate from the first one's id on.
            assert tasks.ocsp_presign_issued(issuing_ca.pk, first.pk) == 1
            assert OCSPResponse.objects.filter(serial=second.serial).count() == 2
    finally:
        tasks._ISSUED_COVERED.clear()


def test_beat_task_renews_responders_and_presigns_every_ca(root_ca, issuing_ca, ocsp_env):
    from pki import tasks

    with time_machine.travel(NOW, tick=False):
        result = tasks.ocsp_refresh()
    # root: its own certificate, the issuing CA's and its responder's; issuing: its responder's.
    assert result == {"root": 3, "issuing": 1}
    assert OCSPResponder.objects.count() == 2


def test_revocation_enqueues_resigning_on_the_broker(issuing_ca, profile, django_capture_on_commit_callbacks):
    from web.celery import app

    cert = sign_csr(ca=issuing_ca, profile=profile("tls-server"), csr=make_csr(), actor="t")
    with app.connection_for_read() as conn:
        queue = conn.SimpleQueue("signing")  # pki.ocsp_* tasks sign: CELERY_TASK_ROUTES
        while queue.qsize():
            queue.get(timeout=1).ack()  # what earlier tests of this process left
        with django_capture_on_commit_callbacks(execute=True):
            revoke_certificate(certificate=cert, reason="keyCompromise", actor="t")
        message = queue.get(timeout=2)
        message.ack()
        queue.close()
    assert message.headers["task"] == "pki.ocsp_presign"
    assert message.payload[0] == [[cert.pk]]


def test_a_revocation_while_redis_is_unreachable_is_never_answered_good(
    issuing_ca, leaf, ocsp_env, settings, without_kek
):
    """Redis down during a revocation: the broker cannot carry the re-signing job and Redis
    cannot be told, yet no process may answer ``good`` from a stored response any more."""
    presign_responses(ca=issuing_ca, actor="t", now=NOW)
    request = request_der(leaf.x509(), issuing_ca.x509_certificate())
    without_kek()  # a web process: it answers from stored responses only
    assert (
        _load(answer(request, ca_name="issuing", now=NOW).der).certificate_status == ocsp.OCSPCertStatus.GOOD
    )
    settings.KMI_OCSP = {**settings.KMI_OCSP}
    settings.REDIS_URL = "redis://127.0.0.1:21299/0"  # Redis is gone (nothing listens there)
    from pki import conf

    conf.reset()
    responder.reset_caches()
    revoke_certificate(certificate=leaf, reason="keyCompromise", actor="t", now=NOW + dt.timedelta(minutes=1))
    result = _load(answer(request, ca_name="issuing", now=NOW + dt.timedelta(minutes=2)).der)
    assert result.response_status == ocsp.OCSPResponseStatus.TRY_LATER  # never the old "good"


def test_a_revocation_drops_the_redis_copies_after_commit(
    issuing_ca, leaf, ocsp_env, without_kek, django_capture_on_commit_callbacks
):
    presign_responses(ca=issuing_ca, actor="t", now=NOW)
    client = _redis()
    keys = [f"{ocsp_env}:{issuing_ca.pk}:{leaf.serial}:{a}" for a in ("sha1", "sha256")]
    assert all(client.exists(k) for k in keys)
    without_kek()  # the re-signing job goes to the broker, not inline
    with django_capture_on_commit_callbacks(execute=True):
        revoke_certificate(
            certificate=leaf, reason="keyCompromise", actor="t", now=NOW + dt.timedelta(minutes=1)
        )
    assert not any(client.exists(k) for k in keys)
    client.close()
    request = request_der(leaf.x509(), issuing_ca.x509_certificate())
    result = _load(answer(request, ca_name="issuing", now=NOW + dt.timedelta(minutes=2)).der)
    assert result.response_status == ocsp.OCSPResponseStatus.TRY_LATER
