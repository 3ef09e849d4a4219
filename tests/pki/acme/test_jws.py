"""Strict JWS verification: algorithms, keys, serialization, thumbprints."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from pki.acme import jws as jose
from pki.acme.exceptions import BadNonce, BadPublicKey, BadSignatureAlgorithm, Malformed, Unauthorized
from tests.acme_support import b64u, jws
from tests.conftest import load_key

URL = "http://pki.example.test/acme/x/new-order"


@pytest.mark.parametrize(
    ("key_name", "alg"),
    [("ec-p256", "ES256"), ("ec-p384", "ES384"), ("rsa-2048", "RS256"), ("ed25519", "EdDSA")],
)
def test_each_allowed_algorithm_verifies_with_its_key(key_name, alg):
    key = load_key(key_name)
    parsed = jose.parse(json.dumps(jws(key, {"a": 1}, url=URL, nonce="n")))
    assert parsed.alg == alg
    jose.check_header(parsed, url=URL)
    jose.verify(parsed, jose.public_key_from_jwk(parsed.header["jwk"]))
    assert parsed.json_payload() == {"a": 1}


def test_a_signature_by_another_key_is_malformed():
    parsed = jose.parse(json.dumps(jws(load_key("ec-p256"), {}, url=URL, nonce="n")))
    with pytest.raises(Malformed, match="does not verify"):
        jose.verify(parsed, load_key("ec-p256-b").public_key())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("key_name", "alg"), [("ec-p256", "ES384"), ("rsa-2048", "ES256"), ("ed25519", "RS256")]
)
def test_an_alg_that_does_not_match_the_key_is_refused(key_name, alg):
    key = load_key(key_name)
    body = jws(key, {}, url=URL, nonce="n")
    header = json.loads(jose.b64u_decode(body["protected"], what="h"))
    header["alg"] = alg
    body["protected"] = b64u(json.dumps(header).encode())
    with pytest.raises(BadSignatureAlgorithm):
        jose.verify(jose.parse(json.dumps(body)), key.public_key())  # type: ignore[arg-type]


def test_an_ecdsa_signature_of_the_wrong_length_is_malformed():
    key = load_key("ec-p256")
    body = jws(key, {}, url=URL, nonce="n")
    body["signature"] = b64u(b"\1" * 70)
    with pytest.raises(Malformed, match="r \\|\\| s"):
        jose.verify(jose.parse(json.dumps(body)), key.public_key())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        json.dumps({"protected": "e30", "payload": "", "signature": "", "header": {}}).encode(),
        json.dumps({"payload": "", "signatures": []}).encode(),
        json.dumps({"protected": "e30=", "payload": "", "signature": ""}).encode(),
        json.dumps({"protected": b64u(b"[1]"), "payload": "", "signature": ""}).encode(),
        json.dumps({"protected": b64u(b"{"), "payload": "", "signature": ""}).encode(),
        json.dumps({"protected": b64u(b'{"crit":["b64"]}'), "payload": "", "signature": ""}).encode(),
        json.dumps({"protected": "e30", "payload": "a+b/", "signature": ""}).encode(),
        json.dumps(
            {"protected": b64u(b'{"alg":"ES256","alg":"none"}'), "payload": "", "signature": ""}
        ).encode(),
        b'{"protected": "e30", "protected": "e30", "payload": "", "signature": ""}',
    ],
)
def test_anything_but_a_flattened_jws_is_malformed(body):
    with pytest.raises(Malformed):
        jose.parse(body)


def test_header_checks_kid_xor_jwk_url_and_nonce():
    key = load_key("ec-p256")
    both = jose.parse(json.dumps(jws(key, None, url=URL, nonce="n", kid="k", with_jwk=True)))
    with pytest.raises(Malformed, match="exactly one"):
        jose.check_header(both, url=URL)
    no_nonce = jose.parse(json.dumps(jws(key, None, url=URL, nonce=None)))
    with pytest.raises(BadNonce, match="no nonce"):  # RFC 8555 §6.5
        jose.check_header(no_nonce, url=URL)
    with pytest.raises(Unauthorized):
        jose.check_header(no_nonce, url=URL + "/x")
    assert no_nonce.is_post_as_get
    with pytest.raises(Malformed):
        no_nonce.json_payload()


@pytest.mark.parametrize(
    ("jwk", "error"),
    [
        ("x", Malformed),
        ({"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA", "d": "AA"}, Malformed),
        ({"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"}, BadPublicKey),
        ({"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}, Malformed),
        ({"kty": "EC", "crv": "P-256", "x": b64u(b"\1" * 32), "y": b64u(b"\1" * 32)}, BadPublicKey),
        ({"kty": "OKP", "crv": "Ed448", "x": "AA"}, BadPublicKey),
        ({"kty": "OKP", "crv": "Ed25519", "x": "AA"}, Malformed),
        ({"kty": "oct", "k": "AA"}, Malformed),
        ({"kty": "DSA"}, BadPublicKey),
        ({"kty": "RSA", "n": b64u((2**1023 + 1).to_bytes(128, "big")), "e": "AQAB"}, BadPublicKey),
        ({"kty": "RSA", "n": b64u((2**2047 + 1).to_bytes(256, "big")), "e": "Ag"}, BadPublicKey),
    ],
)
def test_bad_account_keys_are_refused(jwk, error):
    with pytest.raises(error):
        jose.public_key_from_jwk(jwk)


def test_rfc7638_thumbprint_example():
    # RFC 7638 §3.1 example key and thumbprint.
    jwk = {
        "kty": "RSA",
        "n": (
            "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECP"
            "ebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY"
            "368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0f"
            "M4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
        ),
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29",
    }
    assert jose.jwk_thumbprint(jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    assert jose.canonical_jwk(jwk) == {"e": "AQAB", "kty": "RSA", "n": jwk["n"]}


def test_jwk_of_round_trips_every_account_key_type():
    for name in ("ec-p256", "ec-p384", "rsa-2048", "ed25519"):
        public = load_key(name).public_key()
        again = jose.public_key_from_jwk(jose.jwk_of(public))
        assert jose.jwk_of(again) == jose.jwk_of(public)
    with pytest.raises(BadPublicKey):
        jose.jwk_of(load_key("ec-p521").public_key())
    assert isinstance(
        jose.public_key_from_jwk(jose.jwk_of(load_key("rsa-2048").public_key())), rsa.RSAPublicKey
    )


def test_hmac_is_verified_only_with_hs_algorithms():
    key = b"k" * 32
    good = jose.parse(json.dumps(jws(key, {"x": 1}, url=URL, nonce=None, kid="eab", alg="HS256")))
    jose.verify_hmac(good, key)
    with pytest.raises(Unauthorized):
        jose.verify_hmac(good, b"other" * 8)
    ec_signed = jose.parse(json.dumps(jws(load_key("ec-p256"), {}, url=URL, nonce=None)))
    with pytest.raises(BadSignatureAlgorithm):
        jose.verify_hmac(ec_signed, key)
