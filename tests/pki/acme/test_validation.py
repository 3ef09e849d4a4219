"""Challenge checks over real sockets: what each failure reports."""

from __future__ import annotations

import dataclasses

import pytest

from pki.acme.conf import acme_settings
from pki.acme.validation import (
    ValidationFailed,
    check_dns01,
    check_http01,
    check_tls_alpn01,
    dns01_value,
    resolve_addresses,
)
from tests.acme_support import Http01Responder, LocalDNS, port

DNS_PORT, HTTP_PORT, CLOSED_PORT = port(7), port(8), port(9)


@pytest.fixture(scope="module")
def dns():
    server = LocalDNS(DNS_PORT).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def web():
    responder = Http01Responder(HTTP_PORT).start()
    yield responder
    responder.stop()


@pytest.fixture
def conf(dns, web):
    dns.txt.clear()
    web.tokens.clear()
    web.redirect = None
    return dataclasses.replace(
        acme_settings(),
        http01_port=HTTP_PORT,
        tls_alpn01_port=CLOSED_PORT,
        dns_resolvers=(("127.0.0.1", DNS_PORT),),
        validation_timeout=2,
        max_http01_bytes=64,
    )


def _code(call, **kwargs) -> str:
    with pytest.raises(ValidationFailed) as info:
        call(**kwargs)
    return info.value.code


def test_http01_accepts_the_key_authorization_with_trailing_white_space(conf, web):
    web.tokens["t"] = "t.thumb\r\n"
    check_http01(host="www.example.test", token="t", key_authorization="t.thumb", conf=conf)


def test_http01_failures_name_their_cause(conf, web):
    kwargs = {"host": "www.example.test", "token": "t", "key_authorization": "t.thumb", "conf": conf}
    assert _code(check_http01, **kwargs) == "unauthorized"  # 404
    web.tokens["t"] = "t.other"
    assert _code(check_http01, **kwargs) == "incorrectResponse"
    web.tokens["t"] = "x" * 100
    assert _code(check_http01, **kwargs) == "unauthorized"  # larger than the limit
    assert _code(check_http01, **{**kwargs, "host": "www.other.test"}) == "dns"
    closed = dataclasses.replace(conf, http01_port=CLOSED_PORT)
    assert _code(check_http01, **{**kwargs, "conf": closed}) == "connection"


@pytest.mark.parametrize(
    "location",
    ["ftp://www.example.test/x", "https://www.example.test:8443/x", "http://www.example.test:81/x"],
)
def test_http01_refuses_redirects_outside_policy(conf, web, location):
    web.redirect = location
    assert _code(check_http01, host="www.example.test", token="t", key_authorization="k", conf=conf) == (
        "connection"
    )


def test_http01_gives_up_after_too_many_redirects(conf, web):
    web.redirect = "/.well-known/acme-challenge/loop"
    with pytest.raises(ValidationFailed, match="redirects"):
        check_http01(host="127.0.0.1", token="t", key_authorization="k", conf=conf)


def test_dns01_reads_the_txt_record(conf, dns):
    dns.txt["_acme-challenge.www.example.test"] = ["other", dns01_value("k.t")]
    check_dns01(domain="www.example.test", key_authorization="k.t", conf=conf)
    dns.txt["_acme-challenge.www.example.test"] = ["other"]
    assert _code(check_dns01, domain="www.example.test", key_authorization="k.t", conf=conf) == (
        "incorrectResponse"
    )
    assert _code(check_dns01, domain="www.other.test", key_authorization="k.t", conf=conf) in {
        "dns",
        "unauthorized",
    }


def test_dns_lookups_fail_as_dns_errors_when_the_resolver_is_down(conf):
    down = dataclasses.replace(conf, dns_resolvers=(("127.0.0.1", CLOSED_PORT),), validation_timeout=0.3)
    assert _code(check_dns01, domain="www.example.test", key_authorization="k", conf=down) == "dns"
    assert _code(resolve_addresses, name="www.example.test", conf=down) == "dns"


def test_addresses_come_from_the_system_resolver_without_a_setting(conf):
    system = dataclasses.replace(conf, dns_resolvers=())
    assert resolve_addresses("127.0.0.1", system) == ["127.0.0.1"]
    assert "127.0.0.1" in resolve_addresses("localhost", system) or "::1" in resolve_addresses(
        "localhost", system
    )
    assert _code(resolve_addresses, name="no-such-host.invalid", conf=system) == "dns"


def test_tls_alpn01_without_a_listener_is_a_connection_error(conf):
    assert (
        _code(check_tls_alpn01, kind="ip", value="127.0.0.1", key_authorization="k", conf=conf)
        == "connection"
    )


def test_pinned_hosts_answer_before_any_resolver(conf, web, settings):
    # The resolver is down: only KMI_ACME_HOSTS can answer, and only for the names it covers.
    settings.KMI_ACME = {**settings.KMI_ACME, "HOSTS": "**.example.test=127.0.0.1, localhost=::1"}
    down = dataclasses.replace(
        conf, hosts=acme_settings().hosts, dns_resolvers=(("127.0.0.1", CLOSED_PORT),), validation_timeout=0.3
    )
    assert resolve_addresses("a.b.example.test", down) == ["127.0.0.1"]
    assert resolve_addresses("localhost", down) == ["::1"]
    assert _code(resolve_addresses, name="example.test", conf=down) == "dns"
    web.tokens["p"] = "p.thumb"
    check_http01(host="www.example.test", token="p", key_authorization="p.thumb", conf=down)


@pytest.mark.parametrize("value", ["www.example.test", "x=not-an-ip", "=127.0.0.1"])
def test_bad_pinned_host_entries_fail_fast(settings, value):
    from django.core.exceptions import ImproperlyConfigured

    settings.KMI_ACME = {**settings.KMI_ACME, "HOSTS": value}
    with pytest.raises(ImproperlyConfigured, match="KMI_ACME_HOSTS"):
        acme_settings()
