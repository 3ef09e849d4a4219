"""OCSP in DER (RFC 6960): a strict request parser and a response encoder (on pki.x509.der).

``cryptography`` parses only single-request OCSP requests and builds only single-response
OCSP responses; RFC 6960 allows several of each. Both structures are small, so KMI reads and
writes them here, byte for byte, and signs the ``ResponseData`` through a ``KeyBackend``.
CertIDs are echoed exactly as the client sent them (RFC 6960 §4.2.1: the responder answers
the CertID it was asked about). The parser may never accept what ``cryptography`` refuses or
read a field differently, and the responses must load in ``cryptography`` and lint clean with
pkilint: tests/pki/x509/test_ocsp_der.py and tests/pki/test_ocsp.py hold the twins.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from pki.x509 import der

OCSP_BASIC = "1.3.6.1.5.5.7.48.1.1"  # id-pkix-ocsp-basic
OCSP_NONCE = "1.3.6.1.5.5.7.48.1.2"  # id-pkix-ocsp-nonce

# CertID hash algorithms KMI recognises (RFC 6960 §4.1.1; SHA-1 and SHA-256 in practice).
HASH_OIDS = {
    "1.3.14.3.2.26": "sha1",
    "2.16.840.1.101.3.4.2.1": "sha256",
    "2.16.840.1.101.3.4.2.2": "sha384",
    "2.16.840.1.101.3.4.2.3": "sha512",
}

# RFC 9654 §2.1 (which obsoletes RFC 8954): a nonce is 1 to 32 octets.
MAX_NONCE_OCTETS = 32

# Request extensions KMI understands (so they may be marked critical): the nonce, and the
# acceptable-responses list (RFC 6960 §4.4.3: KMI always answers id-pkix-ocsp-basic).
UNDERSTOOD_EXTENSIONS = frozenset({OCSP_NONCE, "1.3.6.1.5.5.7.48.1.4"})


class MalformedRequest(ValueError):
    """The bytes are not a DER OCSPRequest KMI can answer."""


class ResponseStatus:
    """OCSPResponseStatus of RFC 6960 §4.2.1."""

    SUCCESSFUL = 0
    MALFORMED_REQUEST = 1
    INTERNAL_ERROR = 2
    TRY_LATER = 3
    SIG_REQUIRED = 5
    UNAUTHORIZED = 6


def error_response(status: int) -> bytes:
    """An unsuccessful OCSPResponse: just the status (no responseBytes, nothing signed)."""
    return bytes([der.TAG_SEQUENCE, 3, der.TAG_ENUMERATED, 1, status])


# --- reading ----------------------------------------------------------------------------------


def _read_tlv(data: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """Read one DER TLV at ``pos``; return (tag, content start, content end)."""
    if pos + 2 > end:
        raise MalformedRequest("truncated")
    tag = data[pos]
    if tag & 0x1F == 0x1F:
        raise MalformedRequest("high tag numbers are not used in OCSP")
    first = data[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        # DER: no indefinite length, minimal length octets, and nothing OCSP needs is ≥ 16 MiB.
        if count == 0 or count > 3 or pos + count > end:
            raise MalformedRequest("bad length")
        length = int.from_bytes(data[pos : pos + count], "big")
        if length < 0x80 or data[pos] == 0:
            raise MalformedRequest("length is not minimally encoded")
        pos += count
    if pos + length > end:
        raise MalformedRequest("truncated")
    return tag, pos, pos + length


def _expect(data: bytes, pos: int, end: int, tag: int) -> tuple[int, int]:
    got, start, stop = _read_tlv(data, pos, end)
    if got != tag:
        raise MalformedRequest(f"expected tag {tag:#x}, got {got:#x}")
    return start, stop


def _children(data: bytes, start: int, end: int) -> list[tuple[int, int, int, int]]:
    """Return (tag, tlv start, content start, content end) of every element in a constructed value."""
    out = []
    pos = start
    while pos < end:
        tag, cstart, cend = _read_tlv(data, pos, end)
        out.append((tag, pos, cstart, cend))
        pos = cend
    return out


# Public names for the strict DER reader; the CSR checks walk a CertificationRequestInfo with it.
der_expect = _expect
der_children = _children


def decode_oid(content: bytes) -> str:
    """Decode the content octets of an OBJECT IDENTIFIER into dotted text."""
    if not content or content[-1] & 0x80:
        raise MalformedRequest("bad object identifier")
    arcs: list[int] = []
    value = 0
    for i, byte in enumerate(content):
        if value == 0 and byte == 0x80 and (i == 0 or not content[i - 1] & 0x80):
            raise MalformedRequest("object identifier arc is not minimally encoded")
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    first = min(arcs[0] // 40, 2)
    return ".".join(str(a) for a in [first, arcs[0] - 40 * first, *arcs[1:]])


@dataclass(frozen=True)
class CertID:
    """One CertID of a request: the issuer's name and key hashes, the serial, and its exact DER."""

    hash_algorithm: str
    issuer_name_hash: bytes
    issuer_key_hash: bytes
    serial_number: int
    der: bytes


