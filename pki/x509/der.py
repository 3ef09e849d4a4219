"""The one DER encoder of KMI, for exactly the structures of a CRL (X.690 §8 and §10, RFC 5280
§5), of an OCSP response (RFC 6960 §4.2.1; pki.x509.ocsp_der) and of a certs-only SignedData
(RFC 5652 §5; the answer of EST, RFC 7030 §4.1.3, and SCEP, RFC 8894 §3.4).

``cryptography`` builds one Python object per CRL entry, which costs seconds for a million
entries; these helpers encode the TBSCertList straight from database rows instead. They may
never diverge from ``cryptography``'s own encoding, byte for byte: tests/pki/x509/test_der.py and
tests/pki/x509/test_ocsp_der.py compare the two.
"""

from __future__ import annotations

import datetime as dt

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, mldsa, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

TAG_BOOLEAN = 0x01
TAG_INTEGER = 0x02
TAG_BIT_STRING = 0x03
TAG_OCTET_STRING = 0x04
TAG_NULL = 0x05
TAG_OID = 0x06
TAG_ENUMERATED = 0x0A
TAG_UTC_TIME = 0x17
TAG_GENERALIZED_TIME = 0x18
TAG_SEQUENCE = 0x30
TAG_SET = 0x31
TAG_CONTEXT_0 = 0xA0  # [0] EXPLICIT, constructed

# Object identifiers, already DER-encoded (tag 06, length, arcs).
OID_AUTHORITY_KEY_IDENTIFIER = bytes.fromhex("0603551d23")  # 2.5.29.35
OID_CRL_NUMBER = bytes.fromhex("0603551d14")  # 2.5.29.20
OID_ISSUING_DISTRIBUTION_POINT = bytes.fromhex("0603551d1c")  # 2.5.29.28
OID_REASON_CODE = bytes.fromhex("0603551d15")  # 2.5.29.21
OID_INVALIDITY_DATE = bytes.fromhex("0603551d18")  # 2.5.29.24
OID_SIGNED_DATA = bytes.fromhex("06092a864886f70d010702")  # 1.2.840.113549.1.7.2
OID_DATA = bytes.fromhex("06092a864886f70d010701")  # 1.2.840.113549.1.7.1

# AlgorithmIdentifier DER of each signature KMI makes (RFC 3279, RFC 4055, RFC 5758, RFC 8410).
_RSA_ALGORITHMS = {
    "sha256": bytes.fromhex("300d06092a864886f70d01010b0500"),
    "sha384": bytes.fromhex("300d06092a864886f70d01010c0500"),
    "sha512": bytes.fromhex("300d06092a864886f70d01010d0500"),
}
_ECDSA_ALGORITHMS = {
    "sha256": bytes.fromhex("300a06082a8648ce3d040302"),
    "sha384": bytes.fromhex("300a06082a8648ce3d040303"),
    "sha512": bytes.fromhex("300a06082a8648ce3d040304"),
}
_ED25519_ALGORITHM = bytes.fromhex("300506032b6570")
_ED448_ALGORITHM = bytes.fromhex("300506032b6571")
# FIPS 204 ML-DSA (RFC 9881): id-ml-dsa-44/65/87 = 2.16.840.1.101.3.4.3.17/18/19, no parameters.
_ML_DSA_ALGORITHMS: dict[type, bytes] = {
    mldsa.MLDSA44PublicKey: bytes.fromhex("300b0609608648016503040311"),
    mldsa.MLDSA65PublicKey: bytes.fromhex("300b0609608648016503040312"),
    mldsa.MLDSA87PublicKey: bytes.fromhex("300b0609608648016503040313"),
}


def length(n: int) -> bytes:
    """Encode a DER length (X.690 §8.1.3: short form below 128, else minimal long form)."""
    if n < 0x80:
        return bytes((n,))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(body),)) + body


def tlv(tag: int, value: bytes) -> bytes:
    """Encode one tag-length-value."""
    return bytes((tag,)) + length(len(value)) + value


def sequence(*items: bytes) -> bytes:
    """Encode a SEQUENCE of already-encoded items."""
    return tlv(TAG_SEQUENCE, b"".join(items))


