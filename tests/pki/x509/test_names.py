"""Subject and SAN parsing and validation."""

from __future__ import annotations

import ipaddress

import pytest
from cryptography import x509

from pki.exceptions import NameNotAllowed, PolicyViolation
from pki.x509.names import (
    SAN,
    looks_like_dns_name,
    parse_san,
    parse_subject,
    san_from_general_name,
    validate_dns_name,
    validate_email,
    validate_uri,
)


def test_subject_keeps_the_order_given():
    name = parse_subject("CN=www.example.test,OU=Web,O=KMI,C=DE")
    assert name.rfc4514_string() == "CN=www.example.test,OU=Web,O=KMI,C=DE"


@pytest.mark.parametrize(
    ("text", "message"), [("no equals sign", "is not an RFC 4514 name"), ("", "must not be empty")]
)
def test_bad_subjects(text, message):
    with pytest.raises(PolicyViolation, match=message):
        parse_subject(text)


@pytest.mark.parametrize(
    "name", ["www.example.test", "*.example.test", "xn--bcher-kva.example.test", "a-b.c"]
)
def test_valid_dns_names(name):
    assert validate_dns_name(name) == name


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("WWW.example.test", "must be lower case"),
        ("", "bad length"),
        ("a" * 254, "bad length"),
        ("*.test", "at least two labels"),
        ("a.*.test", "invalid label"),
        ("-a.example.test", "invalid label"),
        ("a..test", "invalid label"),
        ("10.0.0.1", "looks like an IP address"),
    ],
)
def test_invalid_dns_names(name, message):
    with pytest.raises(NameNotAllowed, match=message):
        validate_dns_name(name)


def test_wildcards_can_be_refused():
    with pytest.raises(NameNotAllowed, match="wildcard"):
        validate_dns_name("*.example.test", allow_wildcard=False)


def test_email_and_uri():
    assert validate_email("alice+tag@example.test") == "alice+tag@example.test"
    with pytest.raises(NameNotAllowed):
        validate_email("not an address")
    assert validate_uri("spiffe://example.test/web") == "spiffe://example.test/web"
    assert validate_uri("urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66")
    for bad in ("relative/path", "https://example.test/a b"):
        with pytest.raises(NameNotAllowed):
            validate_uri(bad)


@pytest.mark.parametrize(
    ("general_name", "san"),
    [
        (x509.DNSName("www.example.test"), SAN("dns", "www.example.test")),
        (x509.IPAddress(ipaddress.ip_address("2001:db8::1")), SAN("ip", "2001:db8::1")),
        (x509.RFC822Name("a@example.test"), SAN("email", "a@example.test")),
        (x509.UniformResourceIdentifier("https://example.test/"), SAN("uri", "https://example.test/")),
    ],
)
def test_sans_round_trip(general_name, san):
    assert san_from_general_name(general_name) == san
    assert san.general_name() == general_name
    assert parse_san(str(san)) == san


def test_unsupported_san_forms_are_refused():
    with pytest.raises(NameNotAllowed, match="must be addresses, not networks"):
        san_from_general_name(x509.IPAddress(ipaddress.ip_network("10.0.0.0/8")))
    with pytest.raises(NameNotAllowed, match="SAN type DirectoryName is not supported"):
        san_from_general_name(x509.DirectoryName(parse_subject("CN=x")))


def test_parse_san_forms():
    assert parse_san("www.example.test") == SAN("dns", "www.example.test")
    with pytest.raises(NameNotAllowed, match="is not an IP address"):
        parse_san("ip:300.0.0.1")
    with pytest.raises(NameNotAllowed, match="unknown SAN type 'x400'"):
        parse_san("x400:foo")


def test_cn_that_looks_like_a_dns_name():
    assert looks_like_dns_name("WWW.Example.test")
    assert not looks_like_dns_name("localhost")
    assert not looks_like_dns_name("Web Server")


@pytest.mark.parametrize(
    ("check", "value"),
    [
        (validate_dns_name, "www.example.test\n"),
        (validate_email, "a@example.test\n"),
        (validate_uri, "https://www.example.test/\x00"),
        (validate_uri, "https://www.example.test/\u00e4"),
    ],
)
def test_names_with_a_trailing_newline_or_control_characters_are_refused(check, value):
    with pytest.raises(NameNotAllowed):
        check(value)
