"""The OCSP DER codec: strict request parsing, exact response encoding."""

from __future__ import annotations

import contextlib
import datetime as dt

import pytest
from cryptography.x509 import ocsp
from hypothesis import given
from hypothesis import strategies as st

from pki.x509 import ocsp_der
from pki.x509.ocsp_der import (
    INTEGER,
    OCTET_STRING,
    SEQUENCE,
    MalformedRequest,
    encode_oid,
    parse_request,
    tlv,
)

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
    der = ocsp_der.ocsp_response(
        tbs_response_data=tbs,
        signature_algorithm=ocsp_der.algorithm_identifier("1.2.840.10045.4.3.2"),
        signature=b"\x30\x06\x02\x01\x01\x02\x01\x01",
        certificates=[],
    )
    resp = ocsp.load_der_ocsp_response(der)
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