def integer_body(value: int) -> bytes:
    """Return the content octets of an INTEGER (two's complement, minimal, X.690 §8.3)."""
    if value < 0:
        raise ValueError("only non-negative integers occur in a CRL")
    # One extra bit keeps the sign bit clear: 0x80 becomes 00 80; 0 becomes 00.
    return value.to_bytes(value.bit_length() // 8 + 1, "big")


def integer(value: int) -> bytes:
    """Encode a non-negative INTEGER."""
    return tlv(TAG_INTEGER, integer_body(value))


def serial_number(hex_text: str) -> bytes:
    """Encode a stored hex serial as an INTEGER, refusing what RFC 5280 §4.1.2.2 forbids."""
    body = integer_body(int(hex_text, 16))
    if len(body) > 20:
        raise ValueError(f"serial {hex_text} is longer than 20 octets")
    return tlv(TAG_INTEGER, body)


def enumerated(value: int) -> bytes:
    """Encode a small non-negative ENUMERATED."""
    return tlv(TAG_ENUMERATED, integer_body(value))


def octet_string(value: bytes) -> bytes:
    """Encode an OCTET STRING."""
    return tlv(TAG_OCTET_STRING, value)


def bit_string(value: bytes) -> bytes:
    """Encode a BIT STRING of whole octets (no unused bits), as signatures are."""
    return tlv(TAG_BIT_STRING, b"\x00" + value)


def stamp(when: dt.datetime) -> str:
    """Return ``YYYYMMDDHHMMSS`` of an aware datetime in UTC (fractions dropped, RFC 5280 §4.1.2.5)."""
    if when.tzinfo is None:
        raise ValueError("times in a CRL must be timezone-aware")
    return when.astimezone(dt.UTC).strftime("%Y%m%d%H%M%S").zfill(14)


def time_from_stamp(text: str) -> bytes:
    """Encode a ``YYYYMMDDHHMMSS`` UTC stamp as RFC 5280 Time.

    RFC 5280 §5.1.2.4 (and §4.1.2.5): UTCTime for 1950 through 2049, GeneralizedTime otherwise,
    both in Zulu time with seconds and without fractions.
    """
    year = int(text[:4])
    if 1950 <= year <= 2049:
        return tlv(TAG_UTC_TIME, text[2:].encode() + b"Z")
    return tlv(TAG_GENERALIZED_TIME, text.encode() + b"Z")


def generalized_time_from_stamp(text: str) -> bytes:
    """Encode a ``YYYYMMDDHHMMSS`` UTC stamp as GeneralizedTime (the invalidityDate's type)."""
    return tlv(TAG_GENERALIZED_TIME, text.encode() + b"Z")


def time(when: dt.datetime) -> bytes:
    """Encode an aware datetime as RFC 5280 Time."""
    return time_from_stamp(stamp(when))


def oid(dotted: str) -> bytes:
    """Encode a dotted OBJECT IDENTIFIER (X.690 §8.19)."""
    arcs = [int(a) for a in dotted.split(".")]
    out = bytearray()
    for arc in [40 * arcs[0] + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        rest = arc >> 7
        while rest:
            chunk.append(0x80 | (rest & 0x7F))
            rest >>= 7
        out.extend(reversed(chunk))
    return tlv(TAG_OID, bytes(out))


def generalized_time(when: dt.datetime) -> bytes:
    """Encode an aware datetime as GeneralizedTime in UTC, seconds, no fractions (RFC 5280 §4.1.2.5.2)."""
    return generalized_time_from_stamp(stamp(when))


def algorithm_identifier(dotted: str, *, null_parameters: bool = False) -> bytes:
    """Encode an AlgorithmIdentifier (NULL parameters for RSA PKCS#1 v1.5, absent otherwise)."""
    return sequence(oid(dotted), tlv(TAG_NULL, b"") if null_parameters else b"")


def extension(identifier: bytes, value: bytes, *, critical: bool = False) -> bytes:
    """Encode an Extension; DER omits ``critical`` when it is the DEFAULT FALSE."""
    flag = tlv(TAG_BOOLEAN, b"\xff") if critical else b""
    return sequence(identifier, flag, octet_string(value))


def reason_extension(code: int) -> bytes:
    """Encode the reasonCode CRL entry extension (RFC 5280 §5.3.1) of CRLReason value ``code``."""
    return extension(OID_REASON_CODE, enumerated(code))


def invalidity_date_extension(stamp_text: str) -> bytes:
    """Encode the invalidityDate CRL entry extension (RFC 5280 §5.3.2: always GeneralizedTime)."""
    return extension(OID_INVALIDITY_DATE, generalized_time_from_stamp(stamp_text))


def signature_algorithm(public_key: PublicKeyTypes, algorithm: hashes.HashAlgorithm | None) -> bytes:
    """Return the AlgorithmIdentifier DER for a signature by this key with this hash."""
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return _ED25519_ALGORITHM
    if isinstance(public_key, ed448.Ed448PublicKey):
        return _ED448_ALGORITHM
    for key_class, identifier in _ML_DSA_ALGORITHMS.items():
        if isinstance(public_key, key_class):
            return identifier
    if algorithm is None:
        raise ValueError(f"{type(public_key).__name__} signatures need a hash")
    if isinstance(public_key, rsa.RSAPublicKey) and algorithm.name in _RSA_ALGORITHMS:
        return _RSA_ALGORITHMS[algorithm.name]
    if isinstance(public_key, ec.EllipticCurvePublicKey) and algorithm.name in _ECDSA_ALGORITHMS:
        return _ECDSA_ALGORITHMS[algorithm.name]
    raise ValueError(f"no signature algorithm for {type(public_key).__name__} with {algorithm.name}")


def certs_only(certificates: list[bytes], crls: list[bytes] = []) -> bytes:  # noqa: B006 - read only
    """A ContentInfo holding a SignedData without signers: certificates (DER) and CRLs (DER) only.

    RFC 5652 §5.1: version 1, no digestAlgorithms, encapContentInfo of type data without
    content, ``certificates [0] IMPLICIT`` and ``crls [1] IMPLICIT`` (each left out when empty),
    no signerInfos. A SET OF is in DER order (X.690 §11.6: ascending encodings). Copying the DER
    it is given, it costs microseconds where a CMS library parses every certificate again.
    """
    body = integer(1) + tlv(TAG_SET, b"") + sequence(OID_DATA)
    if certificates:
        # [0] IMPLICIT SET OF: the SET's own content under the context tag.
        body += tlv(TAG_CONTEXT_0, b"".join(sorted(certificates)))
    if crls:
        body += tlv(TAG_CONTEXT_0 | 1, b"".join(sorted(crls)))
    body += tlv(TAG_SET, b"")
    return sequence(OID_SIGNED_DATA, tlv(TAG_CONTEXT_0, sequence(body)))
