"""ACME HTTP binding, driven with hand-built JWS over Django's test client.

Challenges are validated for real: an http-01 responder, a DNS server and a tls-alpn-01 TLS
server run in threads on ports of tests.acme_support.port, and KMI's validator is pointed at them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import socket
import ssl
import threading
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from pki.acme.endpoints import create_eab_key, create_endpoint
from pki.acme.locations import directory_url
from pki.models import AcmeAccount, AcmeOrder, AuditEvent, Certificate, CertificateRequest, Profile
from tests.acme_support import (
    AcmeTestClient,
    Http01Responder,
    LocalDNS,
    dns01_txt,
    jws,
    key_authorization,
    port,
)
from tests.conftest import load_key, make_csr
from tests.support import hostile_csr

pytestmark = pytest.mark.django_db

DNS_PORT, HTTP_PORT, TLS_PORT = port(0), port(1), port(2)


@pytest.fixture(scope="module")
def dns_server():
    server = LocalDNS(DNS_PORT).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def http01():
    responder = Http01Responder(HTTP_PORT).start()
    yield responder
    responder.stop()


@pytest.fixture(autouse=True)
def acme_conf(settings, dns_server, http01):
    settings.KMI_ACME = {
        **settings.KMI_ACME,
        "HTTP01_PORT": HTTP_PORT,
        "TLS_ALPN01_PORT": TLS_PORT,
        "DNS_RESOLVERS": f"127.0.0.1:{DNS_PORT}",
        "VALIDATION_TIMEOUT": 2,
        "VALIDATE_INLINE": True,
        "MAX_BODY_BYTES": 8192,
    }
    dns_server.txt.clear()
    http01.tokens.clear()
    http01.redirect = None


@pytest.fixture
def endpoint(issuing_ca, profile):
    return create_endpoint(
        name="test",
        ca=issuing_ca,
        profile=profile("tls-server"),
        allowed_identifiers=["example.test", "**.example.test", "127.0.0.0/8"],
        terms_of_service="https://pki.example.test/tos",
        website="https://pki.example.test",
        caa_identities=["pki.example.test"],
        actor="test",
    )


@pytest.fixture
def acme(client, endpoint):
    c = AcmeTestClient(client, directory_url(endpoint.name), load_key("ec-p256"))
    assert c.register().status == 201
    return c


def _order(acme: AcmeTestClient, *names: str) -> tuple[dict[str, Any], str]:
    identifiers = [{"type": "ip" if n[0].isdigit() else "dns", "value": n} for n in names]
    response = acme.post(acme.directory["newOrder"], {"identifiers": identifiers})
    assert response.status == 201, response.body
    return response.json(), response.headers["Location"]


def _authz(acme: AcmeTestClient, url: str) -> dict[str, Any]:
    return acme.post(url, None).json()


def _challenge(authz: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in authz["challenges"] if c["type"] == kind)


def _respond(acme, chall, capture) -> dict[str, Any]:
    with capture(execute=True):
        response = acme.post(chall["url"], {})
    assert response.status == 200, response.body
    assert 'rel="up"' in response.headers["Link"]
    return acme.post(chall["url"], None).json()


def _solve_http01(acme, order, http01, capture) -> None:
    for url in order["authorizations"]:
        chall = _challenge(_authz(acme, url), "http-01")
        http01.tokens[chall["token"]] = key_authorization(chall["token"], acme.key)
        assert _respond(acme, chall, capture)["status"] == "valid"


def _csr_der(key_name: str, names: list[str], cn: str | None = None) -> bytes:
    sans: list[x509.GeneralName] = []
    for n in names:
        if n[0].isdigit():
            import ipaddress

            sans.append(x509.IPAddress(ipaddress.ip_address(n)))
        else:
            sans.append(x509.DNSName(n))
    pem = make_csr(key_name, subject=f"CN={cn}" if cn else "", sans=sans)
    return x509.load_pem_x509_csr(pem).public_bytes(serialization.Encoding.DER)


def _finalize(acme, order, names, key_name="ec-p256-b"):
    return acme.post(order["finalize"], {"csr": _b64(_csr_der(key_name, names))})


def _b64(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# --- directory and nonces -----------------------------------------------------------------------


def test_directory_lists_resources_and_meta_with_nonce_and_index_link(client, endpoint):
    response = client.get("/acme/test/directory")
    body = response.json()
    assert response.status_code == 200
    assert body["newOrder"] == "http://pki.example.test/acme/test/new-order"
    assert body["renewalInfo"] == "http://pki.example.test/acme/test/renewal-info"
    assert body["meta"] == {
        "externalAccountRequired": False,
        "termsOfService": "https://pki.example.test/tos",
        "website": "https://pki.example.test",
        "caaIdentities": ["pki.example.test"],
    }
    assert response.headers["Replay-Nonce"]
    assert response.headers["Link"] == '<http://pki.example.test/acme/test/directory>;rel="index"'


def test_unknown_endpoint_is_a_problem_document_with_a_nonce(client, endpoint):
    for path in ("/acme/nope/directory", "/acme/test/no-such-thing", "/acme/test/order/x/y"):
        response = client.post(path)
        assert response.status_code == 404
        assert response.headers["Content-Type"] == "application/problem+json"
        assert response.json()["type"] == "urn:ietf:params:acme:error:malformed"
        assert response.headers["Replay-Nonce"]


def test_new_nonce_answers_head_and_get_with_fresh_nonces(client, endpoint):
    head = client.head("/acme/test/new-nonce")
    get = client.get("/acme/test/new-nonce")
    assert (head.status_code, get.status_code) == (200, 204)
    assert head.headers["Replay-Nonce"] != get.headers["Replay-Nonce"]
    assert head.headers["Cache-Control"] == "no-store"
    assert client.post("/acme/test/new-nonce").status_code == 405


# --- the whole flow -------------------------------------------------------------------------------


def test_http01_order_for_dns_and_ip_issues_a_certificate_chain(
    acme, http01, django_capture_on_commit_callbacks
):
    order, order_url = _order(acme, "www.example.test", "127.0.0.1")
    assert order["status"] == "pending"
    ip_authz = next(
        _authz(acme, u) for u in order["authorizations"] if _authz(acme, u)["identifier"]["type"] == "ip"
    )
    assert {c["type"] for c in ip_authz["challenges"]} == {"http-01", "tls-alpn-01"}  # RFC 8738: no dns-01
    _solve_http01(acme, order, http01, django_capture_on_commit_callbacks)
    assert acme.post(order_url, None).json()["status"] == "ready"

    response = _finalize(acme, order, ["www.example.test", "127.0.0.1"])
    assert response.status == 200, response.body
    final = response.json()
    assert final["status"] == "valid"
    cert_response = acme.post(final["certificate"], None)
    assert cert_response.headers["Content-Type"] == "application/pem-certificate-chain"
    chain = x509.load_pem_x509_certificates(cert_response.body)
    assert len(chain) == 3
    sans = chain[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(sans.get_values_for_type(x509.DNSName)) == {"www.example.test"}
    row = Certificate.objects.get(serial=format(chain[0].serial_number, "x"))
    assert AuditEvent.objects.filter(action="certificate.issued", object_id=str(row.pk)).exists()
    assert AuditEvent.objects.filter(action="acme.order.finalized").exists()
    # Like every issuance path: a request row, issued, with its submission audited.
    request = CertificateRequest.objects.get(pk=row.request_id)
    assert (request.state, request.requested_by, request.reviewed_by) == ("issued", row_actor(row), "auto")
    assert AuditEvent.objects.filter(action="request.submitted", object_id=str(request.pk)).exists()
    assert not row.auto_renew  # the ACME client renews it
    orders = acme.post(acme.kid + "/orders", None).json()["orders"]
    assert orders == [order_url]


def test_dns01_validates_a_wildcard_and_http01_is_not_offered_for_it(
    acme, dns_server, django_capture_on_commit_callbacks
):
    order, _order_url = _order(acme, "*.example.test")
    authz = _authz(acme, order["authorizations"][0])
    assert authz["wildcard"] is True
    assert authz["identifier"] == {"type": "dns", "value": "example.test"}
    assert [c["type"] for c in authz["challenges"]] == ["dns-01"]
    chall = authz["challenges"][0]
    dns_server.txt["_acme-challenge.example.test"] = [dns01_txt(chall["token"], acme.key)]
    assert _respond(acme, chall, django_capture_on_commit_callbacks)["status"] == "valid"
    assert _finalize(acme, order, ["*.example.test"]).json()["status"] == "valid"


def test_dns01_with_a_wrong_txt_record_invalidates_the_order(
    acme, dns_server, django_capture_on_commit_callbacks
):
    order, order_url = _order(acme, "www.example.test")
    chall = _challenge(_authz(acme, order["authorizations"][0]), "dns-01")
    dns_server.txt["_acme-challenge.www.example.test"] = ["not-the-digest"]
    result = _respond(acme, chall, django_capture_on_commit_callbacks)
    assert result["status"] == "invalid"
    assert result["error"]["type"] == "urn:ietf:params:acme:error:incorrectResponse"
    final = acme.post(order_url, None).json()
    assert final["status"] == "invalid"
    response = _finalize(acme, order, ["www.example.test"])
    assert response.problem_type == "orderNotReady"
    assert response.status == 403


def test_http01_redirect_to_another_port_is_refused(acme, http01, django_capture_on_commit_callbacks):
    order, _ = _order(acme, "www.example.test")
    chall = _challenge(_authz(acme, order["authorizations"][0]), "http-01")
    http01.redirect = "http://www.example.test:18599/.well-known/acme-challenge/x"
    result = _respond(acme, chall, django_capture_on_commit_callbacks)
    assert result["status"] == "invalid"
    assert "refused" in result["error"]["detail"]


def _tls_alpn_server(port: int, cert_pem: bytes, key_pem: bytes, tmp: Path) -> threading.Thread:
    (tmp / "c.pem").write_bytes(cert_pem)
    (tmp / "k.pem").write_bytes(key_pem)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp / "c.pem", tmp / "k.pem")
    ctx.set_alpn_protocols(["acme-tls/1"])
    listener = socket.create_server(("127.0.0.1", port))

    def serve() -> None:
        with listener:
            conn, _ = listener.accept()
            try:
                with ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1)
            except (OSError, ssl.SSLError):
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def test_tls_alpn01_validates_an_acme_identifier_certificate(
    acme, tmp_path, django_capture_on_commit_callbacks
):
    order, _ = _order(acme, "www.example.test")
    chall = _challenge(_authz(acme, order["authorizations"][0]), "tls-alpn-01")
    digest = hashlib.sha256(key_authorization(chall["token"], acme.key).encode()).digest()
    key = load_key("ec-p256-b")
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "acme")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("www.example.test")]), critical=False)
        .add_extension(
            x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.5.5.7.1.31"), b"\x04\x20" + digest),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    thread = _tls_alpn_server(TLS_PORT, cert.public_bytes(serialization.Encoding.PEM), key_pem, tmp_path)
    assert _respond(acme, chall, django_capture_on_commit_callbacks)["status"] == "valid"
    thread.join(timeout=5)


# --- strict JWS and policy: each bad request gets its problem type, nothing is issued -----------


def test_replayed_nonce_is_bad_nonce_with_a_fresh_nonce(acme):
    nonce = acme.nonce()
    first = acme.post(acme.kid, None, nonce=nonce)
    replay = acme.post(acme.kid, None, nonce=nonce)
    assert first.status == 200
    assert (replay.status, replay.problem_type) == (400, "badNonce")
    assert replay.headers["Replay-Nonce"] not in {nonce, first.headers["Replay-Nonce"]}


def test_url_header_must_be_the_request_url(acme):
    body = jws(acme.key, None, url=acme.directory["newOrder"], nonce=acme.nonce(), kid=acme.kid)
    response = acme.post_raw(acme.kid, json.dumps(body))
    assert (response.status, response.problem_type) == (403, "unauthorized")


@pytest.mark.parametrize("alg", ["none", "HS256", "RS512"])
def test_none_and_hmac_algorithms_are_refused_outside_eab(acme, alg):
    key: Any = b"k" * 32 if alg == "HS256" else acme.key
    body = jws(key, None, url=acme.kid, nonce=acme.nonce(), kid=acme.kid, alg=alg)
    response = acme.post_raw(acme.kid, json.dumps(body))
    assert (response.status, response.problem_type) == (400, "badSignatureAlgorithm")
    assert response.json()["algorithms"] == ["RS256", "ES256", "ES384", "EdDSA"]


def test_jwk_and_kid_together_are_malformed(acme):
    response = acme.post(acme.kid, None, with_jwk=True)
    assert (response.status, response.problem_type) == (400, "malformed")


def test_unknown_kid_is_account_does_not_exist(acme):
    response = acme.post(acme.directory["newOrder"], {"identifiers": []}, kid=acme.kid + "x")
    assert response.problem_type == "accountDoesNotExist"


def test_a_bad_signature_is_malformed(acme):
    body = jws(acme.key, None, url=acme.kid, nonce=acme.nonce(), kid=acme.kid)
    body["signature"] = body["signature"][::-1]
    response = acme.post_raw(acme.kid, json.dumps(body))
    assert response.problem_type == "malformed"


def test_oversized_body_is_malformed_413_and_wrong_content_type_415(acme):
    big = acme.post(acme.directory["newOrder"], {"identifiers": [], "pad": "x" * 10000})
    assert (big.status, big.problem_type) == (413, "malformed")
    wrong = acme.post_raw(acme.directory["newOrder"], "{}", content_type="application/json")
    assert (wrong.status, wrong.problem_type) == (415, "malformed")
    assert wrong.headers["Replay-Nonce"]


def test_identifier_outside_policy_is_rejected_with_subproblems(acme):
    response = acme.post(
        acme.directory["newOrder"],
        {"identifiers": [{"type": "dns", "value": "www.other.test"}, {"type": "ip", "value": "10.1.1.1"}]},
    )
    assert (response.status, response.problem_type) == (400, "rejectedIdentifier")
    assert len(response.json()["subproblems"]) == 2
    assert not AcmeOrder.objects.exists()


def test_unsupported_identifier_type_is_refused(acme):
    response = acme.post(
        acme.directory["newOrder"], {"identifiers": [{"type": "email", "value": "a@b.test"}]}
    )
    assert response.problem_type == "unsupportedIdentifier"


def row_actor(row: Certificate) -> str:
    """The audit actor of the ACME order that issued ``row``."""
    return AuditEvent.objects.get(action="certificate.issued", object_id=str(row.pk)).actor


def test_a_profile_that_now_needs_approval_refuses_finalize_and_stores_nothing(
    acme, http01, django_capture_on_commit_callbacks, endpoint
):
    order, order_url = _order(acme, "www.example.test")
    _solve_http01(acme, order, http01, django_capture_on_commit_callbacks)
    Profile.objects.filter(pk=endpoint.profile_id).update(requires_approval=True)  # after the endpoint
    response = _finalize(acme, order, ["www.example.test"])
    assert (response.status, response.problem_type) == (403, "unauthorized"), response.body
    assert "needs an operator's approval" in response.json()["detail"]
    assert not CertificateRequest.objects.exists()
    assert acme.post(order_url, None).json()["status"] == "ready"


def test_csr_with_an_extra_name_is_bad_csr_and_nothing_is_issued(
    acme, http01, django_capture_on_commit_callbacks
):
    order, order_url = _order(acme, "www.example.test")
    _solve_http01(acme, order, http01, django_capture_on_commit_callbacks)
    before = Certificate.objects.count()
    response = _finalize(acme, order, ["www.example.test", "mail.example.test"])
    assert (response.status, response.problem_type) == (400, "badCSR")
    assert "mail.example.test" in response.json()["detail"]
    assert Certificate.objects.count() == before
    assert acme.post(order_url, None).json()["status"] == "ready"
    garbage = acme.post(order["finalize"], {"csr": "AAAA"})
    assert garbage.problem_type == "badCSR"
    with_account_key = _finalize(acme, order, ["www.example.test"], key_name="ec-p256")
    assert with_account_key.problem_type == "badCSR"
    assert "account key" in with_account_key.json()["detail"]
    assert Certificate.objects.count() == before


def test_every_hostile_csr_is_bad_csr_at_finalize(acme, http01, django_capture_on_commit_callbacks, settings):
    settings.KMI_ACME = {**settings.KMI_ACME, "MAX_BODY_BYTES": 65536}  # the 10,000-character CN
    order, order_url = _order(acme, "www.example.test")
    _solve_http01(acme, order, http01, django_capture_on_commit_callbacks)
    before = Certificate.objects.count()
    for case, (build, reason) in sorted(hostile_csr.CORPUS.items()):
        response = acme.post(order["finalize"], {"csr": _b64(hostile_csr.der(build()))})
        assert (response.status, response.problem_type) == (400, "badCSR"), (case, response.body)
        assert reason in response.json()["detail"], case
    assert Certificate.objects.count() == before
    assert acme.post(order_url, None).json()["status"] == "ready"


def test_finalize_of_a_pending_order_is_order_not_ready(acme):
    order, _ = _order(acme, "www.example.test")
    response = _finalize(acme, order, ["www.example.test"])
    assert (response.status, response.problem_type) == (403, "orderNotReady")


def test_another_accounts_order_is_unauthorized(acme, client, endpoint):
    _, order_url = _order(acme, "www.example.test")
    other = AcmeTestClient(client, directory_url(endpoint.name), load_key("ec-p384"))
    assert other.register().status == 201
    assert other.post(order_url, None).problem_type == "unauthorized"


# --- accounts ---------------------------------------------------------------------------------------


def test_new_account_returns_the_existing_account_and_only_return_existing(acme, client, endpoint):
    again = acme.register()
    assert again.status == 200
    assert again.headers["Location"] == acme.kid
    stranger = AcmeTestClient(client, directory_url(endpoint.name), load_key("ed25519"))
    response = stranger.register(onlyReturnExisting=True)
    assert response.problem_type == "accountDoesNotExist"


def test_terms_of_service_must_be_agreed(client, endpoint):
    c = AcmeTestClient(client, directory_url(endpoint.name), load_key("rsa-2048"))
    response = c.post(c.directory["newAccount"], {"termsOfServiceAgreed": False}, kid=None)
    assert response.problem_type == "malformed"
    assert c.register().status == 201  # RS256 accounts work too


def test_account_update_and_deactivation(acme):
    updated = acme.post(acme.kid, {"contact": ["mailto:ops@example.test"]})
    assert updated.json()["contact"] == ["mailto:ops@example.test"]
    assert acme.post(acme.kid, {"contact": ["tel:+1"]}).problem_type == "malformed"
    gone = acme.post(acme.kid, {"status": "deactivated"})
    assert gone.json()["status"] == "deactivated"
    # RFC 8555 §7.3.6: requests of a deactivated account get 401 unauthorized.
    for refused in (acme.post(acme.kid, None), acme.register()):
        assert (refused.status, refused.problem_type) == (401, "unauthorized")
    assert AuditEvent.objects.filter(action="acme.account.deactivated").count() == 1


def test_a_request_without_a_nonce_is_bad_nonce(acme):
    body = jws(acme.key, {}, url=acme.directory["newOrder"], nonce=None, kid=acme.kid)
    response = acme.post_raw(acme.directory["newOrder"], json.dumps(body))
    assert (response.status, response.problem_type) == (400, "badNonce")
    assert response.headers["Replay-Nonce"]


@pytest.mark.parametrize(
    ("error", "problem_type", "status", "retry_after"),
    [
        ("CAUnavailable", "serverInternal", 503, "30"),
        ("KeyBackendError", "serverInternal", 503, "30"),
        ("SigningUnavailable", "serverInternal", 503, "5"),
        ("InvalidCSR", "badCSR", 400, None),
        ("NameNotAllowed", "badCSR", 400, None),
        ("PKIError", "serverInternal", 500, None),
    ],
)
def test_domain_errors_at_finalize_get_their_acme_type_in_one_place(
    acme, http01, django_capture_on_commit_callbacks, monkeypatch, error, problem_type, status, retry_after
):
    from pki import exceptions
    from pki.acme import finalize

    order, order_url = _order(acme, "www.example.test")
    _solve_http01(acme, order, http01, django_capture_on_commit_callbacks)

    def failing(*_, **__):
        raise getattr(exceptions, error)(f"injected {error}")

    monkeypatch.setattr(finalize, "submit_and_issue", failing)
    response = _finalize(acme, order, ["www.example.test"])
    assert (response.status, response.problem_type) == (status, problem_type), response.body
    assert response.headers.get("Retry-After") == retry_after
    assert acme.post(order_url, None).json()["status"] == "ready"  # nothing changed


def test_redis_down_acme_keeps_working_with_nonces_from_the_database(
    acme, settings, http01, django_capture_on_commit_callbacks
):
    from pki.acme import nonces

    from_redis = acme.nonce()
    settings.REDIS_URL = "redis://127.0.0.1:21299/0"  # nothing listens there (our port range)
    nonces.BREAKER.reset()
    try:
        directory = acme.get(directory_url("test"))
        assert directory.status == 200
        assert directory.headers["Replay-Nonce"]
        # A nonce Redis issued before the outage cannot be checked: badNonce, with a fresh one.
        stale = acme.post(acme.directory["newOrder"], {"identifiers": []}, nonce=from_redis)
        assert (stale.status, stale.problem_type) == (400, "badNonce")
        assert stale.headers["Replay-Nonce"]
        order, _ = _order(acme, "www.example.test")
        _solve_http01(acme, order, http01, django_capture_on_commit_callbacks)
        assert _finalize(acme, order, ["www.example.test"]).json()["status"] == "valid"
    finally:
        nonces.BREAKER.reset()


def test_key_change_rolls_the_key_and_the_old_key_is_refused(acme, client, endpoint):
    new_key = load_key("ec-p256-b")
    url = acme.directory["keyChange"]
    inner = jws(
        new_key,
        {"account": acme.kid, "oldKey": json.loads(json.dumps(_jwk(acme.key)))},
        url=url,
        nonce=None,
    )
    response = acme.post(url, json.dumps(inner).encode())
    assert response.status == 200, response.body
    assert acme.post(acme.kid, None).problem_type == "malformed"  # the old key no longer verifies
    assert acme.post(acme.kid, None, key=new_key).status == 200
    account = AcmeAccount.objects.get()
    assert account.jwk == _jwk(new_key)
    assert AuditEvent.objects.filter(action="acme.account.key_changed").exists()


def test_key_change_to_a_key_of_another_account_is_a_conflict(acme, client, endpoint):
    other_key = load_key("ec-p384")
    other = AcmeTestClient(client, directory_url(endpoint.name), other_key)
    other.register()
    url = acme.directory["keyChange"]
    inner = jws(other_key, {"account": acme.kid, "oldKey": _jwk(acme.key)}, url=url, nonce=None)
    response = acme.post(url, json.dumps(inner).encode())
    assert (response.status, response.problem_type) == (409, "conflict")
    assert response.headers["Location"] == other.kid


def _jwk(key: Any) -> dict[str, Any]:
    from pki.acme.jws import jwk_of

    return jwk_of(key.public_key())


def test_eab_required_endpoint_binds_an_account_once(client, issuing_ca, profile):
    endpoint = create_endpoint(
        name="eab",
        ca=issuing_ca,
        profile=profile("tls-server"),
        allowed_identifiers=["**.example.test"],
        eab_required=True,
        actor="test",
    )
    eab_key, hmac_key = create_eab_key(endpoint=endpoint, actor="test")
    c = AcmeTestClient(client, directory_url("eab"), load_key("ec-p256"))
    assert c.directory["meta"]["externalAccountRequired"] is True
    assert c.register().problem_type == "externalAccountRequired"
    wrong = c.register(externalAccountBinding=c.eab(eab_key.key_id, "A" * 43))
    assert wrong.problem_type == "unauthorized"
    assert c.register(externalAccountBinding=c.eab(eab_key.key_id, hmac_key)).status == 201
    again = AcmeTestClient(client, directory_url("eab"), load_key("ec-p384"))
    assert again.register(externalAccountBinding=again.eab(eab_key.key_id, hmac_key)).problem_type == (
        "unauthorized"
    )
    assert AcmeAccount.objects.get().eab_key == eab_key


# --- revocation and renewal information ------------------------------------------------------------


@pytest.fixture
def issued(acme, http01, django_capture_on_commit_callbacks):
    order, _order_url = _order(acme, "www.example.test")
    _solve_http01(acme, order, http01, django_capture_on_commit_callbacks)
    final = _finalize(acme, order, ["www.example.test"]).json()
    pem = acme.post(final["certificate"], None).body
    return x509.load_pem_x509_certificates(pem)[0]


def test_after_a_root_rollover_the_cross_signed_chain_is_an_alternate(acme, issued, root_ca):
    """RFC 8555 §7.4.2: the chain through the link certificate is offered as rel="alternate"."""
    from pki.models import CAGeneration
    from pki.rotation import rollover_ca

    order_url = acme.post(acme.kid + "/orders", None).json()["orders"][0]
    cert_url = acme.post(order_url, None).json()["certificate"]
    single = acme.post(cert_url, None)
    assert "alternate" not in single.headers.get("Link", "")
    rollover_ca(ca=root_ca, actor="t")
    default = acme.post(cert_url, None)
    links = [part.strip() for part in default.headers["Link"].split(",")]
    alternates = [link[1 : link.index(">")] for link in links if 'rel="alternate"' in link]
    assert alternates == [cert_url + "/1"]
    other = acme.post(alternates[0], None)
    assert other.status == 200
    assert f'<{cert_url}>;rel="alternate"' in other.headers["Link"]
    usual, cross = (x509.load_pem_x509_certificates(r.body) for r in (default, other))
    new_root = CAGeneration.objects.get(ca=root_ca, number=2)
    assert usual[0] == cross[0] == issued
    assert usual[1] == cross[1]
    assert cross[2] == new_root.link_to_previous.x509()  # the old root key certified by the new
    assert cross[3] == new_root.x509_certificate()
    cross[2].verify_directly_issued_by(cross[3])
    usual[1].verify_directly_issued_by(cross[2])
    missing = acme.post(cert_url + "/2", None)
    assert missing.status == 404


def test_revoke_by_account_then_already_revoked(acme, issued):
    der = issued.public_bytes(serialization.Encoding.DER)
    bad = acme.post(acme.directory["revokeCert"], {"certificate": _b64(der), "reason": 2})
    assert bad.problem_type == "badRevocationReason"
    assert acme.post(acme.directory["revokeCert"], {"certificate": _b64(der), "reason": 4}).status == 200
    row = Certificate.objects.get(serial=format(issued.serial_number, "x"))
    assert row.revocation_reason == "superseded"
    again = acme.post(acme.directory["revokeCert"], {"certificate": _b64(der)})
    assert again.problem_type == "alreadyRevoked"


def test_revoke_signed_by_the_certificate_key_and_not_by_a_stranger(acme, issued, client, endpoint):
    der = issued.public_bytes(serialization.Encoding.DER)
    stranger = AcmeTestClient(client, directory_url(endpoint.name), load_key("ec-p384"))
    stranger.register()
    refused = stranger.post(stranger.directory["revokeCert"], {"certificate": _b64(der)})
    assert refused.problem_type == "unauthorized"
    by_key = acme.post(
        acme.directory["revokeCert"],
        {"certificate": _b64(der), "reason": 1},
        key=load_key("ec-p256-b"),
        kid=None,
    )
    assert by_key.status == 200, by_key.body
    assert (
        Certificate.objects.get(serial=format(issued.serial_number, "x")).revocation_reason == "keyCompromise"
    )


def test_renewal_info_window_and_replaces(acme, issued, http01, django_capture_on_commit_callbacks):
    from pki.acme.certificates import cert_id

    cid = cert_id(issued)
    info = acme.get(f"{acme.directory['renewalInfo']}/{cid}")
    assert info.status == 200
    window = info.json()["suggestedWindow"]
    start = dt.datetime.fromisoformat(window["start"])
    assert (
        issued.not_valid_before_utc
        < start
        < dt.datetime.fromisoformat(window["end"])
        < issued.not_valid_after_utc
    )
    assert info.headers["Retry-After"] == "21600"
    assert acme.get(f"{acme.directory['renewalInfo']}/AAAA.AQ").status == 404

    response = acme.post(
        acme.directory["newOrder"],
        {"identifiers": [{"type": "dns", "value": "www.example.test"}], "replaces": cid},
    )
    assert response.status == 201
    order = response.json()
    assert order["replaces"] == cid
    _solve_http01(acme, order, http01, django_capture_on_commit_callbacks)
    assert _finalize(acme, order, ["www.example.test"]).json()["status"] == "valid"
    twice = acme.post(
        acme.directory["newOrder"],
        {"identifiers": [{"type": "dns", "value": "www.example.test"}], "replaces": cid},
    )
    assert (twice.status, twice.problem_type) == (409, "alreadyReplaced")


# --- lifecycle edges ----------------------------------------------------------------------------


def test_deactivating_an_authorization_invalidates_its_order(acme):
    order, order_url = _order(acme, "www.example.test")
    authz_url = order["authorizations"][0]
    assert acme.post(authz_url, {"status": "valid"}).problem_type == "malformed"
    response = acme.post(authz_url, {"status": "deactivated"})
    assert response.json()["status"] == "deactivated"
    assert acme.post(order_url, None).json()["status"] == "invalid"
    assert acme.post(authz_url, {"status": "deactivated"}).problem_type == "malformed"


def test_an_expired_order_becomes_invalid(acme, time_machine):
    order, order_url = _order(acme, "www.example.test")
    time_machine.move_to(dt.datetime.now(dt.UTC) + dt.timedelta(days=8))
    assert acme.post(order_url, None).json()["status"] == "invalid"
    assert _finalize(acme, order, ["www.example.test"]).problem_type == "orderNotReady"


def test_not_before_is_refused_and_not_after_must_be_within_the_cap(
    acme, http01, django_capture_on_commit_callbacks
):
    ident = [{"type": "dns", "value": "www.example.test"}]
    soon = (dt.datetime.now(dt.UTC) + dt.timedelta(days=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    far = (dt.datetime.now(dt.UTC) + dt.timedelta(days=900)).strftime("%Y-%m-%dT%H:%M:%SZ")
    new_order = acme.directory["newOrder"]
    assert acme.post(new_order, {"identifiers": ident, "notBefore": soon}).problem_type == "malformed"
    assert acme.post(new_order, {"identifiers": ident, "notAfter": "tomorrow"}).problem_type == "malformed"
    assert acme.post(new_order, {"identifiers": ident, "notAfter": far}).problem_type == "rejectedIdentifier"
    response = acme.post(new_order, {"identifiers": ident, "notAfter": soon})
    assert response.status == 201
    order = response.json()
    _solve_http01(acme, order, http01, django_capture_on_commit_callbacks)
    final = _finalize(acme, order, ["www.example.test"]).json()
    cert = x509.load_pem_x509_certificates(acme.post(final["certificate"], None).body)[0]
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days <= 10


def test_validation_runs_through_celery_when_not_inline(
    acme, http01, settings, django_capture_on_commit_callbacks
):
    from web.celery import app

    settings.KMI_ACME = {**settings.KMI_ACME, "VALIDATE_INLINE": False}
    order, _ = _order(acme, "www.example.test")
    chall = _challenge(_authz(acme, order["authorizations"][0]), "http-01")
    http01.tokens[chall["token"]] = key_authorization(chall["token"], acme.key)
    app.conf.task_always_eager = True
    try:
        assert _respond(acme, chall, django_capture_on_commit_callbacks)["status"] == "valid"
    finally:
        app.conf.task_always_eager = False
    again = acme.post(chall["url"], {})  # a repeated response changes nothing
    assert again.json()["status"] == "valid"


def test_renewal_window_of_a_revoked_certificate_is_in_the_past(acme, issued):
    from pki.acme.certificates import cert_id

    der = issued.public_bytes(serialization.Encoding.DER)
    acme.post(acme.directory["revokeCert"], {"certificate": _b64(der)})
    window = acme.get(f"{acme.directory['renewalInfo']}/{cert_id(issued)}").json()["suggestedWindow"]
    assert dt.datetime.fromisoformat(window["end"]) <= dt.datetime.now(dt.UTC)
    for bad in ("nodot", "AAAA.gA", "!!.AQ"):
        assert acme.get(f"{acme.directory['renewalInfo']}/{bad}").problem_type == "malformed"


def test_replaces_must_name_a_certificate_of_this_account(acme, issued, client, endpoint):
    from pki.acme.certificates import cert_id

    other = AcmeTestClient(client, directory_url(endpoint.name), load_key("ec-p384"))
    other.register()
    response = other.post(
        other.directory["newOrder"],
        {"identifiers": [{"type": "dns", "value": "www.example.test"}], "replaces": cert_id(issued)},
    )
    assert response.problem_type == "unauthorized"


def test_key_change_refuses_bad_inner_requests(acme):
    url = acme.directory["keyChange"]
    new_key = load_key("ec-p384")
    cases = [
        (
            jws(new_key, {"account": acme.kid, "oldKey": _jwk(acme.key)}, url=url, nonce=None, kid=acme.kid),
            "malformed",
        ),
        (jws(new_key, {"account": acme.kid, "oldKey": _jwk(acme.key)}, url=url, nonce="n"), "malformed"),
        (
            jws(new_key, {"account": acme.kid, "oldKey": _jwk(acme.key)}, url=url + "x", nonce=None),
            "malformed",
        ),
        (
            jws(new_key, {"account": acme.kid + "x", "oldKey": _jwk(acme.key)}, url=url, nonce=None),
            "unauthorized",
        ),
        (jws(new_key, {"account": acme.kid, "oldKey": _jwk(new_key)}, url=url, nonce=None), "unauthorized"),
        (jws(new_key, {"account": acme.kid}, url=url, nonce=None), "malformed"),
        (
            jws(b"k" * 32, {"account": acme.kid}, url=url, nonce=None, alg="HS256", with_jwk=False),
            "badSignatureAlgorithm",
        ),
    ]
    for inner, problem_type in cases:
        assert acme.post(url, json.dumps(inner).encode()).problem_type == problem_type
    assert AcmeAccount.objects.get().jwk == _jwk(acme.key)


def test_eab_binding_must_be_exact(client, issuing_ca, profile):
    endpoint = create_endpoint(
        name="eab", ca=issuing_ca, profile=profile("tls-server"), eab_required=True, actor="test"
    )
    eab_key, hmac_key = create_eab_key(endpoint=endpoint, actor="test")
    c = AcmeTestClient(client, directory_url("eab"), load_key("ec-p256"))
    wrong_url = c.eab(eab_key.key_id, hmac_key, url=c.directory["newOrder"])
    assert c.register(externalAccountBinding=wrong_url).problem_type == "unauthorized"
    assert c.register(externalAccountBinding=c.eab("kmi-unknown", hmac_key)).problem_type == "unauthorized"
    other = AcmeTestClient(client, directory_url("eab"), load_key("ec-p384"))
    other_key_binding = other.eab(eab_key.key_id, hmac_key)
    assert c.register(externalAccountBinding=other_key_binding).problem_type == "unauthorized"
    assert c.register(externalAccountBinding="x").problem_type == "malformed"
    assert not AcmeAccount.objects.exists()


def test_an_account_url_signed_by_another_account_is_unauthorized(acme, client, endpoint):
    other = AcmeTestClient(client, directory_url(endpoint.name), load_key("ec-p384"))
    other.register()
    assert other.post(acme.kid, None).problem_type == "unauthorized"
    assert other.post(acme.kid + "/orders", None).problem_type == "unauthorized"
    existing = other.register(onlyReturnExisting=True)
    assert (existing.status, existing.headers["Location"]) == (200, other.kid)


def test_endpoint_key_types_and_validity_apply_at_finalize(
    client, issuing_ca, profile, http01, django_capture_on_commit_callbacks
):
    create_endpoint(
        name="rsa-only",
        ca=issuing_ca,
        profile=profile("tls-server"),
        allowed_identifiers=["**.example.test"],
        key_types=["rsa"],
        validity_days=30,
        actor="test",
    )
    c = AcmeTestClient(client, directory_url("rsa-only"), load_key("ec-p256"))
    c.register()
    order, _ = _order(c, "www.example.test")
    _solve_http01(c, order, http01, django_capture_on_commit_callbacks)
    refused = _finalize(c, order, ["www.example.test"], key_name="ec-p256-b")
    assert refused.problem_type == "badCSR"
    final = _finalize(c, order, ["www.example.test"], key_name="rsa-2048").json()
    cert = x509.load_pem_x509_certificates(c.post(final["certificate"], None).body)[0]
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc) <= dt.timedelta(days=30)


def test_a_valid_authorization_of_the_account_is_reused_by_its_next_order(
    acme, http01, client, endpoint, settings, django_capture_on_commit_callbacks
):
    first, _ = _order(acme, "www.example.test")
    _solve_http01(acme, first, http01, django_capture_on_commit_callbacks)
    again, _ = _order(acme, "www.example.test")
    assert again["status"] == "ready"
    authz = _authz(acme, again["authorizations"][0])
    assert authz["status"] == "valid"
    assert [c["status"] for c in authz["challenges"]] == ["valid"]
    assert _finalize(acme, again, ["www.example.test"]).json()["status"] == "valid"
    # Not across accounts, not for other names, and not when switched off.
    other = AcmeTestClient(client, directory_url(endpoint.name), load_key("ec-p384"))
    other.register()
    assert _order(other, "www.example.test")[0]["status"] == "pending"
    assert _order(acme, "www.example.test", "mail.example.test")[0]["status"] == "pending"
    settings.KMI_ACME = {**settings.KMI_ACME, "REUSE_AUTHORIZATIONS": False}
    assert _order(acme, "www.example.test")[0]["status"] == "pending"


# --- worker-only signing (KMI_SIGNING=worker) ---------------------------------------------------


@pytest.fixture
def worker_signing(lifecycle_conf):
    lifecycle_conf(SIGNING="worker")


def test_with_worker_signing_finalize_hands_the_order_to_a_signing_worker(
    acme, http01, django_capture_on_commit_callbacks, worker_signing, published_tasks, private_key_loads
):
    from pki.acme.finalize import complete_finalization

    order, order_url = _order(acme, "www.example.test")
    _solve_http01(acme, order, http01, django_capture_on_commit_callbacks)
    private_key_loads.clear()
    with django_capture_on_commit_callbacks(execute=True):
        response = _finalize(acme, order, ["www.example.test"])
    assert response.status == 200, response.body
    assert response.json()["status"] == "processing"  # RFC 8555 §7.4: the client polls
    assert response.headers["Retry-After"]
    assert private_key_loads == []  # the web side signed nothing
    [(_task, queue, body)] = [p for p in published_tasks if p[0] == "pki.signing.acme_finalize"]
    assert queue == "signing"
    order_row = AcmeOrder.objects.get(token=order_url.rsplit("/", 1)[1])
    assert body[1] == {"order_id": order_row.pk}  # the id only: no CSR, no key, no actor

    # What the signing worker runs: the actor is the order's account from the database, not the
    # message's; a replayed message changes nothing.
    from pki.tasks import acme_finalize

    assert acme_finalize(order_row.pk, "alice") == "valid"
    order_row.refresh_from_db()
    issued = AuditEvent.objects.get(action="certificate.issued", object_id=str(order_row.certificate_id))
    assert issued.actor == f"acme:{order_row.account.endpoint.name}:{order_row.account.token}"
    assert not AuditEvent.objects.filter(actor="alice").exists()
    assert complete_finalization(order_id=order_row.pk, actor="acme:signer").status == "valid"
    final = acme.post(order_url, None).json()
    assert final["status"] == "valid"
    assert Certificate.objects.filter(acme_order__pk=order_row.pk).count() == 1
    assert acme_finalize(10**9) == "unknown"
    chain = x509.load_pem_x509_certificates(acme.post(final["certificate"], None).body)
    assert chain[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName
    ) == ["www.example.test"]


def test_a_processing_order_fails_cleanly_when_the_policy_changed_before_the_worker_ran(
    acme, http01, endpoint, django_capture_on_commit_callbacks, worker_signing
):
    from pki.acme.finalize import complete_finalization, finalize_pending_orders

    order, order_url = _order(acme, "www.example.test")
    _solve_http01(acme, order, http01, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=False):
        assert _finalize(acme, order, ["www.example.test"]).json()["status"] == "processing"
    profile = endpoint.profile
    profile.allowed_names = ["dns:*.other.test"]
    profile.save()
    order_row = AcmeOrder.objects.get(token=order_url.rsplit("/", 1)[1])
    # The message was never sent (captured above): the sweep on the beat schedule picks it up.
    assert finalize_pending_orders(actor="acme:signer") == 1
    order_row.refresh_from_db()
    assert order_row.status == "invalid"
    assert order_row.error["type"] == "urn:ietf:params:acme:error:badCSR"
    assert order_row.certificate is None
    assert complete_finalization(order_id=order_row.pk, actor="acme:signer").status == "invalid"
    assert acme.post(order_url, None).json()["status"] == "invalid"


def test_finalize_with_a_key_revoked_for_key_compromise_is_bad_public_key(
    acme, http01, django_capture_on_commit_callbacks
):
    from pki.blocklist import REFUSED_ACTION
    from pki.revocation import revoke_key
    from pki.x509.csr import spki_fingerprint

    fingerprint = spki_fingerprint(load_key("ec-p256-b").public_key())
    revoke_key(spki_sha256=fingerprint, actor="ops")
    order, order_url = _order(acme, "www.example.test")
    _solve_http01(acme, order, http01, django_capture_on_commit_callbacks)
    before = Certificate.objects.count()
    response = _finalize(acme, order, ["www.example.test"])
    assert (response.status, response.problem_type) == (400, "badPublicKey")
    assert "never certified again" in response.json()["detail"]
    assert Certificate.objects.count() == before
    assert acme.post(order_url, None).json()["status"] == "ready"
    refusal = AuditEvent.objects.get(action=REFUSED_ACTION)
    assert refusal.details["path"] == "acme.finalize"
    assert refusal.details["spki_sha256"] == fingerprint
