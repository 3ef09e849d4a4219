"""The hand-written DER of CRLs, byte for byte against X.690 vectors and ``cryptography``."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from pki.crl import encode_revoked
from pki.models import RevocationReason
from pki.x509 import der
from tests.conftest import load_key


@pytest.mark.parametrize(
    ("n", "encoded"),
    [(0, "00"), (127, "7f"), (128, "8180"), (255, "81ff"), (256, "820100"), (65536, "83010000")],
)
def test_lengths_use_the_shortest_form(n, encoded):
    assert der.length(n).hex() == encoded


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (0, "020100"),
        (1, "020101"),
        (127, "02017f"),
        (128, "02020080"),
        (255, "020200ff"),
        (256, "02020100"),
        ((1 << 159) - 1, "0214" + "7f" + "ff" * 19),
        (1 << 159, "021500" + "80" + "00" * 19),
    ],
)
def test_integers_are_minimal_twos_complement(value, encoded):
    assert der.integer(value).hex() == encoded


def test_negative_integers_are_refused():
    with pytest.raises(ValueError):
        der.integer(-1)


def test_serial_longer_than_20_octets_is_refused():
    assert len(der.serial_number(format((1 << 159) - 1, "x"))) == 22
    with pytest.raises(ValueError):
        der.serial_number(format(1 << 159, "x"))


@pytest.mark.parametrize(
    ("when", "encoded"),
    [
        (dt.datetime(1950, 1, 1, tzinfo=dt.UTC), b"\x17\x0d500101000000Z"),
        (dt.datetime(2049, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC), b"\x17\x0d491231235959Z"),
        (dt.datetime(2050, 1, 1, tzinfo=dt.UTC), b"\x18\x0f20500101000000Z"),
        (dt.datetime(1949, 12, 31, 23, 59, 59, tzinfo=dt.UTC), b"\x18\x0f19491231235959Z"),
        (dt.datetime(2026, 6, 1, 14, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))), b"\x17\x0d260601120000Z"),
    ],
)
def test_times_follow_rfc5280_utctime_until_2049(when, encoded):
    assert der.time(when) == encoded


def test_naive_times_are_refused():
    with pytest.raises(ValueError):
        der.time(dt.datetime(2026, 1, 1))


def _crypto_entry(serial: int, revoked: dt.datetime, reason: str, invalid: dt.datetime | None) -> bytes:
    """One revokedCertificates entry as ``cryptography`` encodes it (cut out of a signed CRL)."""
    builder = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(revoked)
    if reason not in ("unspecified",):
        builder = builder.add_extension(x509.CRLReason(RevocationReason(reason).x509()), critical=False)
    if invalid is not None:
        builder = builder.add_extension(x509.InvalidityDate(invalid.replace(tzinfo=None)), critical=False)
    key = load_key("ed25519")
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "t")])
    crl = x509.CertificateRevocationListBuilder(
        issuer_name=name,
        last_update=dt.datetime(2026, 1, 1),
        next_update=dt.datetime(2026, 1, 2),
        revoked_certificates=[builder.build()],
    ).sign(key, None)
    tbs = crl.tbs_certlist_bytes
    ours = _encode([(serial, revoked, reason, invalid)])
    assert ours in tbs, "our entry is not a substring of cryptography's TBSCertList"
    return ours


def _encode(entries: list[tuple[int, dt.datetime, str, dt.datetime | None]]) -> bytes:
    out: list[bytes] = []
    rows = (
        (
            format(serial, "x").encode(),
            der.stamp(revoked).encode(),
            reason.encode(),
            der.stamp(invalid).encode() if invalid else b"",
        )
        for serial, revoked, reason, invalid in entries
    )
    assert encode_revoked(iter(rows), out) == len(entries)
    return b"".join(out)


REASONS = [r for r in RevocationReason.values if r != RevocationReason.REMOVE_FROM_CRL]


@pytest.mark.parametrize("reason", REASONS)
@pytest.mark.parametrize(
    ("serial", "revoked", "invalid"),
    [
        (1, dt.datetime(2026, 5, 1, 10, 0, 1, tzinfo=dt.UTC), None),
        (0x80, dt.datetime(2049, 12, 31, 23, 59, 59, tzinfo=dt.UTC), dt.datetime(2049, 1, 1, tzinfo=dt.UTC)),
        (
            (1 << 159) - 1,
            dt.datetime(2050, 1, 1, tzinfo=dt.UTC),
            dt.datetime(2050, 6, 1, 1, 2, 3, tzinfo=dt.UTC),
        ),
        (
            0xFF << 100,
            dt.datetime(1999, 2, 3, 4, 5, 6, tzinfo=dt.UTC),
            dt.datetime(1990, 1, 1, tzinfo=dt.UTC),
        ),
    ],
)
def test_entries_match_cryptography_byte_for_byte(serial, revoked, reason, invalid):
    _crypto_entry(serial, revoked, reason, invalid)


def test_entry_with_unknown_reason_is_refused():
    with pytest.raises(ValueError, match="unknown revocation reason"):
        encode_revoked(iter([(b"0a", b"20260101000000", b"stolen", b"")]), [])


@pytest.mark.parametrize("serial", [b"000a", b"0001", format(1 << 160, "x").encode()])
def test_non_canonical_or_long_serials_are_refused(serial):
    with pytest.raises(ValueError, match="serial"):
        encode_revoked(iter([(serial, b"20260101000000", b"superseded", b"")]), [])


@pytest.mark.parametrize(
    ("key_name", "algorithm"),
    [
        ("ec-p256", hashes.SHA256()),
        ("ec-p384", hashes.SHA384()),
        ("ec-p521", hashes.SHA512()),
        ("rsa-2048", hashes.SHA256()),
        ("ed25519", None),
        ("ed448", None),
    ],
)
def test_signature_algorithm_matches_cryptography(key_name, algorithm):
    key = load_key(key_name)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "t")])
    crl = x509.CertificateRevocationListBuilder(
        issuer_name=name, last_update=dt.datetime(2026, 1, 1), next_update=dt.datetime(2026, 1, 2)
    ).sign(key, algorithm)  # type: ignore[arg-type]
    ours = der.signature_algorithm(key.public_key(), algorithm)
    # TBSCertList: SEQUENCE { INTEGER 1, AlgorithmIdentifier, … }
    tbs = crl.tbs_certlist_bytes
    header = 2 if tbs[1] < 0x80 else 2 + (tbs[1] & 0x7F)
    assert tbs[header + 3 : header + 3 + len(ours)] == ours


@pytest.mark.parametrize("key_class", ["MLDSA44PrivateKey", "MLDSA65PrivateKey", "MLDSA87PrivateKey"])
def test_ml_dsa_signature_algorithm_matches_cryptography(key_class):
    from cryptography.hazmat.primitives.asymmetric import mldsa

    key = getattr(mldsa, key_class).generate()  # no ML-DSA fixture key; generation is cheap
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "t")])
    crl = x509.CertificateRevocationListBuilder(
        issuer_name=name, last_update=dt.datetime(2026, 1, 1), next_update=dt.datetime(2026, 1, 2)
    ).sign(key, None)
    ours = der.signature_algorithm(key.public_key(), None)
    assert ours in crl.tbs_certlist_bytes
    assert (
        crl.public_bytes(__import__("cryptography").hazmat.primitives.serialization.Encoding.DER).count(ours)
        == 2
    )


def test_signature_algorithm_needs_a_hash_for_ecdsa():
    with pytest.raises(ValueError):
        der.signature_algorithm(load_key("ec-p256").public_key(), None)


def _self_signed(key_name: str, cn: str) -> x509.Certificate:
    key = load_key(key_name)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    when = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1000 + len(cn))
        .not_valid_before(when)
        .not_valid_after(when + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("count", [1, 2, 3])
def test_certs_only_matches_cryptography_byte_for_byte(count):
    from cryptography.hazmat.primitives.serialization import Encoding, pkcs7

    certs = [
        _self_signed(k, cn) for k, cn in [("ec-p256", "a"), ("rsa-2048", "bb"), ("ec-p384", "ccc")][:count]
    ]
    ders = [c.public_bytes(Encoding.DER) for c in certs]
    expected = pkcs7.serialize_certificates(certs, Encoding.DER)
    assert der.certs_only(ders) == expected
    assert der.certs_only(ders[::-1]) == expected  # a SET OF: DER order whatever the input order
    assert pkcs7.load_der_pkcs7_certificates(der.certs_only(ders)) == sorted(
        certs, key=lambda c: c.public_bytes(Encoding.DER)
    )
