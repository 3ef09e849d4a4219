"""Profiles: the frozen policy, its validators and the seeded profiles."""

from __future__ import annotations

import pytest
from cryptography import x509

from pki.exceptions import NameNotAllowed, PolicyViolation, WeakKey
from pki.models import KeyType, Profile
from pki.profiles import (
    ProfilePolicy,
    all_key_types,
    check_public_key,
    eku_oid,
    name_matches,
    validate_name_pattern,
)
from pki.x509.csr import check_csr, load_csr
from pki.x509.names import SAN
from tests.conftest import load_key, make_csr


def policy(**overrides: object) -> ProfilePolicy:
    fields: dict[str, object] = {
        "name": "p",
        "validity_days": 100,
        "default_validity_days": 30,
        "key_types": ["rsa", "ec"],
        "key_usage": ["digital_signature", "key_encipherment"],
        "extended_key_usage": ["serverAuth"],
        "allowed_names": ["dns:*.example.test"],
    }
    fields.update(overrides)
    return Profile(**fields).policy()


def checked(key: str = "ec-p256", **kwargs: object):
    return check_csr(load_csr(make_csr(key, **kwargs), max_bytes=1 << 16))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"key_usage": ["sign_everything"]}, "unknown key usage 'sign_everything'"),
        ({"extended_key_usage": ["bogus"]}, "unknown extended key usage 'bogus'"),
        ({"key_types": ["dsa"]}, "unknown key type 'dsa'"),
        ({"allowed_names": ["host.example.test"]}, "must look like dns:"),
        ({"allowed_names": ["ip:300.1.1.1/8"]}, "is not an IP network"),
        ({"default_validity_days": 101}, "default validity exceeds the cap"),
    ],
)
def test_a_malformed_profile_is_refused(overrides, message):
    with pytest.raises(PolicyViolation, match=message):
        policy(**overrides)


def test_validity_defaults_and_cap():
    p = policy()
    assert p.validity_for(None) == 30
    assert p.validity_for(100) == 100
    with pytest.raises(PolicyViolation, match="exceeds profile p's cap of 100"):
        p.validity_for(101)
    with pytest.raises(PolicyViolation, match="at least one day"):
        p.validity_for(0)


@pytest.mark.parametrize(
    ("key_type", "expected"),
    [
        (KeyType.RSA_2048, {"digital_signature", "key_encipherment"}),
        (KeyType.EC_P256, {"digital_signature"}),
        (KeyType.ED25519, {"digital_signature"}),
    ],
)
def test_key_usage_fits_the_key_type(key_type, expected):
    ku = policy().key_usage_for(key_type)
    assert ku is not None
    assert {n for n in ("digital_signature", "key_encipherment") if getattr(ku, n)} == expected


def test_key_agreement_on_ec_keeps_encipher_flags_only_with_it():
    ku = policy(key_usage=["key_agreement", "encipher_only"]).key_usage_for(KeyType.EC_P256)
    assert ku is not None
    assert ku.key_agreement
    assert ku.encipher_only
    assert policy(key_usage=["key_encipherment"]).key_usage_for(KeyType.EC_P256) is None
    assert policy(key_usage=["key_agreement"]).key_usage_for(KeyType.ED25519) is None


def test_extended_key_usage_by_name_or_dotted_oid():
    assert policy(extended_key_usage=[]).extended_key_usage_for() is None
    eku = policy(extended_key_usage=["clientAuth", "1.3.6.1.4.1.311.20.2.2"]).extended_key_usage_for()
    assert eku is not None
    assert [o.dotted_string for o in eku] == ["1.3.6.1.5.5.7.3.2", "1.3.6.1.4.1.311.20.2.2"]
    assert eku_oid("OCSPSigning").dotted_string == "1.3.6.1.5.5.7.3.9"