@dataclass(frozen=True)
class ParsedRequest:
    """What KMI reads from an OCSPRequest: the CertIDs and the nonce extension's value, if any."""

    cert_ids: tuple[CertID, ...]
    nonce: bytes | None  # the nonce extension's extnValue octets, echoed verbatim


def _parse_cert_id(data: bytes, tlv_start: int, start: int, end: int) -> CertID:
    parts = _children(data, start, end)
    if len(parts) != 4 or [p[0] for p in parts] != [
        der.TAG_SEQUENCE,
        der.TAG_OCTET_STRING,
        der.TAG_OCTET_STRING,
        der.TAG_INTEGER,
    ]:
        raise MalformedRequest("CertID is SEQUENCE { AlgorithmIdentifier, OCTET STRING x2, INTEGER }")
    alg = _children(data, parts[0][2], parts[0][3])
    if not alg or alg[0][0] != der.TAG_OID or len(alg) > 2 or (len(alg) == 2 and alg[1][0] != der.TAG_NULL):
        raise MalformedRequest("bad hash AlgorithmIdentifier")
    oid = decode_oid(data[alg[0][2] : alg[0][3]])
    serial_bytes = data[parts[3][2] : parts[3][3]]
    if not serial_bytes:
        raise MalformedRequest("empty serial number")
    # X.690 §8.3.2: the first nine bits of a DER INTEGER are never all zeros or all ones. The
    # CertID is echoed in the response, so a non-minimal serial would make the response invalid.
    if len(serial_bytes) > 1 and (
        (serial_bytes[0] == 0x00 and serial_bytes[1] < 0x80)
        or (serial_bytes[0] == 0xFF and serial_bytes[1] >= 0x80)
    ):
        raise MalformedRequest("serial number is not minimally encoded (DER)")
    return CertID(
        hash_algorithm=HASH_OIDS.get(oid, oid),
        issuer_name_hash=data[parts[1][2] : parts[1][3]],
        issuer_key_hash=data[parts[2][2] : parts[2][3]],
        serial_number=int.from_bytes(serial_bytes, "big", signed=True),
        der=data[tlv_start:end],
    )


