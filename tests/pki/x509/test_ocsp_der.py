"""The OCSP DER codec: strict request parsing, exact response encoding."""

from __future__ import annotations

import contextlib
import datetime as dt

import pytest
from cryptography.x509 import ocsp
from hypothesis import given
from hypothesis import strategies as st

from pki.x509 import der, ocsp_der
from pki.x509.der import TAG_INTEGER as INTEGER
from pki.x509.der import TAG_OCTET_STRING as OCTET_STRING
from pki.x509.der import TAG_SEQUENCE as SEQUENCE
from pki.x509.der import oid as encode_oid
from pki.x509.der import tlv
from pki.x509.ocsp_der import MalformedRequest, parse_request

SHA1_ALG = tlv(SEQUENCE, encode_oid("1.3.14.3.2.26") + bytes([0x05, 0]))
CERT_ID = tlv(
    SEQUENCE,
    SHA1_ALG + tlv(OCTET_STRING, b"n" * 20) + tlv(OCTET_STRING, b"k" * 20) + tlv(INTEGER, b"\x01\x02"),
)


def _request(tbs_fields: bytes, *, signature: bytes = b"") -> bytes:
    return tlv(SEQUENCE, tlv(SEQUENCE, tbs_fields) + signature)


def _list(*cert_ids: bytes) -> bytes:
    return tlv(SEQUENCE, b"".join(tlv(SEQUENCE, c) for c in cert_ids))


def test_request_fields_are_read_and_the_cert_id_kept_byte_for_byte():
    parsed = parse_request(_request(_list(CERT_ID, CERT_ID)))
    assert len(parsed.cert_ids) == 2
    cid = parsed.cert_ids[0]
    assert (cid.hash_algorithm, cid.issuer_name_hash, cid.issuer_key_hash) == ("sha1", b"n" * 20, b"k" * 20)
    assert cid.serial_number == 0x0102
    assert cid.der == CERT_ID
    assert parsed.nonce is None


def test_explicit_v1_requestor_name_and_signature_are_accepted():
    version = tlv(0xA0, bytes([INTEGER, 1, 0]))
    requestor = tlv(0xA1, tlv(0x82, b"client.example.test"))
    signature = tlv(0xA0, tlv(SEQUENCE, SHA1_ALG + tlv(0x03, b"\x00sig")))
    parsed = parse_request(_request(version + requestor + _list(CERT_ID), signature=signature))
    assert parsed.cert_ids[0].der == CERT_ID


@pytest.mark.parametrize(
    "data",
    [
        _request(tlv(0xA0, bytes([INTEGER, 1, 1])) + _list(CERT_ID)),  # version 2
        _request(_list(CERT_ID)) + b"\x00",  # trailing bytes
        _request(tlv(SEQUENCE, b"")),  # empty requestList
        _request(_list(*[CERT_ID] * 17)),  # too many
        _request(_list(CERT_ID) + tlv(0xA3, b"")),  # unknown field
        bytes([SEQUENCE, 0x81, 0x05]) + b"\x30\x03\x30\x01\x00",  # non-minimal length
        bytes([SEQUENCE, 0x80, 0, 0]),  # indefinite length
        bytes([0x1F, 0x01, 0x00]),  # high tag number
        _request(_list(tlv(SEQUENCE, SHA1_ALG + tlv(OCTET_STRING, b"n") + tlv(INTEGER, b"\x01")))),
        _request(_list(CERT_ID.replace(bytes([INTEGER, 2, 1, 2]), bytes([INTEGER, 0])))),  # empty serial
    ],
)
def test_malformed_requests_are_refused(data):
    with pytest.raises(MalformedRequest):
        parse_request(data)


@given(st.binary(max_size=512))
def test_any_bytes_parse_or_raise_malformed_request_only(data):
    with contextlib.suppress(MalformedRequest):
        parse_request(data)