@pytest.mark.parametrize(
    ("san", "pattern", "matches"),
    [
        (SAN("dns", "www.example.test"), "dns:*.example.test", True),
        (SAN("dns", "a.b.example.test"), "dns:*.example.test", False),  # * is one label
        (SAN("dns", "a.b.example.test"), "dns:**.example.test", True),
        (SAN("dns", "example.test"), "dns:**.example.test", False),
        (SAN("dns", "anything.at.all"), "dns:**", True),
        (SAN("dns", "www.example.test"), "ip:0.0.0.0/0", False),
        (SAN("ip", "10.1.2.3"), "ip:10.0.0.0/8", True),
        (SAN("ip", "192.0.2.1"), "ip:10.0.0.0/8", False),
        (SAN("ip", "2001:db8::1"), "ip:0.0.0.0/0", False),
        (SAN("ip", "2001:db8::1"), "ip:::/0", True),
        (SAN("email", "Alice@Example.test"), "email:*@example.test", True),
        (SAN("email", "alice@other.test"), "email:*@example.test", False),
        (SAN("uri", "spiffe://example.test/web"), "uri:spiffe://example.test/*", True),
        (SAN("uri", "https://example.test/"), "uri:spiffe://*", False),
    ],
)
def test_name_patterns(san, pattern, matches):
    assert name_matches(san, pattern) is matches


def test_name_pattern_validation():
    assert validate_name_pattern("dns:*.example.test") == "dns:*.example.test"
    with pytest.raises(PolicyViolation):
        validate_name_pattern("x500:cn=a")
    assert all_key_types(["rsa", "ed448"]) == ["rsa", "ed448"]
    with pytest.raises(PolicyViolation, match="unknown key type 'dh'"):
        all_key_types(["dh"])


def test_key_checks_by_family_and_size():
    p = policy(key_types=["rsa", "ec-p384"], min_rsa_bits=3072)
    with pytest.raises(WeakKey, match="RSA key of 2048 bits is below profile p's minimum of 3072"):
        check_public_key(p, load_key("rsa-2048").public_key())  # type: ignore[arg-type]
    check_public_key(p, load_key("rsa-3072").public_key())  # type: ignore[arg-type]
    check_public_key(p, load_key("ec-p384").public_key())  # type: ignore[arg-type]
    with pytest.raises(WeakKey, match="does not allow ec-p256 keys"):
        check_public_key(p, load_key("ec-p256").public_key())  # type: ignore[arg-type]
    with pytest.raises(WeakKey, match="does not allow RSA keys"):
        check_public_key(policy(key_types=["ed25519"]), load_key("rsa-2048").public_key())  # type: ignore[arg-type]


def test_cn_becomes_a_dns_san_when_the_profile_needs_one():
    p = policy(require_san=True)
    assert p.check(checked(subject="CN=www.example.test"), validity_days=None) == (
        SAN("dns", "www.example.test"),
    )
    # A CN that is not a DNS name is left alone, and then the SAN is missing.
    with pytest.raises(NameNotAllowed, match="requires at least one subject alternative name"):
        p.check(checked(subject="CN=Web Server"), validity_days=None)


def test_cn_already_in_the_sans_is_not_repeated():
    csr = checked(subject="CN=www.example.test", sans=[x509.DNSName("www.example.test")])
    assert policy(require_san=True).sans_for(csr) == (SAN("dns", "www.example.test"),)


def test_a_certificate_needs_some_name():
    with pytest.raises(NameNotAllowed, match="needs a subject or a subject alternative name"):
        policy().check(checked(subject=""), validity_days=None)


def test_ca_profile_refuses_leaf_issuance_but_end_entity_refuses_ca_csr():
    with pytest.raises(PolicyViolation, match="the CSR asks for a CA"):
        policy().check(
            checked(extensions=[(x509.BasicConstraints(ca=True, path_length=None), True)]), validity_days=None
        )


@pytest.mark.django_db
def test_seeded_profiles_are_valid_policies():
    names = set(Profile.objects.values_list("name", flat=True))
    assert {
        "tls-server",
        "tls-client",
        "tls-server-client",
        "code-signing",
        "email-protection",
        "ocsp-signing",
        "sub-ca",
    } <= names
    for profile in Profile.objects.all():
        p = profile.policy()
        assert p.default_validity_days <= p.validity_days
    assert Profile.objects.get(name="code-signing").policy().requires_approval
    assert Profile.objects.get(name="ocsp-signing").policy().ocsp_no_check
    assert Profile.objects.get(name="tls-server").policy().validity_days == 397