def _parse_extensions(data: bytes, start: int, end: int) -> dict[str, bytes]:
    """Parse ``[n] EXPLICIT Extensions`` content strictly; return extnValue octets by OID.

    RFC 5280 §4.1 / RFC 6960 §4.4: Extensions ::= SEQUENCE SIZE (1..MAX) OF Extension, each
    ``SEQUENCE { extnID OID, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING }`` in DER
    (so ``critical`` is absent or TRUE as 0xFF), one extension of each type, and a critical
    extension KMI does not understand makes the request unanswerable.
    """
    ext_start, ext_end = _expect(data, start, end, der.TAG_SEQUENCE)
    if ext_end != end:
        raise MalformedRequest("trailing bytes after Extensions")
    items = _children(data, ext_start, ext_end)
    if not items:
        raise MalformedRequest("Extensions must not be empty")
    found: dict[str, bytes] = {}
    for tag, _, cstart, cend in items:
        if tag != der.TAG_SEQUENCE:
            raise MalformedRequest("an extension is a SEQUENCE")
        fields = _children(data, cstart, cend)
        if not 2 <= len(fields) <= 3 or fields[0][0] != der.TAG_OID or fields[-1][0] != der.TAG_OCTET_STRING:
            raise MalformedRequest("an extension is SEQUENCE { OID, BOOLEAN OPTIONAL, OCTET STRING }")
        critical = False
        if len(fields) == 3:
            if fields[1][0] != der.TAG_BOOLEAN or data[fields[1][2] : fields[1][3]] != b"\xff":
                # X.690 §11.5: DER leaves out a DEFAULT value, and TRUE is 0xFF.
                raise MalformedRequest("critical is a DER BOOLEAN TRUE when present")
            critical = True
        oid = decode_oid(data[fields[0][2] : fields[0][3]])
        if oid in found:
            raise MalformedRequest(f"extension {oid} appears twice")
        if critical and oid not in UNDERSTOOD_EXTENSIONS:
            raise MalformedRequest(f"unsupported critical extension {oid}")
        found[oid] = data[fields[-1][2] : fields[-1][3]]
    return found


def _check_nonce(value: bytes) -> bytes:
    """RFC 9654 §2.1: the nonce's extnValue is the DER of ``OCTET STRING (SIZE(1..32))``."""
    inner_start, inner_end = _expect(value, 0, len(value), der.TAG_OCTET_STRING)
    if inner_end != len(value):
        raise MalformedRequest("trailing bytes after the nonce")
    if not 1 <= inner_end - inner_start <= MAX_NONCE_OCTETS:
        raise MalformedRequest("a nonce is 1 to 32 octets (RFC 9654)")
    return value


def parse_request(data: bytes, *, max_requests: int = 16) -> ParsedRequest:
    """Parse a DER OCSPRequest; raise ``MalformedRequest`` for anything else."""
    outer_start, outer_end = _expect(data, 0, len(data), der.TAG_SEQUENCE)
    if outer_end != len(data):
        raise MalformedRequest("trailing bytes after the request")
    top = _children(data, outer_start, outer_end)
    if not top or top[0][0] != der.TAG_SEQUENCE or len(top) > 2 or (len(top) == 2 and top[1][0] != 0xA0):
        raise MalformedRequest("OCSPRequest is SEQUENCE { TBSRequest, [0] Signature OPTIONAL }")
    fields = _children(data, top[0][2], top[0][3])
    index = 0
    if index < len(fields) and fields[index][0] == 0xA0:  # version [0] EXPLICIT: v1 (0) only
        if data[fields[index][2] : fields[index][3]] != bytes([der.TAG_INTEGER, 1, 0]):
            raise MalformedRequest("unsupported request version")
        index += 1
    if index < len(fields) and fields[index][0] == 0xA1:  # requestorName: not used
        index += 1
    if index >= len(fields) or fields[index][0] != der.TAG_SEQUENCE:
        raise MalformedRequest("no requestList")
    requests = _children(data, fields[index][2], fields[index][3])
    index += 1
    nonce = None
    if index < len(fields) and fields[index][0] == 0xA2:
        extensions = _parse_extensions(data, fields[index][2], fields[index][3])
        if OCSP_NONCE in extensions:
            nonce = _check_nonce(extensions[OCSP_NONCE])
        index += 1
    if index != len(fields):
        raise MalformedRequest("unexpected fields in TBSRequest")
    if not requests:
        raise MalformedRequest("empty requestList")
    if len(requests) > max_requests:
        raise MalformedRequest(f"more than {max_requests} requests")
    return ParsedRequest(cert_ids=tuple(_parse_single(data, r) for r in requests), nonce=nonce)


def _parse_single(data: bytes, request: tuple[int, int, int, int]) -> CertID:
    tag, _, start, end = request
    if tag != der.TAG_SEQUENCE:
        raise MalformedRequest("a Request is a SEQUENCE")
    parts = _children(data, start, end)
    if (
        not parts
        or parts[0][0] != der.TAG_SEQUENCE
        or len(parts) > 2
        or (len(parts) == 2 and parts[1][0] != 0xA0)
    ):
        raise MalformedRequest("Request is SEQUENCE { CertID, [0] Extensions OPTIONAL }")
    if len(parts) == 2:
        single = _parse_extensions(data, parts[1][2], parts[1][3])
        if OCSP_NONCE in single:
            raise MalformedRequest("a nonce belongs in requestExtensions, not singleRequestExtensions")
    return _parse_cert_id(data, parts[0][1], parts[0][2], parts[0][3])


