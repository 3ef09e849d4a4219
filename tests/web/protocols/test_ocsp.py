"""OCSP over HTTP: POST and GET (RFC 6960 Appendix A, RFC 5019), limits, errors, the raw path."""

from __future__ import annotations

import base64
import datetime as dt
import io
import os
import re
from urllib.parse import quote
from wsgiref.util import setup_testing_defaults

import pytest
import time_machine
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509 import ocsp
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from pki import conf
from pki import ocsp as responder
from pki.enrollment import sign_csr
from pki.ocsp import presign_responses
from tests.conftest import NOW, make_csr
from tests.ocsp_support import request_der

pytestmark = pytest.mark.django_db

FUZZ = hypothesis_settings(
    max_examples=int(os.environ.get("KMI_FUZZ_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@pytest.fixture(autouse=True)
def _static_root(settings, tmp_path):
    # WhiteNoise warns (an error here) when STATIC_ROOT does not exist yet.
    settings.STATIC_ROOT = tmp_path


@pytest.fixture
def presigned(issuing_ca, profile, ocsp_env):
    """A leaf with pre-signed responses, the clock at NOW + 1 min, and its SHA-1 request."""
    leaf = sign_csr(ca=issuing_ca, profile=profile("tls-server"), csr=make_csr(), actor="t", now=NOW)
    presign_responses(ca=issuing_ca, actor="t", now=NOW)
    with time_machine.travel(NOW + dt.timedelta(minutes=1), tick=False):
        yield leaf, request_der(leaf.x509(), issuing_ca.x509_certificate())


def _status(body: bytes) -> ocsp.OCSPResponseStatus:
    return ocsp.load_der_ocsp_response(body).response_status


def _raw(method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None):
    """Call web.wsgi.application (the raw OCSP dispatch in front of Django) like gunicorn would."""
    from web.wsgi import application

    environ: dict[str, object] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "wsgi.input": io.BytesIO(body),
    }
    if body:
        environ["CONTENT_LENGTH"] = str(len(body))
    environ.update(headers or {})
    setup_testing_defaults(environ)
    started: list[tuple[str, list[tuple[str, str]]]] = []
    chunks = application(environ, lambda status, hdrs: started.append((status, hdrs)))
    data = b"".join(chunks)
    if hasattr(chunks, "close"):
        chunks.close()
    status, hdrs = started[0]
    return int(status.split()[0]), dict(hdrs), data


# --- POST and GET -----------------------------------------------------------------------------


def test_post_answers_with_the_presigned_response(client, presigned):
    leaf, request = presigned
    response = client.post("/ocsp/issuing", request, content_type="application/ocsp-request")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/ocsp-response"
    resp = ocsp.load_der_ocsp_response(response.content)
    assert resp.certificate_status == ocsp.OCSPCertStatus.GOOD
    assert resp.serial_number == leaf.serial_int
    assert resp.this_update_utc == NOW


def test_get_carries_rfc5019_caching_headers(client, presigned):
    _, request = presigned
    response = client.get("/ocsp/issuing/" + quote(base64.b64encode(request).decode(), safe=""))
    assert response.status_code == 200
    assert ocsp.load_der_ocsp_response(response.content).certificate_status == ocsp.OCSPCertStatus.GOOD
    directives = {d.strip() for d in response["Cache-Control"].split(",")}
    assert directives == {"max-age=3540", "public", "no-transform", "must-revalidate"}
    assert response["Last-Modified"] == "Mon, 01 Jun 2026 12:00:00 GMT"
    assert response["Expires"] == "Mon, 01 Jun 2026 13:00:00 GMT"
    assert re.fullmatch(r'"[0-9a-f]{64}"', response["ETag"])


def test_get_with_the_current_etag_is_not_modified(client, presigned):
    _, request = presigned
    path = "/ocsp/issuing/" + quote(base64.b64encode(request).decode(), safe="")
    etag = client.get(path)["ETag"]
    again = client.get(path, headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert client.get(path, headers={"If-None-Match": '"other"'}).status_code == 200


def test_get_accepts_unescaped_and_url_safe_base64(client, presigned):
    _, request = presigned
    plain = base64.b64encode(request).decode()
    for encoded in (plain, plain.rstrip("="), base64.urlsafe_b64encode(request).decode()):
        response = client.get("/ocsp/issuing/" + encoded)
        assert _status(response.content) == ocsp.OCSPResponseStatus.SUCCESSFUL, encoded


def test_get_with_a_nonce_is_signed_live_and_not_cached(client, presigned, issuing_ca):
    leaf, _ = presigned
    request = request_der(leaf.x509(), issuing_ca.x509_certificate(), nonce=b"abcdefgh12345678")
    response = client.get("/ocsp/issuing/" + quote(base64.b64encode(request).decode(), safe=""))
    resp = ocsp.load_der_ocsp_response(response.content)
    assert resp.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == b"abcdefgh12345678"
    assert response["Cache-Control"] == "no-store"
    assert "ETag" not in response


# --- bad input --------------------------------------------------------------------------------


def test_get_of_something_not_base64_is_a_malformed_request(client, presigned):
    for encoded in ("!!!notbase64", "%00%01", "A"):
        response = client.get("/ocsp/issuing/" + encoded)
        assert response.status_code == 200
        assert _status(response.content) == ocsp.OCSPResponseStatus.MALFORMED_REQUEST


def test_get_without_a_request_is_a_malformed_request(client, presigned):
    assert _status(client.get("/ocsp/issuing").content) == ocsp.OCSPResponseStatus.MALFORMED_REQUEST


def test_oversized_post_is_refused_before_it_is_read(client, presigned):
    big = b"\x30" * (conf.ocsp_settings().max_request_bytes + 1)
    response = client.post("/ocsp/issuing", big, content_type="application/ocsp-request")
    assert response.status_code == 413


def test_oversized_chunked_post_is_refused(presigned):
    big = b"\x30\x82" + b"\x00" * 10_000
    status, _, _ = _raw("POST", "/ocsp/issuing", headers={"wsgi.input": io.BytesIO(big)})
    assert status == 413


def test_overlong_get_is_refused(client, presigned):
    response = client.get("/ocsp/issuing/" + "A" * 8000)
    assert response.status_code == 414


@pytest.mark.parametrize("method", ["put", "patch", "delete", "head", "options"])
def test_wrong_methods_are_not_allowed(client, presigned, method):
    response = getattr(client, method)("/ocsp/issuing")
    assert response.status_code == 405
    assert response["Allow"] == "GET, POST"


@pytest.mark.parametrize("path", ["/ocsp/nope", "/ocsp/UPPER", "/ocsp/..", "/ocsp/a%20b", "/ocsp/-x"])
def test_unknown_ca_paths_are_unauthorized(client, presigned, path):
    _, request = presigned
    response = client.post(path, request, content_type="application/ocsp-request")
    assert response.status_code == 200
    assert _status(response.content) == ocsp.OCSPResponseStatus.UNAUTHORIZED


def test_redis_down_falls_back_to_the_database_and_is_left_alone_a_while(client, presigned, settings, caplog):
    _, request = presigned
    settings.REDIS_URL = "redis://127.0.0.1:18399/0"  # nothing listens there (our port range)
    conf.reset()
    responder.reset_caches()
    for _ in range(2):
        responder.LOCAL.clear()
        response = client.post("/ocsp/issuing", request, content_type="application/ocsp-request")
        assert ocsp.load_der_ocsp_response(response.content).certificate_status == ocsp.OCSPCertStatus.GOOD
    assert caplog.text.count("OCSP: Redis GET failed") == 1


@FUZZ
@given(body=st.binary(max_size=3000))
def test_fuzzed_bodies_never_cause_a_server_error(client, presigned, body):
    response = client.post("/ocsp/issuing", body, content_type="application/ocsp-request")
    assert response.status_code in {200, 413}
    if response.status_code == 200:
        assert _status(response.content) in {
            ocsp.OCSPResponseStatus.MALFORMED_REQUEST,
            ocsp.OCSPResponseStatus.UNAUTHORIZED,
        }


@FUZZ
@given(data=st.data())
def test_truncated_and_mutated_requests_never_cause_a_server_error(client, presigned, data):
    _, request = presigned
    cut = data.draw(st.integers(min_value=0, max_value=len(request)))
    flips = data.draw(st.lists(st.tuples(st.integers(0, len(request) - 1), st.integers(1, 255)), max_size=3))
    mutated = bytearray(request[:cut] if data.draw(st.booleans()) else request)
    for index, mask in flips:
        if index < len(mutated):
            mutated[index] ^= mask
    status, _, body = _raw("POST", "/ocsp/issuing", bytes(mutated))
    assert status == 200
    ocsp.load_der_ocsp_response(body)  # always a well-formed OCSPResponse


# --- the raw path -----------------------------------------------------------------------------


def test_raw_path_answers_a_presigned_request_without_a_database_query(presigned, django_assert_num_queries):
    _, request = presigned
    _raw("POST", "/ocsp/issuing", request)  # warms this process's CA index
    responder.LOCAL.clear()
    with django_assert_num_queries(0):
        status, headers, body = _raw("POST", "/ocsp/issuing", request)
    assert status == 200
    assert headers["Content-Type"] == "application/ocsp-response"
    assert headers["Content-Length"] == str(len(body))
    assert ocsp.load_der_ocsp_response(body).certificate_status == ocsp.OCSPCertStatus.GOOD


def test_raw_get_carries_the_same_caching_headers(presigned):
    _, request = presigned
    status, headers, _ = _raw("GET", "/ocsp/issuing/" + base64.b64encode(request).decode())
    assert status == 200
    assert headers["Cache-Control"] == "max-age=3540, public, no-transform, must-revalidate"
    assert headers["Expires"] == "Mon, 01 Jun 2026 13:00:00 GMT"


def test_other_paths_still_go_to_django(presigned):
    status, headers, _ = _raw("GET", "/admin/login/")
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")


def test_sha256_request_over_http(client, presigned, issuing_ca):
    leaf, _ = presigned
    request = request_der(leaf.x509(), issuing_ca.x509_certificate(), algorithm=hashes.SHA256())
    response = client.post("/ocsp/issuing", request, content_type="application/ocsp-request")
    resp = ocsp.load_der_ocsp_response(response.content)
    assert isinstance(resp.hash_algorithm, hashes.SHA256)
    assert resp.certificate_status == ocsp.OCSPCertStatus.GOOD


def test_signing_failure_is_an_ocsp_internal_error_not_an_http_500(client, issuing_ca, profile, ocsp_env):
    from pki.models import SealedKey
    from pki.ocsp import ensure_ocsp_responder

    leaf = sign_csr(ca=issuing_ca, profile=profile("tls-server"), csr=make_csr(), actor="t", now=NOW)
    responder_key = ensure_ocsp_responder(ca=issuing_ca, actor="t", now=NOW).key
    SealedKey.objects.filter(key=responder_key).delete()  # the responder key is gone (crypto-shredded)
    request = request_der(leaf.x509(), issuing_ca.x509_certificate(), nonce=b"z" * 16)
    with time_machine.travel(NOW + dt.timedelta(minutes=1), tick=False):
        response = client.post("/ocsp/issuing", request, content_type="application/ocsp-request")
    assert response.status_code == 200
    assert _status(response.content) == ocsp.OCSPResponseStatus.INTERNAL_ERROR


# --- Host header (the raw path runs before Django's ALLOWED_HOSTS check) --------------------------


@pytest.mark.parametrize(
    ("allowed", "host", "expected"),
    [
        (["*"], "anything.example", 200),
        (["pki.example.test"], "pki.example.test", 200),
        (["pki.example.test"], "PKI.example.test:8080", 200),
        ([".example.test"], "ocsp.example.test", 200),
        (["pki.example.test"], "evil.example", 400),
        (["pki.example.test"], "pki.example.test.evil.example", 400),
        (["*"], "bad host!", 400),  # Django refuses a malformed Host even under "*"
    ],
)
def test_raw_path_checks_the_host_like_django(presigned, settings, allowed, host, expected):
    _, request = presigned
    settings.ALLOWED_HOSTS = allowed
    status, headers, body = _raw("POST", "/ocsp/issuing", request, {"HTTP_HOST": host})
    assert status == expected
    django_status, _, _ = _raw("GET", "/admin/login/", headers={"HTTP_HOST": host})
    assert django_status == expected  # the same decision as Django's for the rest of the site
    if expected == 400:
        assert headers["Content-Type"].startswith("text/plain")
        assert b"Host" in body


def test_raw_path_reads_the_forwarded_host_only_when_told(presigned, settings):
    _, request = presigned
    settings.ALLOWED_HOSTS = ["pki.example.test"]
    forwarded = {"HTTP_HOST": "10.0.0.5:8000", "HTTP_X_FORWARDED_HOST": "pki.example.test"}
    assert _raw("POST", "/ocsp/issuing", request, forwarded)[0] == 400
    settings.USE_X_FORWARDED_HOST = True
    assert _raw("POST", "/ocsp/issuing", request, forwarded)[0] == 200


def test_raw_path_without_a_host_header_uses_the_server_name(settings):
    from web.protocols.ocsp import host_allowed

    settings.ALLOWED_HOSTS = ["pki.example.test"]
    plain = {"SERVER_NAME": "pki.example.test", "SERVER_PORT": "80", "wsgi.url_scheme": "http"}
    assert host_allowed(plain)
    assert host_allowed({**plain, "SERVER_PORT": "8443", "wsgi.url_scheme": "https"})
    assert not host_allowed({**plain, "SERVER_NAME": "evil.example"})
    settings.ALLOWED_HOSTS, settings.DEBUG = [], True  # Django's DEBUG default: localhost only
    assert host_allowed({**plain, "SERVER_NAME": "127.0.0.1"})
    assert not host_allowed(plain)


def test_a_new_generation_answers_at_its_own_ocsp_url(issuing_ca, profile, ocsp_env):
    from pki.rotation import rollover_ca

    old_leaf = sign_csr(ca=issuing_ca, profile=profile("tls-server"), csr=make_csr(), actor="t", now=NOW)
    old_issuer = issuing_ca.x509_certificate()
    rollover_ca(ca=issuing_ca, actor="t", now=NOW)
    issuing_ca.refresh_from_db()
    new_leaf = sign_csr(
        ca=issuing_ca, profile=profile("tls-server"), csr=make_csr("ec-p384"), actor="t", now=NOW
    )
    presign_responses(ca=issuing_ca, actor="t", now=NOW)
    responder.reset_caches()
    with time_machine.travel(NOW + dt.timedelta(minutes=1), tick=False):
        for path, leaf, issuer in (
            ("/ocsp/issuing", old_leaf, old_issuer),
            ("/ocsp/issuing.g2", new_leaf, issuing_ca.x509_certificate()),
        ):
            status, _headers, body = _raw(
                "POST", path, request_der(leaf.x509(), issuer), {"CONTENT_TYPE": "application/ocsp-request"}
            )
            assert status == 200
            resp = ocsp.load_der_ocsp_response(body)
            assert resp.certificate_status == ocsp.OCSPCertStatus.GOOD
            assert resp.serial_number == leaf.serial_int
        status, _headers, body = _raw(
            "POST",
            "/ocsp/issuing.g9",
            request_der(new_leaf.x509(), old_issuer),
            {"CONTENT_TYPE": "application/ocsp-request"},
        )
        assert _status(body) == ocsp.OCSPResponseStatus.UNAUTHORIZED