def test_oid_round_trip_and_minimal_encoding():
    for dotted in ("1.3.14.3.2.26", "2.16.840.1.101.3.4.2.1", "1.2.840.113549.1.1.11", "2.999.1"):
        encoded = encode_oid(dotted)
        assert ocsp_der.decode_oid(encoded[2:]) == dotted
    with pytest.raises(MalformedRequest):
        ocsp_der.decode_oid(b"\x2b\x80\x01")  # a leading 0x80 in an arc


def test_response_encoding_is_what_cryptography_reads():
    this_update = dt.datetime(2026, 6, 1, 12, tzinfo=dt.UTC)
    singles = [
        ocsp_der.single_response(
            ocsp_der.SingleStatus(CERT_ID, "revoked", this_update, 1),
            this_update=this_update,
            next_update=this_update + dt.timedelta(hours=1),
        )
    ]
    tbs = ocsp_der.response_data(
        responder_key_hash=b"h" * 20, produced_at=this_update, singles=singles, nonce=None
    )
    encoded = ocsp_der.ocsp_response(
        tbs_response_data=tbs,
        signature_algorithm=der.algorithm_identifier("1.2.840.10045.4.3.2"),
        signature=b"\x30\x06\x02\x01\x01\x02\x01\x01",
        certificates=[],
    )
    resp = ocsp.load_der_ocsp_response(encoded)
    assert resp.responder_key_hash == b"h" * 20
    assert resp.tbs_response_bytes == tbs
    assert resp.revocation_time_utc == this_update
    assert resp.serial_number == 0x0102
    with pytest.raises(ValueError, match="status"):
        ocsp_der.single_response(
            ocsp_der.SingleStatus(CERT_ID, "revoked"), this_update=this_update, next_update=this_update
        )


@pytest.mark.parametrize("padded", [b"\x00\x05", b"\xff\xff"])
def test_a_non_minimal_serial_in_a_cert_id_is_a_malformed_request(padded):
    # Found by fuzzing: echoing such a CertID made a response that cryptography refused to parse.
    def tlv(tag: int, body: bytes) -> bytes:
        return bytes([tag, len(body)]) + body

    algorithm = bytes.fromhex("300906052b0e03021a0500")  # SHA-1, NULL parameters
    cert_id = tlv(0x30, algorithm + tlv(0x04, bytes(20)) + tlv(0x04, bytes(20)) + tlv(0x02, padded))
    request = tlv(0x30, tlv(0x30, tlv(0x30, tlv(0x30, cert_id))))
    with pytest.raises(MalformedRequest, match="minimally"):
        parse_request(request)


# --- requestExtensions: strict DER, one extension each, nonce of 1 to 32 octets (RFC 9654) ------

NONCE_OID = encode_oid(ocsp_der.OCSP_NONCE)
UNKNOWN_OID = encode_oid("1.3.6.1.4.1.99999.7")
TRUE = bytes([0x01, 1, 0xFF])


def _ext(oid: bytes, value: bytes, critical: bytes = b"") -> bytes:
    return tlv(SEQUENCE, oid + critical + tlv(OCTET_STRING, value))


def _with_extensions(*extensions: bytes, raw: bytes | None = None) -> bytes:
    body = raw if raw is not None else tlv(SEQUENCE, b"".join(extensions))
    return _request(_list(CERT_ID) + tlv(0xA2, body))


def _nonce(octets: bytes) -> bytes:
    return tlv(OCTET_STRING, octets)


def test_a_nonce_of_1_to_32_octets_is_read_verbatim():
    for size in (1, 16, 32):
        value = _nonce(b"n" * size)
        assert parse_request(_with_extensions(_ext(NONCE_OID, value))).nonce == value
    assert parse_request(_with_extensions(_ext(NONCE_OID, _nonce(b"n"), TRUE))).nonce == _nonce(b"n")
    assert parse_request(_with_extensions(_ext(UNKNOWN_OID, b"\x05\x00"))).nonce is None