def bit_string_content(spki_der: bytes) -> bytes:
    """Return the subjectPublicKey bits of a SubjectPublicKeyInfo (what issuerKeyHash hashes)."""
    start, end = _expect(spki_der, 0, len(spki_der), der.TAG_SEQUENCE)
    parts = _children(spki_der, start, end)
    if len(parts) != 2 or parts[1][0] != der.TAG_BIT_STRING:
        raise MalformedRequest("not a SubjectPublicKeyInfo")
    return spki_der[parts[1][2] + 1 : parts[1][3]]  # skip the unused-bits octet


# --- writing ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SingleStatus:
    """The answer for one CertID: good, revoked (time, CRLReason code or None) or unknown."""

    cert_id_der: bytes
    status: str  # "good" | "revoked" | "unknown"
    revocation_time: dt.datetime | None = None
    reason_code: int | None = None


def single_response(single: SingleStatus, *, this_update: dt.datetime, next_update: dt.datetime) -> bytes:
    """Encode a SingleResponse (RFC 6960 §4.2.1)."""
    if single.status == "good":
        status = bytes([0x80, 0])  # [0] IMPLICIT NULL
    elif single.status == "unknown":
        status = bytes([0x82, 0])  # [2] IMPLICIT UnknownInfo (NULL)
    elif single.status == "revoked" and single.revocation_time is not None:
        info = der.generalized_time(single.revocation_time)
        if single.reason_code is not None:
            info += der.tlv(0xA0, der.tlv(der.TAG_ENUMERATED, bytes([single.reason_code])))
        status = der.tlv(0xA1, info)  # [1] IMPLICIT RevokedInfo
    else:
        raise ValueError(f"bad certificate status {single.status!r}")
    return der.tlv(
        der.TAG_SEQUENCE,
        single.cert_id_der
        + status
        + der.generalized_time(this_update)
        + der.tlv(0xA0, der.generalized_time(next_update)),
    )


def response_data(
    *,
    responder_key_hash: bytes,
    produced_at: dt.datetime,
    singles: Sequence[bytes],
    nonce: bytes | None,
) -> bytes:
    """Encode ResponseData (v1, responder by key hash) over already encoded SingleResponses."""
    body = der.tlv(0xA2, der.tlv(der.TAG_OCTET_STRING, responder_key_hash))  # ResponderID byKey [2]
    body += der.generalized_time(produced_at)
    body += der.tlv(der.TAG_SEQUENCE, b"".join(singles))
    if nonce is not None:
        extension = der.tlv(der.TAG_SEQUENCE, der.oid(OCSP_NONCE) + der.tlv(der.TAG_OCTET_STRING, nonce))
        body += der.tlv(0xA1, der.tlv(der.TAG_SEQUENCE, extension))
    return der.tlv(der.TAG_SEQUENCE, body)


def ocsp_response(
    *, tbs_response_data: bytes, signature_algorithm: bytes, signature: bytes, certificates: Sequence[bytes]
) -> bytes:
    """Wrap signed ResponseData into a successful OCSPResponse with a BasicOCSPResponse."""
    basic = tbs_response_data + signature_algorithm + der.tlv(der.TAG_BIT_STRING, b"\x00" + signature)
    if certificates:
        basic += der.tlv(0xA0, der.tlv(der.TAG_SEQUENCE, b"".join(certificates)))
    response_bytes = der.tlv(
        der.TAG_SEQUENCE,
        der.oid(OCSP_BASIC) + der.tlv(der.TAG_OCTET_STRING, der.tlv(der.TAG_SEQUENCE, basic)),
    )
    return der.tlv(der.TAG_SEQUENCE, der.tlv(der.TAG_ENUMERATED, b"\x00") + der.tlv(0xA0, response_bytes))