@pytest.mark.parametrize(
    "data",
    [
        _with_extensions(_ext(NONCE_OID, _nonce(b""))),  # empty nonce
        _with_extensions(_ext(NONCE_OID, _nonce(b"n" * 33))),  # 33 octets
        _with_extensions(_ext(NONCE_OID, b"n" * 16)),  # bare, not an OCTET STRING
        _with_extensions(_ext(NONCE_OID, _nonce(b"n" * 8) + b"\x00")),  # trailing byte in extnValue
        _with_extensions(_ext(NONCE_OID, _nonce(b"a")), _ext(NONCE_OID, _nonce(b"b"))),  # twice
        _with_extensions(_ext(UNKNOWN_OID, b""), _ext(UNKNOWN_OID, b"")),  # any extension twice
        _with_extensions(_ext(NONCE_OID, _nonce(b"n"), bytes([0x01, 1, 0x00]))),  # explicit FALSE
        _with_extensions(_ext(NONCE_OID, _nonce(b"n"), bytes([0x01, 1, 0x01]))),  # TRUE not 0xFF
        _with_extensions(_ext(NONCE_OID, _nonce(b"n"), bytes([0x02, 1, 0xFF]))),  # not a BOOLEAN
        _with_extensions(_ext(UNKNOWN_OID, b"", TRUE)),  # unknown critical extension
        _with_extensions(),  # empty Extensions
        _with_extensions(raw=tlv(SEQUENCE, _ext(NONCE_OID, _nonce(b"n"))) + b"\x00"),  # trailing bytes
        _with_extensions(raw=tlv(OCTET_STRING, b"")),  # not a SEQUENCE
    ],
)
def test_malformed_request_extensions_are_refused(data):
    with pytest.raises(MalformedRequest):
        parse_request(data)


def test_single_request_extensions_are_parsed_strictly_too():
    single = tlv(SEQUENCE, CERT_ID + tlv(0xA0, tlv(SEQUENCE, _ext(UNKNOWN_OID, b"", TRUE))))
    with pytest.raises(MalformedRequest, match="critical"):
        parse_request(_request(tlv(SEQUENCE, single)))


_extension = st.tuples(
    st.sampled_from([NONCE_OID, UNKNOWN_OID, encode_oid("1.3.6.1.5.5.7.48.1.4")]),
    st.sampled_from([b"", TRUE, bytes([0x01, 1, 0x00]), bytes([0x01, 1, 0x7F])]),
    st.one_of(
        st.binary(min_size=0, max_size=40).map(_nonce),
        st.binary(max_size=40),
        st.tuples(st.binary(min_size=1, max_size=32), st.binary(min_size=1, max_size=3)).map(
            lambda t: _nonce(t[0]) + t[1]
        ),
    ),
)


def _valid(extensions: list[tuple[bytes, bytes, bytes]]) -> bool:
    """The rules, stated independently of the parser."""
    oids = [oid for oid, _, _ in extensions]
    if not extensions or len(set(oids)) != len(oids):
        return False
    for oid, critical, value in extensions:
        if critical not in (b"", TRUE) or (critical == TRUE and oid == UNKNOWN_OID):
            return False
        if oid == NONCE_OID and not (
            value[:1] == b"\x04" and 3 <= len(value) <= 34 and value[1] == len(value) - 2
        ):
            return False
    return True


@given(st.lists(_extension, max_size=3))
def test_request_extensions_are_accepted_exactly_when_they_follow_the_rules(extensions):
    data = _with_extensions(*(_ext(oid, value, critical) for oid, critical, value in extensions))
    try:
        parsed = parse_request(data)
    except MalformedRequest:
        assert not _valid(extensions)
        return
    assert _valid(extensions)
    nonces = [value for oid, _, value in extensions if oid == NONCE_OID]
    assert parsed.nonce == (nonces[0] if nonces else None)
